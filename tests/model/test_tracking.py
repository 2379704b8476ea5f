"""The MLflow boundary on a real SQLite store in a temporary folder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from stockcast import packaging, registry, serving, store
from stockcast.config import TrainConfig
from stockcast.evaluate import predict_prices
from stockcast.serving import point_forecast
from stockcast.train import fit_variant
from stockcast.windows import make_windows
from tests.conftest import synthetic_prices

pytestmark = pytest.mark.fits  # trains networks: `make mutate` leaves these out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    ws = make_windows(synthetic_prices(300), "open", window=10, val_days=40, test_days=40)
    result = fit_variant(ws, "gru", TrainConfig(units=(8,), epochs=1), 5, root / "gru")
    assert result.ok, result.error
    return root, ws, result


def test_tracking_uri_defaults_to_sqlite_at_the_root(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert store.tracking_uri(tmp_path) == "http://127.0.0.1:5999"


WIDTHS = {"80": 0.01, "95": 0.02}


def test_logged_pyfunc_takes_raw_ohlcv_and_matches_keras(trained, mlflow_store):
    import keras

    mlflow = mlflow_store
    _, ws, result = trained
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, Path(result.model_path), WIDTHS, "gru")
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.signature is not None
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 10, 5)
    idx = ws.test_idx
    out = model.predict(ws.raw_inputs(idx))
    assert list(out.columns) == ["forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, idx)
    np.testing.assert_allclose(out["forecast"], direct, rtol=1e-5)
    np.testing.assert_allclose(out["upper_95"], direct * np.exp(0.02), rtol=1e-5)
    np.testing.assert_allclose(out["lower_80"], direct * np.exp(-0.01), rtol=1e-5)
    with pytest.raises(Exception, match=r"does not match expected shape \(-1, 10, 5\)"):
        model.predict(ws.raw_inputs(idx)[:, :5])


def test_a_baseline_is_logged_and_served_like_a_network(trained, mlflow_store):
    from stockcast.evaluate import baselines

    mlflow = mlflow_store
    _, ws, _ = trained
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, None, WIDTHS, "last_close")
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.metadata["kind"] == "baseline"
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 10, 5)
    idx = ws.test_idx
    got = point_forecast(model.predict(ws.raw_inputs(idx)))
    np.testing.assert_allclose(got, baselines(ws, idx)["last_close"])


def test_champion_is_scored_on_the_callers_span(trained, mlflow_store):
    from mlflow import MlflowClient

    mlflow = mlflow_store
    _, ws, result = trained
    client = MlflowClient()
    assert registry.champion_rmse(mlflow, client, "stockcast-TEST", ws) is None
    path = list(sys.path)
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, Path(result.model_path), WIDTHS, "gru")
    version = mlflow.register_model(uri, "stockcast-TEST")
    client.set_registered_model_alias("stockcast-TEST", registry.CHAMPION, version.version)
    rmse, champion_version = registry.champion_rmse(mlflow, client, "stockcast-TEST", ws)
    assert registry.load_champion(Path.cwd(), "stockcast-TEST") is not None
    # logging (MLflow loads the model back) and loading put no model's code folder on
    # sys.path: a thousand tickers would make every later import search a thousand folders
    assert sys.path == path
    import keras

    direct = predict_prices(keras.saving.load_model(result.model_path), ws, ws.test_idx)
    expected = float(np.sqrt(np.mean((direct - ws.prices[ws.test_idx]) ** 2)))
    assert champion_version == "1"
    assert rmse == pytest.approx(expected, rel=1e-5)


def test_log_return_model_forecasts_ahead_feeding_its_forecasts_back(mlflow_store, tmp_path):
    import keras

    mlflow = mlflow_store
    ws = make_windows(synthetic_prices(300), "open", 10, 40, 40, "log_return")
    result = fit_variant(ws, "simple_rnn", TrainConfig(units=(4,), epochs=1), 2, tmp_path / "s")
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, Path(result.model_path), WIDTHS, "simple_rnn")
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.metadata["context"] == 11  # a change needs one more day
    idx = ws.test_idx
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, idx)
    np.testing.assert_allclose(point_forecast(model.predict(ws.raw_inputs(idx))), direct, rtol=1e-5)
    ahead = serving.forecast(model, ws.ohlcv, horizon=3, target="open")
    assert len(ahead) == 3
    first = point_forecast(model.predict(ws.ohlcv[-11:][None]))[0]
    assert ahead[0]["forecast"] == pytest.approx(first)
    # step 2 sees step 1's forecast as the newest day (a flat bar at that price)
    fed = np.vstack([ws.ohlcv[-10:], [[first] * 4 + [ws.ohlcv[-1, 4]]]])
    assert ahead[1]["forecast"] == pytest.approx(point_forecast(model.predict(fed[None]))[0])
    # intervals widen with the horizon, as sqrt(h) in log price
    for step, row in enumerate(ahead, start=1):
        assert row["upper_95"] == pytest.approx(row["forecast"] * np.exp(0.02 * np.sqrt(step)))


def test_rollback_restores_the_previous_champion_and_says_why(trained, mlflow_store):
    from mlflow import MlflowClient

    from stockcast.errors import StockcastError

    mlflow = mlflow_store
    _, ws, result = trained
    client = MlflowClient()
    name = "stockcast-ROLL"
    with pytest.raises(StockcastError, match="has no @champion"):
        registry.rollback(client, name, "x")
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            uri = packaging.log_forecaster(mlflow, ws, Path(result.model_path), WIDTHS, "gru")
        versions.append(mlflow.register_model(uri, name).version)
    client.set_registered_model_alias(name, registry.CHAMPION, versions[0])
    with pytest.raises(StockcastError, match="nothing to roll back to"):
        registry.rollback(client, name, "x")
    client.set_model_version_tag(name, versions[1], "previous_champion", str(versions[0]))
    client.set_registered_model_alias(name, registry.CHAMPION, versions[1])
    assert registry.rollback(client, name, "bad fills on Monday") == ("2", "1")
    assert str(client.get_model_version_by_alias(name, registry.CHAMPION).version) == "1"
    assert client.get_model_version(name, "2").tags["rolled_back"] == "bad fills on Monday"
    assert client.get_model_version(name, "1").tags["restored_by_rollback_from"] == "2"


def test_model_with_extra_inputs_and_a_close_anchor_takes_raw_ohlcv(mlflow_store, tmp_path):
    import keras

    mlflow = mlflow_store
    ws = make_windows(
        synthetic_prices(300), "open", 10, 40, 40, "log_return", ("intraday", "range"), "close"
    )
    result = fit_variant(ws, "gru", TrainConfig(units=(4,), epochs=1), 2, tmp_path / "g")
    assert result.ok, result.error
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, Path(result.model_path), WIDTHS, "gru")
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 11, 5)
    idx = ws.test_idx
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, idx)
    via = point_forecast(model.predict(ws.raw_inputs(idx)))
    np.testing.assert_allclose(via, direct, rtol=1e-5)
    (one,) = serving.forecast(model, ws.ohlcv, 1, "open")
    assert np.isfinite(one["forecast"]) and one["lower_80"] < one["forecast"] < one["upper_80"]


def test_a_one_price_series_logs_and_serves(tmp_path: Path, mlflow_store):
    """A series with only a close (the other columns absent, NaN in the table): the logged
    model takes the same (n, window, 5) input and forecasts from the close alone."""
    import keras

    mlflow = mlflow_store
    frame = synthetic_prices(200, "AIRLINE")
    frame[["open", "high", "low", "volume"]] = np.nan
    ws = make_windows(frame, "close", window=12, val_days=30, test_days=30)
    result = fit_variant(ws, "gru", TrainConfig(units=(4,), epochs=1), 3, tmp_path / "g")
    assert result.ok, result.error
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, Path(result.model_path), WIDTHS, "gru")
    out = mlflow.pyfunc.load_model(uri).predict(ws.raw_inputs(ws.test_idx))
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, ws.test_idx)
    assert np.isfinite(out["forecast"]).all()
    np.testing.assert_allclose(out["forecast"], direct, rtol=1e-5)
