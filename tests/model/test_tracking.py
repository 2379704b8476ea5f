"""The MLflow boundary on a real SQLite store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stockcast import tracking
from stockcast.config import TrainConfig
from stockcast.evaluate import predict_prices
from stockcast.train import fit_variant
from stockcast.windows import make_windows
from tests.conftest import synthetic_prices


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    ws = make_windows(synthetic_prices(300), "open", window=10, val_days=40, test_days=40)
    result = fit_variant(ws, "gru", TrainConfig(units=(8,), epochs=1), 5, root / "gru")
    assert result.ok, result.error
    return root, ws, result


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield mlflow
    mlflow.set_tracking_uri(None)


def test_tracking_uri_defaults_to_sqlite_at_the_root(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5999"


def test_logged_pyfunc_takes_prices_and_matches_keras(trained, mlflow_store):
    import keras

    mlflow = mlflow_store
    _, ws, result = trained
    with mlflow.start_run():
        uri = tracking.log_forecaster(mlflow, Path(result.model_path), ws)
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.signature is not None
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 10)
    idx = ws.test_idx
    raw_windows = ws.prices[idx[:, None] + np.arange(-10, 0)]
    via_mlflow = np.asarray(model.predict(raw_windows)).reshape(-1)
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, idx)
    np.testing.assert_allclose(via_mlflow, direct, rtol=1e-5)
    with pytest.raises(
        Exception, match=r"Shape of input \(30, 5\) does not match expected shape \(-1, 10\)"
    ):
        model.predict(raw_windows[:, :5])


def test_champion_is_scored_on_the_callers_span(trained, mlflow_store):
    from mlflow import MlflowClient

    mlflow = mlflow_store
    _, ws, result = trained
    client = MlflowClient()
    assert tracking.champion_rmse(mlflow, client, "stockcast-TEST", ws) is None
    with mlflow.start_run():
        uri = tracking.log_forecaster(mlflow, Path(result.model_path), ws)
    version = mlflow.register_model(uri, "stockcast-TEST")
    client.set_registered_model_alias("stockcast-TEST", tracking.CHAMPION, version.version)
    rmse, champion_version = tracking.champion_rmse(mlflow, client, "stockcast-TEST", ws)
    import keras

    direct = predict_prices(keras.saving.load_model(result.model_path), ws, ws.test_idx)
    expected = float(np.sqrt(np.mean((direct - ws.prices[ws.test_idx]) ** 2)))
    assert champion_version == "1"
    assert rmse == pytest.approx(expected, rel=1e-5)


def test_diff_model_logs_a_pyfunc_that_still_takes_and_returns_prices(mlflow_store, tmp_path):
    import keras

    mlflow = mlflow_store
    ws = make_windows(synthetic_prices(300), "open", 10, 40, 40, "log_return")
    result = fit_variant(ws, "simple_rnn", TrainConfig(units=(4,), epochs=1), 2, tmp_path / "s")
    with mlflow.start_run():
        uri = tracking.log_forecaster(mlflow, Path(result.model_path), ws)
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.metadata["context"] == 11  # a change needs one more price
    idx = ws.test_idx
    raw = ws.prices[idx[:, None] + np.arange(-11, 0)]
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, idx)
    np.testing.assert_allclose(np.asarray(model.predict(raw)).reshape(-1), direct, rtol=1e-5)
    ahead = tracking.forecast(model, ws.prices, horizon=3)
    assert len(ahead) == 3 and all(np.isfinite(ahead))
    assert ahead[0] == pytest.approx(float(model.predict(ws.prices[-11:][None, :])[0]))


def test_rollback_restores_the_previous_champion_and_says_why(trained, mlflow_store):
    from mlflow import MlflowClient

    from stockcast.errors import StockcastError

    mlflow = mlflow_store
    _, ws, result = trained
    client = MlflowClient()
    name = "stockcast-ROLL"
    with pytest.raises(StockcastError, match="has no @champion"):
        tracking.rollback(client, name, "x")
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            uri = tracking.log_forecaster(mlflow, Path(result.model_path), ws)
        versions.append(mlflow.register_model(uri, name).version)
    client.set_registered_model_alias(name, tracking.CHAMPION, versions[0])
    with pytest.raises(StockcastError, match="nothing to roll back to"):
        tracking.rollback(client, name, "x")
    client.set_model_version_tag(name, versions[1], "previous_champion", str(versions[0]))
    client.set_registered_model_alias(name, tracking.CHAMPION, versions[1])
    assert tracking.rollback(client, name, "bad fills on Monday") == ("2", "1")
    assert str(client.get_model_version_by_alias(name, tracking.CHAMPION).version) == "1"
    assert client.get_model_version(name, "2").tags["rolled_back"] == "bad fills on Monday"
    assert client.get_model_version(name, "1").tags["restored_by_rollback_from"] == "2"


def test_model_with_extra_inputs_takes_raw_ohlcv(mlflow_store, tmp_path):
    import keras

    from stockcast.errors import StockcastError

    mlflow = mlflow_store
    ws = make_windows(synthetic_prices(300), "open", 10, 40, 40, "diff", ("close", "range"))
    result = fit_variant(ws, "gru", TrainConfig(units=(4,), epochs=1), 2, tmp_path / "g")
    assert result.ok, result.error
    with mlflow.start_run():
        uri = tracking.log_forecaster(mlflow, Path(result.model_path), ws)
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 11, 5)
    idx = ws.test_idx
    direct = predict_prices(keras.saving.load_model(result.model_path), ws, idx)
    via = np.asarray(model.predict(ws.raw_inputs(idx, 11, True))).reshape(-1)
    np.testing.assert_allclose(via, direct, rtol=1e-5)
    (one,) = tracking.forecast(model, ws.prices, 1, ws.ohlcv)
    assert np.isfinite(one)
    with pytest.raises(StockcastError, match="forecasts one day only"):
        tracking.forecast(model, ws.prices, 2, ws.ohlcv)
