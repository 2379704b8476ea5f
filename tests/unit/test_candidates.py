"""Scoring candidates on every span, with forecasts made by hand so every figure is known:
an exact forecast, forecasts a fixed factor off, a failed backtest fold, the baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stockcast.evaluate import (
    CandidateForecasts,
    baseline_candidates,
    baselines,
    fold_score,
    predict_prices,
    regression_metrics,
    score_candidates,
)
from stockcast.promotion import gate_values
from stockcast.windows import make_windows
from tests.conftest import synthetic_prices

LEVELS = (0.8, 0.95)


@pytest.fixture(scope="module")
def spans():
    """A ticker's windows and two walk-forward folds (each ends where the next begins)."""
    frame = synthetic_prices(400, "AAA", seed=3)
    ws = make_windows(frame, "open", 10, 60, 50, "log_return")
    folds = [
        make_windows(frame.iloc[: 400 - 50 - 30 * (2 - k)], "open", 10, 40, 30, "log_return")
        for k in (0, 1)
    ]
    return ws, folds


def _scaled(ws, folds, test: float, val: float, backtest: float | None = None):
    """A network whose forecast is the actual price times a factor, per span."""
    bt = val if backtest is None else backtest
    return CandidateForecasts(
        "network",
        ws.prices[ws.test_idx] * test,
        ws.prices[ws.val_idx] * val,
        tuple(f.prices[f.test_idx] * bt for f in folds),
    )


def test_an_exact_forecast_scores_zero_everywhere_and_its_intervals_have_no_width(spans):
    ws, folds = spans
    forecasts = {**baseline_candidates(ws, folds, 5), "exact": _scaled(ws, folds, 1, 1)}
    exact = score_candidates(ws, folds, forecasts, LEVELS)["exact"]
    for span in ("test", "val", "backtest"):
        scores = exact.on(span)
        assert scores.rmse == 0 and scores.mae == 0 and scores.mape == 0 and scores.mase == 0
        assert scores.rmse_vs_naive == 0 and scores.rmse_vs_best_baseline == 0
    assert exact.interval_halfwidths == {"80": 0.0, "95": 0.0}
    assert exact.test_coverage == {"80": 1.0, "95": 1.0}
    assert exact.kind == "network" and exact.expected_folds == 2
    assert [f.fold for f in exact.folds] == [1, 2]
    assert [f.first_date for f in exact.folds] == [str(f.dates[f.test_idx[0]]) for f in folds]
    assert all(f.rmse == 0 and f.mase == 0 and f.rmse_vs_naive == 0 for f in exact.folds)


def test_a_forecast_off_by_a_factor_against_the_strongest_baseline(spans):
    ws, folds = spans
    base = baseline_candidates(ws, folds, 5)
    forecasts = {**base, "high": _scaled(ws, folds, 1.02, 1.01, 1.01)}
    scored = score_candidates(ws, folds, forecasts, LEVELS)
    high = scored["high"]
    actual = ws.prices[ws.test_idx]
    rmse = {r: regression_metrics(actual, base[r].test)["rmse"] for r in base}
    best = min(rmse, key=rmse.get)
    assert high.test.best_baseline == best
    assert high.test.rmse == pytest.approx(np.sqrt(np.mean((0.02 * actual) ** 2)))
    assert high.test.mape == pytest.approx(2.0)
    assert high.test.rmse_vs_best_baseline == pytest.approx(high.test.rmse / rmse[best])
    assert high.test.directional_accuracy == pytest.approx(
        np.mean(
            np.sign(1.02 * actual - ws.naive(ws.test_idx))
            == np.sign(actual - ws.naive(ws.test_idx))
        )
    )
    # the backtest pools both folds' rows: 1% off on every one of them
    pooled = np.concatenate([f.prices[f.test_idx] for f in folds])
    assert high.backtest.rmse == pytest.approx(np.sqrt(np.mean((0.01 * pooled) ** 2)))
    assert [f.rmse for f in high.folds] == pytest.approx(
        [np.sqrt(np.mean((0.01 * f.prices[f.test_idx]) ** 2)) for f in folds]
    )
    # calibrated on the backtest (|log 1.01| on every row); 2% off on test is outside
    assert high.interval_halfwidths == pytest.approx({"80": math.log(1.01), "95": math.log(1.01)})
    assert high.test_coverage == {"80": 0.0, "95": 0.0}
    # each baseline is a candidate too, scored on the same rows
    naive = scored["naive"]
    assert naive.kind == "baseline" and naive.test.rmse_vs_naive == pytest.approx(1.0)
    assert naive.test.rmse == pytest.approx(naive.test.naive_rmse)
    assert set(scored) == {*base, "high"}


def test_test_forecasts_inside_the_calibrated_width_are_covered(spans):
    ws, folds = spans
    forecasts = {**baseline_candidates(ws, folds, 5), "n": _scaled(ws, folds, 1.005, 1.0, 1.01)}
    scores = score_candidates(ws, folds, forecasts, LEVELS)["n"]
    assert scores.test_coverage == {"80": 1.0, "95": 1.0}


def test_a_failed_fold_leaves_the_backtest_unscored_and_the_fold_out(spans):
    ws, folds = spans
    broken = CandidateForecasts(
        "network",
        ws.prices[ws.test_idx],
        ws.prices[ws.val_idx],
        (folds[0].prices[folds[0].test_idx], None),
    )
    forecasts = {**baseline_candidates(ws, folds, 5), "broken": broken}
    scores = score_candidates(ws, folds, forecasts, LEVELS)["broken"]
    assert not scores.backtest.complete and scores.name == "broken"
    # the baseline that is best on the fold rows, as a complete candidate's backtest names it
    exact = score_candidates(ws, folds, {**forecasts, "exact": _scaled(ws, folds, 1, 1, 1)}, LEVELS)
    assert scores.backtest.best_baseline == exact["exact"].backtest.best_baseline != ""
    assert [f.fold for f in scores.folds] == [1] and scores.expected_folds == 2
    assert math.isnan(scores.fold_mean("rmse"))
    assert all(math.isnan(w) for w in scores.interval_halfwidths.values())
    assert all(math.isnan(c) for c in scores.test_coverage.values())
    assert scores.test.rmse == 0  # the main model's spans are scored as usual


def test_without_folds_validation_calibrates_and_no_backtest_exists(spans):
    ws, _ = spans
    forecasts = {**baseline_candidates(ws, [], 5), "v": _scaled(ws, [], 1.0, 1.03)}
    scores = score_candidates(ws, [], forecasts, LEVELS)["v"]
    assert scores.backtest is None and scores.folds == () and scores.expected_folds == 0
    assert scores.selection_span == "val"
    assert scores.interval_halfwidths == pytest.approx({"80": math.log(1.03), "95": math.log(1.03)})


def test_baseline_candidates_forecast_each_span_with_their_rule(spans):
    ws, folds = spans
    cands = baseline_candidates(ws, folds, 3)
    for rule, cand in cands.items():
        assert cand.kind == "baseline"
        np.testing.assert_array_equal(cand.test, baselines(ws, ws.test_idx, 3)[rule])
        np.testing.assert_array_equal(cand.val, baselines(ws, ws.val_idx, 3)[rule])
        for fold, forecast in zip(folds, cand.backtest, strict=True):
            np.testing.assert_array_equal(forecast, baselines(fold, fold.test_idx, 3)[rule])
    np.testing.assert_array_equal(cands["naive"].test, ws.naive(ws.test_idx))
    ma = ws.prices[ws.test_idx[:, None] + np.arange(-3, 0)].mean(axis=1)
    np.testing.assert_allclose(cands["moving_average"].test, ma)


def test_fold_score_uses_the_folds_own_naive(spans):
    _, folds = spans
    fold = folds[1]
    naive = fold.naive(fold.test_idx)
    score = fold_score(7, fold, naive)
    assert score.fold == 7 and score.rmse_vs_naive == pytest.approx(1.0)
    assert score.rmse == pytest.approx(
        regression_metrics(fold.prices[fold.test_idx], naive)["rmse"]
    )
    scale = np.mean(np.abs(np.diff(fold.prices[: fold.val_idx[0]])))
    expected = np.mean(np.abs(naive - fold.prices[fold.test_idx])) / scale
    assert score.mase == pytest.approx(expected)


def test_gate_values_read_the_selection_span(spans):
    ws, folds = spans
    forecasts = {**baseline_candidates(ws, folds, 5), "x": _scaled(ws, folds, 1.02, 1.01, 1.03)}
    scores = score_candidates(ws, folds, forecasts, LEVELS)["x"]
    for span in ("backtest", "val"):
        on = scores.on(span)
        assert gate_values(scores, span) == {
            "rmse_vs_best_baseline": on.rmse_vs_best_baseline,
            "rmse_vs_naive": on.rmse_vs_naive,
            "mase": on.mase,
        }
    assert gate_values(scores, "backtest") != gate_values(scores, "val")


def test_predict_prices_maps_a_models_scaled_output_back_to_prices(spans):
    ws, _ = spans
    seen = []
    inputs, targets = ws.inputs(ws.test_idx), ws.targets(ws.test_idx)

    class Echo:  # a "model" that returns the true scaled targets of the windows it is given
        def predict_on_batch(self, x):
            start = sum(seen)
            np.testing.assert_array_equal(x, inputs[start : start + len(x)])
            seen.append(len(x))
            return targets[start : start + len(x), None]

    prices = predict_prices(Echo(), ws, ws.test_idx, batch_size=17)
    np.testing.assert_allclose(prices, ws.prices[ws.test_idx], rtol=1e-5)
    n = len(ws.test_idx)  # in order, in batches of 17 rows, the last one the rest
    assert seen == [17] * (n // 17) + ([n % 17] if n % 17 else [])


def test_the_configured_bands_are_calibrated_on_the_backtest_and_drawn_day_by_day(spans):
    """``register.interval_method``: the calibration pools every fold's rows (residual over
    the volatility each forecast knew), and the test coverage is of the bands a daily job
    would have drawn, one day after another."""
    from stockcast import intervals
    from stockcast.evaluate import Banding

    ws, folds = spans
    forecasts = baseline_candidates(ws, folds, 5)
    got = score_candidates(ws, folds, forecasts, LEVELS, Banding("adaptive", 500, 0.02))["naive"]
    cal = got.calibration
    assert (cal.method, cal.days, cal.gamma) == ("adaptive", ws.window - 1, 0.02)  # capped
    actual = np.concatenate([f.prices[f.test_idx] for f in folds])
    scale = np.concatenate(
        [intervals.realised_volatility(f.prices, f.test_idx, cal.days) for f in folds]
    )
    residuals = intervals.log_residuals(actual, np.concatenate(forecasts["naive"].backtest))
    assert cal.scores == pytest.approx(tuple(residuals / scale))
    test = ws.prices[ws.test_idx]
    widths, _ = intervals.run_online(
        cal,
        LEVELS,
        test,
        forecasts["naive"].test,
        intervals.realised_volatility(ws.prices, ws.test_idx, cal.days),
    )
    for (name, width), level in zip(widths.items(), LEVELS, strict=True):
        inside = intervals.covered(test, forecasts["naive"].test, width)
        assert got.test_coverage[name] == pytest.approx(inside.mean())
        lower, upper = (
            forecasts["naive"].test * np.exp(-width),
            forecasts["naive"].test * np.exp(width),
        )
        by_hand = (upper - lower) + 2 / (1 - level) * (
            np.maximum(lower - test, 0) + np.maximum(test - upper, 0)
        )
        assert got.test_interval_score[name] == pytest.approx(by_hand.mean())
        assert got.flat()[f"test_interval_score_{name}"] == got.test_interval_score[name]
    back = type(got).from_json("naive", got.to_json())
    assert back.test_interval_score == pytest.approx(got.test_interval_score)
    static = score_candidates(ws, folds, forecasts, LEVELS)["naive"]
    assert static.calibration.method == "static"
    assert static.test_coverage != got.test_coverage
    assert static.interval_halfwidths == got.interval_halfwidths  # the reference widths stay


def test_the_calibrations_travel_from_evaluate_to_register(spans, tmp_path):
    from stockcast.evaluate import Banding
    from stockcast.paths import Paths, write_json
    from stockcast.scores import TickerReport
    from stockcast.stages.evaluate import calibrations, read_reports

    ws, folds = spans
    scores = score_candidates(
        ws, folds, baseline_candidates(ws, folds, 5), LEVELS, Banding("adaptive", 20, 0.01)
    )
    paths = Paths(tmp_path)
    reports = {"AAA": TickerReport("AAA", scores)}
    write_json(paths.metrics, {t: r.to_json() for t, r in reports.items()})
    assert read_reports(paths)["AAA"].candidates["naive"].calibration is None  # none written
    write_json(paths.calibration, calibrations(reports))
    back = read_reports(paths)["AAA"].candidates
    assert set(back) == set(scores)
    for name, mine in scores.items():
        assert back[name].calibration.multiplier(0.8) == pytest.approx(
            mine.calibration.multiplier(0.8), rel=1e-5
        )
        assert back[name].calibration.days == mine.calibration.days == ws.window - 1
