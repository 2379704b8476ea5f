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


def test_baselines_by_hand(prices):
    from stockcast.evaluate import baselines

    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    idx = ws.test_idx[:2]
    p = ws.prices
    got = baselines(ws, idx, ma_window=3)
    np.testing.assert_allclose(got["naive"], p[idx - 1])
    np.testing.assert_allclose(got["drift"], p[idx - 1] + (p[idx - 1] - p[0]) / (idx - 1))
    np.testing.assert_allclose(got["moving_average"], [p[i - 3 : i].mean() for i in idx])


def test_mase_and_directional_accuracy_by_hand(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    idx = ws.test_idx
    actual, previous = ws.prices[idx], ws.prices[idx - 1]
    scale = np.mean(np.abs(np.diff(ws.prices[: len(prices) - 160])))
    m = score(ws, previous + 0.5 * (actual - previous), idx)  # right direction, half the move
    assert m["test_directional_accuracy"] == pytest.approx(np.mean(actual != previous))
    assert m["test_mase"] == pytest.approx(np.mean(np.abs(0.5 * (actual - previous))) / scale)
    assert m["rmse_vs_naive"] == pytest.approx(0.5)
