"""Fixtures of the model tests: a real SQLite tracking store in the test's folder."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema made, once per session: a new store runs
    MLflow's migrations (about 1.5 s), a copy of this one opens in under 0.1 s."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def _fresh_store(template: Path, root: Path) -> str:
    """``root/mlflow.db``, a copy of ``template`` whose Default experiment keeps its artifacts
    under ``root`` (as a store made there would); its URI."""
    import sqlite3

    target = root / "mlflow.db"
    shutil.copyfile(template, target)
    with contextlib.closing(sqlite3.connect(target)) as db, db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(root / "mlruns" / "0"),),
        )
    return f"sqlite:///{target}"


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch, migrated_store: Path):
    """An MLflow client on ``tmp_path/mlflow.db``, the project's store for the test (the
    working folder is ``tmp_path``)."""
    import mlflow
    from mlflow import MlflowClient

    uri = _fresh_store(migrated_store, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    yield MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch, migrated_store: Path):
    """MLflow's fluent API pointed at ``tmp_path/mlflow.db`` (for ``mlflow.start_run`` and
    ``mlflow.pyfunc.load_model``)."""
    import mlflow

    uri = _fresh_store(migrated_store, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield mlflow
    mlflow.set_tracking_uri(None)
