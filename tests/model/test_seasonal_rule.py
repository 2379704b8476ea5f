"""A monthly series' seasonal naive rule is logged, registered and served like any rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockcast import packaging
from stockcast.evaluate import baselines
from stockcast.serving import point_forecast
from stockcast.windows import make_windows


def _monthly():
    months = pd.date_range("1949-01-01", periods=180, freq="MS")
    price = 100 * (1 + 0.25 * np.sin(2 * np.pi * np.arange(180) / 12))
    frame = pd.DataFrame({"date": months, "ticker": "AIR", "close": price})
    frame = frame.assign(open=np.nan, high=np.nan, low=np.nan, volume=np.nan)
    return make_windows(frame, "close", 14, 24, 24)


def test_the_seasonal_rule_serves_the_value_a_season_back(mlflow_store):
    mlflow = mlflow_store
    ws = _monthly()
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, None, {"80": 0.05}, "seasonal_naive")
    model = mlflow.pyfunc.load_model(uri)
    idx = ws.test_idx
    got = point_forecast(model.predict(ws.raw_inputs(idx)))
    np.testing.assert_allclose(got, baselines(ws, idx)["seasonal_naive"])
    np.testing.assert_allclose(got, ws.prices[idx - 12])
    # two seasonal rules are the same forecaster only with the same season
    assert packaging.forecaster_id("seasonal_naive", ws, 5).endswith("|season=12")


def test_a_window_shorter_than_the_season_has_no_seasonal_rule():
    months = pd.date_range("1949-01-01", periods=120, freq="MS")
    frame = pd.DataFrame({"date": months, "ticker": "AIR", "close": np.linspace(100, 200, 120)})
    frame = frame.assign(open=np.nan, high=np.nan, low=np.nan, volume=np.nan)
    ws = make_windows(frame, "close", 6, 24, 24)  # six months back only
    assert "seasonal_naive" not in baselines(ws, ws.test_idx)
