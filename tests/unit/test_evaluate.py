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
    assert set(perfect) == {
        "test_rmse",
        "test_mae",
        "test_mape",
        "naive_rmse",
        "naive_mae",
        "rmse_vs_naive",
    }
