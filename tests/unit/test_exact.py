"""Exact values of the small pure pieces: conformal ranks, interval and coverage edges,
baseline rules on a hand-made window, layouts as whole values, the choice's reason text, and
float64 results from float32 or integer inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stockcast import transforms
from stockcast.errors import ConfigError
from stockcast.evaluate import (
    BASELINES,
    baseline_forecast,
    conformal_quantiles,
    coverage,
    interval,
    ratio,
)
from stockcast.ingest import LAYOUTS, Layout, mapped_layout
from stockcast.promotion import choose_candidate
from stockcast.scores import CandidateScores, SpanScores
from stockcast.windows import MinMaxScaler, make_windows
from tests.conftest import synthetic_prices


def test_conformal_half_width_is_the_ceil_n_plus_1_times_level_th_residual():
    actual = np.exp(np.arange(1, 10) / 100.0)  # residuals |log(actual / 1)| = 0.01 .. 0.09
    predicted = np.ones(9)
    widths = conformal_quantiles(actual, predicted, (0.05, 0.1, 0.5, 0.8, 0.9, 0.95))
    # n = 9: ceil(10 * level) -> ranks 1, 1, 5, 8, 9 and 10 (past n: unbounded)
    assert widths == pytest.approx(
        {"5": 0.01, "10": 0.01, "50": 0.05, "80": 0.08, "90": 0.09, "95": math.inf}
    )
    assert conformal_quantiles(actual, predicted, (0.0,)) == {"0": math.inf}  # rank 0: none


def test_interval_and_coverage_at_their_edges():
    lower, upper = interval(np.array([100, 200], dtype="int64"), math.log(1.1))
    assert lower.dtype == upper.dtype == np.float64
    np.testing.assert_allclose(lower, [100 / 1.1, 200 / 1.1])
    np.testing.assert_allclose(upper, [110.0, 220.0])
    predicted = np.array([100.0, 100.0, 100.0, 100.0], dtype="float32")
    actual = np.array([100.0, 104.0, 96.0, 120.0], dtype="float32")
    assert coverage(actual, predicted, math.log(1.05)) == 0.75
    assert coverage(actual, predicted, 0.0) == 0.25  # only the exact forecast
    assert math.isnan(coverage(actual, predicted, float("nan")))


def test_ratio_ties_and_zero_references():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(0.0, 0.0) == 1.0  # a tie with an exact baseline
    assert ratio(1.0, 0.0) == math.inf


def test_baseline_rules_on_a_two_day_window():
    # (n=1, context=2, OHLCV): open 10 then 12, close 11 then 13
    window = np.array([[[10, 10, 10, 11, 5], [12, 12, 12, 13, 5]]], dtype="int64")
    assert baseline_forecast("naive", window, "open").tolist() == [12.0]
    assert baseline_forecast("drift", window, "open").tolist() == [14.0]  # 12 + (12-10)/1
    assert baseline_forecast("moving_average", window, "open").tolist() == [11.0]
    assert baseline_forecast("last_close", window, "open").tolist() == [13.0]
    assert baseline_forecast("naive", window, "open").dtype == np.float64
    six = np.repeat(np.arange(1, 7, dtype="float64")[None, :, None], 5, axis=2)
    assert baseline_forecast("moving_average", six, "open").tolist() == [4.0]  # last 5 by default
    with pytest.raises(ValueError, match=r"unknown baseline 'mean'.*'naive'") as raised:
        baseline_forecast("mean", window, "open")
    assert str(list(BASELINES)) in str(raised.value)


def test_transforms_return_float64_and_name_the_choices_on_error():
    previous = np.array([100, 200], dtype="float32")
    values = np.array([0.5, -0.5], dtype="float32")
    for transform in ("level", "diff", "log_return"):
        back = transforms.inverse(values, previous, transform)
        assert back.dtype == np.float64, transform
    assert transforms.inverse(values, previous, "diff").tolist() == [100.5, 199.5]
    with pytest.raises(ValueError, match=r"unknown transform 'pct'.*'log_return'"):
        transforms.inverse(values, previous, "pct")
    with pytest.raises(ValueError, match=r"unknown transform 'pct'.*'log_return'"):
        transforms.forward(previous, "pct")


def test_scaler_inverse_is_float64_from_float32():
    scaler = MinMaxScaler(100.0, 100.0 + 2**-10)
    out = scaler.inverse(np.array([0.5], dtype="float32"))
    assert out.dtype == np.float64 and out[0] == 100.0 + 2**-11


def test_to_prices_takes_a_models_column_output():
    ws = make_windows(synthetic_prices(120), "open", 5, 20, 20, "log_return")
    column = ws.targets(ws.test_idx)[:, None]  # (n, 1), as Keras predicts
    back = ws.to_prices(column, ws.test_idx)
    assert back.shape == (20,)
    np.testing.assert_allclose(back, ws.prices[ws.test_idx], rtol=1e-5)


def test_a_close_anchor_without_ohlcv_falls_back_to_the_target():
    from dataclasses import replace

    ws = make_windows(synthetic_prices(120), "open", 5, 20, 20, "log_return", (), "close")
    np.testing.assert_array_equal(ws.previous(ws.test_idx), ws.ohlcv[ws.test_idx - 1, 3])
    bare = replace(ws, ohlcv=None)
    np.testing.assert_array_equal(bare.previous(ws.test_idx), ws.naive(ws.test_idx))


def test_layouts_as_whole_values():
    by_name = {layout.name: layout for layout in LAYOUTS}
    assert by_name["yahoo"].columns == {
        "date": "date",
        "open": "open",
        "high": "high",
        "low": "low",
        "close": "close",
        "volume": "volume",
    }
    assert by_name["nasdaq"].columns["close"] == "close/last"
    assert by_name["investing_com"].columns == {
        "date": "date",
        "open": "open",
        "high": "high",
        "low": "low",
        "close": "price",
        "volume": "vol.",
    }
    mapping = {
        "date": "Day",
        "open": "O",
        "high": "H",
        "low": "L",
        "close": "C",
        "volume": "V",
        "ticker": "Sym",
    }
    assert mapped_layout(mapping, "%d.%m.%Y") == Layout(
        "mapped",
        frozenset({"day", "o", "h", "l", "c", "v"}),
        {"date": "day", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"},
        "%d.%m.%Y",
        "sym",
    )
    no_ticker = {k: v for k, v in mapping.items() if k != "ticker"}
    assert mapped_layout(no_ticker).ticker_column is None
    single = mapped_layout({"date": "d", "close": "c"})  # a one-price series
    assert single.columns == {"date": "d", "close": "c"} and single.signature == {"d", "c"}
    with pytest.raises(ConfigError) as raised:
        mapped_layout({"date": "d", "volume": "v"})
    assert str(raised.value) == (
        "data.sources: the columns mapping needs date and at least one of "
        "['open', 'high', 'low', 'close']; it has ['date', 'volume']"
    )


def _scores(name: str, kind: str, rmse: float, p: float = 0.01) -> CandidateScores:
    span = SpanScores(rmse, rmse, 1.0, 1.0, 0.5, 1.0, rmse, rmse, "naive", 1.0, 0.0, p)
    return CandidateScores(name=name, kind=kind, test=span, val=span, backtest=span)


def test_the_choice_takes_the_lowest_rmse_whatever_the_order_and_says_why():
    candidates = {
        "naive": _scores("naive", "baseline", 10.0),
        "drift": _scores("drift", "baseline", 9.0),
        "gru": _scores("gru", "network", 8.5, p=0.2),
        "lstm": _scores("lstm", "network", 8.0, p=0.01),
        "simple_rnn": _scores("simple_rnn", "network", 8.8),
    }
    assert choose_candidate(candidates, "backtest") == (
        "lstm",
        "lstm backtest rmse 0.8889x drift (DM p=0.01): the network beats the best baseline",
    )
    assert choose_candidate(candidates, "backtest", max_p_value=0.005) == (
        "drift",
        "lstm backtest rmse 0.8889x drift (DM p=0.01): not significant at 0.005",
    )
    assert choose_candidate(candidates, "backtest", min_improvement=0.2) == (
        "drift",
        "lstm backtest rmse 0.8889x drift (DM p=0.01): the network does not beat the best baseline",
    )


def test_the_seasonal_naive_rule_is_the_value_one_season_back_by_hand():
    window = np.zeros((1, 14, 5))
    window[0, :, 0] = np.arange(100.0, 114.0)  # open: 100 .. 113, the last row is t-1
    # season 12: the target's row minus 12, i.e. index -12 of the window (102)
    assert baseline_forecast("seasonal_naive", window, "open", season=12).tolist() == [102.0]
    assert baseline_forecast("seasonal_naive", window, "open", season=1).tolist() == [113.0]
    with pytest.raises(ValueError, match="needs one season back: season 15 rows"):
        baseline_forecast("seasonal_naive", window, "open", season=15)
    with pytest.raises(ValueError, match="season 0 rows"):
        baseline_forecast("seasonal_naive", window, "open")


def test_a_series_step_says_whether_it_is_seasonal():
    from stockcast.evaluate import baseline_rules, season_of

    monthly = np.array(["1949-01-01", "1949-02-01", "1949-03-01", "1949-04-01"], "datetime64[D]")
    assert season_of(monthly) == 12
    quarterly = np.array(["2000-01-01", "2000-04-01", "2000-07-01"], "datetime64[D]")
    assert season_of(quarterly) == 4
    weekly = np.arange("2020-01-03", "2020-03-01", 7, dtype="datetime64[D]")
    assert season_of(weekly) == 52
    trading = np.array(["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"], "datetime64[D]")
    assert season_of(trading) == 0  # daily prices: no season
    assert season_of(trading[:1]) == 0
    assert "seasonal_naive" not in baseline_rules("open")
    assert baseline_rules("close", 12) == ("naive", "drift", "moving_average", "seasonal_naive")


def test_a_monthly_seasonal_series_gets_the_seasonal_rule_and_it_wins():
    """The airline tutorial's shape: monthly, a trend times a yearly cycle. The seasonal naive
    rule is among the baselines, every span scores it, and it beats tomorrow = today."""
    import pandas as pd

    from stockcast.evaluate import baseline_candidates, score_candidates
    from stockcast.windows import make_windows

    months = pd.date_range("1949-01-01", periods=240, freq="MS")
    cycle = 1 + 0.25 * np.sin(2 * np.pi * np.arange(240) / 12)
    price = 100 * (1.005 ** np.arange(240)) * cycle
    frame = pd.DataFrame(
        {"date": months, "ticker": "AIR", "open": np.nan, "high": np.nan, "low": np.nan}
    ).assign(close=price, volume=np.nan)
    ws = make_windows(frame, "close", 24, 36, 36)
    forecasts = baseline_candidates(ws, [], 5)
    assert "seasonal_naive" in forecasts
    expected = ws.prices[ws.test_idx - 12]
    assert np.allclose(forecasts["seasonal_naive"].test, expected)
    scores = score_candidates(ws, [], forecasts, (0.8,))
    assert scores["seasonal_naive"].test.rmse < scores["naive"].test.rmse / 1.5
    assert scores["naive"].test.best_baseline == "seasonal_naive"
