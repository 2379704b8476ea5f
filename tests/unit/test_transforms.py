"""Target transforms: round trips, leakage, and spans that stay comparable across transforms."""

from __future__ import annotations

import numpy as np
import pytest

from stockcast import transforms
from stockcast.columns import OHLCV
from stockcast.windows import make_windows


@pytest.mark.parametrize("name", ["level", "diff", "log_return"])
def test_round_trip_recovers_prices(name):
    prices = np.array([10.0, 11.0, 10.5, 12.0, 12.25])
    series = transforms.forward(prices, name)
    recovered = transforms.inverse(series[1:], prices[:-1], name)
    np.testing.assert_allclose(recovered, prices[1:])


def test_unknown_transform_lists_choices():
    with pytest.raises(ValueError, match=r"choose one of \['level', 'diff', 'log_return'\]"):
        transforms.forward(np.ones(3), "pct")


@pytest.mark.parametrize("name", ["diff", "log_return"])
def test_transformed_windows_fit_the_scaler_on_training_changes_only(prices, name):
    ws = make_windows(prices, "open", 20, 60, 100, name)
    n = len(prices)
    series = transforms.forward(prices["open"].to_numpy(), name)
    train = series[1 : n - 160]
    assert (ws.scaler.low, ws.scaler.high) == (train.min(), train.max())
    assert ws.train_idx[0] == 21  # the first change needs a previous day
    level = make_windows(prices, "open", 20, 60, 100, "level")
    np.testing.assert_array_equal(ws.test_idx, level.test_idx)  # same targets, same naive


@pytest.mark.parametrize("name", ["level", "diff", "log_return"])
def test_to_prices_maps_a_perfect_scaled_forecast_to_the_actual_prices(prices, name):
    ws = make_windows(prices, "open", 20, 60, 100, name)
    idx = ws.test_idx
    np.testing.assert_allclose(ws.to_prices(ws.targets(idx), idx), ws.prices[idx], rtol=1e-5)


def test_extra_inputs_are_extra_columns_each_scaled_on_training_rows(prices):
    extra = ("close", "volume_change", "range")
    ws = make_windows(prices, "open", 20, 60, 100, "log_return", extra)
    assert ws.scaled.shape == (len(prices), 4)
    assert ws.inputs(ws.test_idx).shape == (len(ws.test_idx), 20, 4)
    n = len(prices)
    rng = np.log(prices["high"] / prices["low"]).to_numpy()[1 : n - 160]
    assert (ws.extra_scalers[2].low, ws.extra_scalers[2].high) == (rng.min(), rng.max())
    plain = make_windows(prices, "open", 20, 60, 100, "log_return")
    np.testing.assert_array_equal(ws.scaled[:, 0], plain.scaled[:, 0])  # target unchanged
    np.testing.assert_array_equal(ws.targets(ws.test_idx), plain.targets(plain.test_idx))


def test_level_with_extras_needs_one_more_day_of_context(prices):
    ws = make_windows(prices, "open", 20, 60, 100, "level", ("volume_change",))
    assert ws.context == 21 and ws.train_idx[0] == 21


def test_anchor_close_forecasts_the_change_from_the_last_close(prices):
    ws = make_windows(prices, "open", 20, 60, 100, "log_return", (), "close")
    opens, closes = prices["open"].to_numpy(), prices["close"].to_numpy()
    idx = ws.test_idx
    # the target column is log(open_t / close_t-1), scaled on the training rows only
    expected = np.log(opens[1:] / closes[:-1])
    np.testing.assert_allclose(ws.scaler.inverse(ws.scaled[1:, 0]), expected, atol=1e-7)
    np.testing.assert_array_equal(ws.previous(idx), closes[idx - 1])
    # a perfect forecast maps back to the actual opens; a zero change to the last close
    np.testing.assert_allclose(ws.to_prices(ws.targets(idx), idx), opens[idx], rtol=1e-5)
    zero = ws.scaler.transform(np.zeros(len(idx)))
    np.testing.assert_allclose(ws.to_prices(zero, idx), closes[idx - 1])


def test_intraday_input_is_the_same_days_close_over_open(prices):
    ws = make_windows(prices, "open", 20, 60, 100, "log_return", ("intraday",))
    move = np.log(prices["close"] / prices["open"]).to_numpy()
    np.testing.assert_allclose(ws.extra_scalers[0].inverse(ws.scaled[:, 1]), move, atol=1e-6)


def test_level_has_no_anchor():
    from stockcast.config import FeaturesConfig
    from stockcast.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a change transform"):
        FeaturesConfig(target_transform="level", anchor="close")


def test_each_price_input_is_transformed_like_the_target_and_the_anchor_defaults_to_it():
    rng = np.random.default_rng(5)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, 40)))
    ohlcv = np.column_stack(
        [close * 1.001, close * 1.01, close * 0.99, close, rng.uniform(1e5, 2e5, 40)]
    )
    prices = ("open", "high", "low", "close")
    got = transforms.feature_matrix(ohlcv, "open", "log_return", prices)
    assert got.shape == (40, 5)
    for k, name in enumerate(prices, start=1):  # each price column's own log returns
        column = ohlcv[:, OHLCV.index(name)]
        np.testing.assert_allclose(got[:, k], transforms.forward(column, "log_return"))
    np.testing.assert_allclose(got[:, 0], transforms.forward(ohlcv[:, 0], "log_return"))
    anchored = transforms.feature_matrix(ohlcv, "open", "log_return", (), anchor="target")
    np.testing.assert_array_equal(transforms.feature_matrix(ohlcv, "open", "log_return"), anchored)


def test_volume_change_reads_fractional_volumes_and_an_unknown_input_is_named():
    ohlcv = np.ones((3, 5))
    ohlcv[:, 4] = [0.0, 0.5, 0.25]  # fractional volumes (units of a million, say)
    got = transforms.feature_matrix(ohlcv, "close", "diff", ("volume_change",))
    np.testing.assert_allclose(got[:, 1], [0.0, np.log1p(0.5), np.log1p(0.25) - np.log1p(0.5)])
    with pytest.raises(ValueError, match=r"unknown input 'sentiment'; choose from \['open'"):
        transforms.feature_matrix(ohlcv, "close", "diff", ("sentiment",))


def test_needed_columns_name_every_raw_column_and_the_settings_that_read_it():
    needs = transforms.needed_columns(
        "open", ("volume_change", "range", "intraday", "close"), "close"
    )
    assert needs == {
        "open": ["data.target", "features.inputs: intraday"],
        "close": [
            "features.anchor: close",
            "features.inputs: intraday",
            "features.inputs: close",
        ],
        "volume": ["features.inputs: volume_change"],
        "high": ["features.inputs: range"],
        "low": ["features.inputs: range"],
    }
    assert transforms.needed_columns("close", (), "target") == {
        "close": ["data.target", "features.anchor: target"]
    }
