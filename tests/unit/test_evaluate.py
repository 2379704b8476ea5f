"""Metrics against hand-computed values; the naive baseline on the same targets."""

from __future__ import annotations

import numpy as np
import pytest

from stockcast.evaluate import regression_metrics, score
from stockcast.windows import make_windows


def test_metrics_by_hand():
    m = regression_metrics(np.array([100.0, 200.0]), np.array([110.0, 190.0]))
    assert m["rmse"] == pytest.approx(10.0)
    assert m["mae"] == pytest.approx(10.0)
    assert m["mape"] == pytest.approx((10 / 100 + 10 / 200) / 2 * 100)
    # errors of 3 and -4: RMSE sqrt(12.5) and MAE 3.5 differ, so neither can stand in for the other
    m = regression_metrics(np.array([10.0, 20.0]), np.array([13.0, 16.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(12.5))
    assert m["mae"] == pytest.approx(3.5)


def test_score_puts_naive_beside_the_model(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    idx = ws.test_idx
    actual = ws.prices[idx]
    naive_rmse = np.sqrt(np.mean((actual - ws.prices[idx - 1]) ** 2))
    perfect = score(ws, actual, idx)
    assert perfect["test_rmse"] == 0 and perfect["rmse_vs_naive"] == 0
    assert perfect["naive_rmse"] == pytest.approx(naive_rmse)
    as_naive = score(ws, ws.prices[idx - 1], idx)
    assert as_naive["rmse_vs_naive"] == pytest.approx(1.0)
    assert {
        "test_rmse",
        "test_mae",
        "test_mape",
        "test_mase",
        "test_directional_accuracy",
        "naive_rmse",
        "naive_mae",
        "rmse_vs_naive",
    } <= set(perfect)
    naive_mae = np.mean(np.abs(actual - ws.prices[idx - 1]))
    assert perfect["naive_mae"] == pytest.approx(naive_mae)
    on_val = score(ws, ws.prices[ws.val_idx], ws.val_idx, prefix="val")
    val_naive = ws.prices[ws.val_idx] - ws.prices[ws.val_idx - 1]
    assert on_val["val_naive_rmse"] == pytest.approx(np.sqrt(np.mean(val_naive**2)))
    assert "naive_rmse" not in on_val and on_val["val_rmse"] == 0


def test_baselines_by_hand(prices):
    from stockcast.evaluate import baselines

    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100, transform="diff")
    idx = ws.test_idx[:2]
    p, close = ws.prices, prices["close"].to_numpy()
    got = baselines(ws, idx, ma_window=3)
    assert list(got) == ["naive", "drift", "moving_average", "last_close"]
    np.testing.assert_allclose(got["naive"], p[idx - 1])
    # drift over the model's own window (context 21 rows): last + mean daily change
    np.testing.assert_allclose(got["drift"], p[idx - 1] + (p[idx - 1] - p[idx - 21]) / 20)
    np.testing.assert_allclose(got["moving_average"], [p[i - 3 : i].mean() for i in idx])
    np.testing.assert_allclose(got["last_close"], close[idx - 1])


def test_baselines_default_to_a_five_day_average_and_need_a_close_for_last_close(prices):
    import dataclasses

    from stockcast.evaluate import baselines

    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    idx, p = ws.test_idx[:2], ws.prices
    got = baselines(ws, idx)
    np.testing.assert_allclose(got["moving_average"], [p[i - 5 : i].mean() for i in idx])
    # a series whose source has no close (one price): no last_close rule, the others stay
    no_close = ws.ohlcv.copy()
    no_close[:, 3] = np.nan
    bare = baselines(dataclasses.replace(ws, ohlcv=no_close), idx)
    assert list(bare) == ["naive", "drift", "moving_average"]


def test_last_close_is_no_separate_baseline_when_the_target_is_the_close(prices):
    from stockcast.evaluate import baselines

    ws = make_windows(prices, "close", window=20, val_days=60, test_days=100)
    assert "last_close" not in baselines(ws, ws.test_idx)


def test_diebold_mariano_against_a_hand_computed_value():
    from stockcast.evaluate import diebold_mariano

    # d = e1^2 - e2^2 = [0, 3, 8, -1, 0]: mean 2, gamma0 = 54/5, var = gamma0/5 = 2.16;
    # DM = 2/sqrt(2.16) = 1.36083; Harvey: x sqrt((5 + 1 - 2)/5) -> 1.21716; t(4): p = 0.29044
    stat, p = diebold_mariano(np.array([1.0, -2, 3, 0, 1]), np.ones(5))
    assert stat == pytest.approx(1.2171612, rel=1e-6)
    assert p == pytest.approx(0.2904405, rel=1e-5)
    assert diebold_mariano(np.ones(5), np.array([1.0, -2, 3, 0, 1]))[0] == pytest.approx(-stat)
    assert diebold_mariano(np.ones(4), -np.ones(4)) == (0.0, 1.0)  # same losses: no evidence


def test_diebold_mariano_at_horizon_two_with_two_rows_and_at_any_scale():
    from stockcast.evaluate import diebold_mariano

    errors, reference = np.array([1.0, -2, 3, 0, 1]), np.ones(5)
    # horizon 2: centred d = [-2, 1, 6, -3, -2]; gamma0 = 54/5, gamma1 = -8/5;
    # var = (10.8 - 3.2)/5 = 1.52; Harvey: sqrt((5 + 1 - 4 + 2/5)/5) = sqrt(0.48)
    stat, p = diebold_mariano(errors, reference, horizon=2)
    assert stat == pytest.approx(2 / np.sqrt(1.52) * np.sqrt(0.48), rel=1e-9)
    assert p == pytest.approx(0.3239408, rel=1e-5)
    # two rows are enough: d = [1, 9], gamma0 = 16, var = 8; 5/sqrt(8) x sqrt(1/2) = 1.25
    assert diebold_mariano(np.array([1.0, 3.0]), np.zeros(2))[0] == pytest.approx(1.25)
    # a statistic without units: the same at a quarter of the scale (variance 0.135 < 1)
    one = diebold_mariano(errors, reference)
    assert diebold_mariano(errors / 2, reference / 2) == pytest.approx(one)


def test_the_strongest_baseline_is_the_reference():
    from stockcast.evaluate import against_best_baseline, diebold_mariano

    actual = np.array([10.0, 11.0, 12.0, 13.0])
    base = {"naive": actual - 1.0, "last_close": actual - 0.5}
    best, versus, _, _ = against_best_baseline(actual, actual + 0.25, base)
    assert best == "last_close" and versus == pytest.approx(0.5)
    # the Diebold-Mariano test is against that baseline's errors on the same rows
    predicted = actual + np.array([0.25, -0.75, 0.5, -0.25])
    _, _, stat, p = against_best_baseline(actual, predicted, base)
    assert (stat, p) == pytest.approx(
        diebold_mariano(predicted - actual, base["last_close"] - actual)
    )
    assert stat != 0.0


def test_conformal_intervals_cover_their_level_on_a_trending_series():
    from stockcast.evaluate import conformal_quantiles, coverage

    rng = np.random.default_rng(7)
    prices = 100 * np.exp(np.cumsum(rng.normal(0.001, 0.015, 4001)))  # x50 over the span
    actual, forecast = prices[1:], prices[:-1]  # naive's residuals: exchangeable log returns
    widths = conformal_quantiles(actual[:2000], forecast[:2000], (0.8, 0.95))
    assert set(widths) == {"80", "95"} and widths["80"] < widths["95"]
    for name, level in (("80", 0.8), ("95", 0.95)):
        got = coverage(actual[2000:], forecast[2000:], widths[name])
        assert abs(got - level) <= 0.05, (name, got)


def test_too_few_residuals_give_an_unbounded_interval():
    from stockcast.evaluate import conformal_quantiles

    widths = conformal_quantiles(np.array([1.0, 2.0]), np.array([1.1, 1.9]), (0.5, 0.95))
    assert np.isfinite(widths["50"]) and widths["95"] == float("inf")


def test_mase_and_directional_accuracy_by_hand(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    idx = ws.test_idx
    actual, previous = ws.prices[idx], ws.prices[idx - 1]
    scale = np.mean(np.abs(np.diff(ws.prices[: len(prices) - 160])))
    m = score(ws, previous + 0.5 * (actual - previous), idx)  # right direction, half the move
    assert m["test_directional_accuracy"] == pytest.approx(np.mean(actual != previous))
    assert m["test_mase"] == pytest.approx(np.mean(np.abs(0.5 * (actual - previous))) / scale)
    assert m["rmse_vs_naive"] == pytest.approx(0.5)


def test_directional_accuracy_counts_the_days_called_right(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    idx = ws.test_idx[:8]
    actual, previous = ws.prices[idx], ws.prices[idx - 1]
    move = actual - previous
    flip = np.array([1, 1, 1, 1, 1, -1, -1, -1])  # right on 5 days, wrong on 3
    m = score(ws, previous + flip * move, idx)
    assert m["test_directional_accuracy"] == pytest.approx(5 / 8)


def test_span_scores_carry_the_test_against_the_best_baseline_and_name_it_when_missing():
    from stockcast.evaluate import against_best_baseline, span_scores

    rng = np.random.default_rng(5)
    actual = 100 + np.cumsum(rng.normal(0, 1, 80))
    previous = np.r_[actual[0], actual[:-1]]
    base = {"naive": previous, "far": previous + 5.0}
    predicted = actual + rng.normal(0, 0.8, 80)
    scored = span_scores(actual, predicted, previous, 1.0, base)
    best, versus, stat, p = against_best_baseline(actual, predicted, base)
    assert (
        (scored.best_baseline, scored.rmse_vs_best_baseline) == (best, versus) == ("naive", versus)
    )
    assert (scored.dm_stat, scored.dm_p_value) == (stat, p) and np.isfinite(stat)
    missing = span_scores(actual, None, previous, 1.0, {"far": previous + 5.0, "naive": previous})
    assert missing.best_baseline == "naive" and not missing.complete
