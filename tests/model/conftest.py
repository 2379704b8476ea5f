"""Fixtures of the model tests: a real SQLite tracking store in the test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch):
    """An MLflow client on ``tmp_path/mlflow.db``, the project's store for the test (the
    working folder is ``tmp_path``)."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    yield MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch):
    """MLflow's fluent API pointed at ``tmp_path/mlflow.db`` (for ``mlflow.start_run`` and
    ``mlflow.pyfunc.load_model``)."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield mlflow
    mlflow.set_tracking_uri(None)
