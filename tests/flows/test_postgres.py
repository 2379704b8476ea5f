"""The pipeline against an ``mlflow server`` whose backend store is PostgreSQL (started here on
127.0.0.1 in a temporary data folder) and whose artifacts live outside the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from flows.server import free_port
from tests.flows.project import make_project, mlflow_server, pipeline

pytestmark = pytest.mark.e2e


def _pg_bin() -> Path | None:
    """Debian's PostgreSQL binaries (``make postgres`` installs them)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres():
    """A PostgreSQL server of its own: ``initdb`` in a temporary folder, on 127.0.0.1."""
    bin_dir = _pg_bin()
    if bin_dir is None or os.geteuid() != 0:
        if os.environ.get("STOCKCAST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is missing (make postgres installs Debian's postgresql)")
        pytest.skip("needs Debian's postgresql and root to run it as the postgres user")
    data = Path(tempfile.mkdtemp(prefix="stockcast-pg-"))  # reachable by the postgres user
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "initdb"),
            "-D",
            str(data / "db"),
            "-U",
            "mlflow",
            "--auth=trust",
            "-E",
            "UTF8",
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-l",
            str(data / "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {data}",
            "start",
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "mlflow",
                "mlflow",
            ],  # fmt: skip
            check=True,
            capture_output=True,
        )
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [
                *as_postgres,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data / "db"),
                "-m",
                "fast",
                "stop",
            ],  # fmt: skip
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def test_the_pipeline_tracks_to_a_server_on_postgresql(postgres, tmp_path):
    import psycopg2
    from mlflow import MlflowClient

    root, artifacts = tmp_path / "project", tmp_path / "artifacts"
    root.mkdir()
    env = make_project(root)
    backend = postgres.replace("postgresql://", "postgresql+psycopg2://")
    with mlflow_server(backend, artifacts, tmp_path, env) as uri:
        result = pipeline(root, {**env, "MLFLOW_TRACKING_URI": uri})
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        client = MlflowClient(tracking_uri=uri)
        champion = client.get_model_version_by_alias("stockcast-SH600519", "champion")
        assert champion.tags["promotion"] == "promoted"
        experiment = client.get_experiment_by_name("stockcast")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 5  # the parent, 3 networks and the strongest baseline
    # the runs and the registry are rows in PostgreSQL; the models are files outside the project
    with psycopg2.connect(postgres) as db, db.cursor() as cursor:
        cursor.execute("select count(*) from runs where status = 'FINISHED'")
        assert cursor.fetchone()[0] == 5
        cursor.execute("select count(*) from model_versions where name = 'stockcast-SH600519'")
        assert cursor.fetchone()[0] == 1
    assert any(p.name == "MLmodel" for p in artifacts.rglob("MLmodel"))
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists()
