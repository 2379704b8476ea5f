"""The daily retrain flow on real parts: served with its cron schedule, triggered by hand,
exiting early without new data, deployed from prefect.yaml, and reporting failures to a
webhook. One Prefect server on loopback for the module."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flows.server import BIN as BIN_DIR
from flows.server import prefect_api
from stockcast.config import VARIANTS
from stockcast.evaluate import BASELINES
from tests.flows.project import make_project, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    old = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    saved = os.environ.pop("PREFECT_API_URL", None)
    try:
        with prefect_api() as url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
    finally:
        if saved:
            os.environ["PREFECT_API_URL"] = saved
        if old is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = old


@pytest.fixture(scope="module")
def served(api, tmp_path_factory):
    """``python -m flows.retrain serve`` running in a fresh project."""
    root = tmp_path_factory.mktemp("retrain")
    # p_value 0.999999: every test flags drift, and on_drift: warn still retrains
    drift = {"recent_days": 20, "p_value": 0.999999, "on_drift": "warn"}
    env = {**make_project(root, drift=drift), "PREFECT_API_URL": api}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.retrain", "serve"],
        cwd=root,
        env=env,
        stdout=open(root / "serve.log", "w"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield root, env, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def _deployment(name: str = "retrain/daily", timeout: float = 90):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_deployment_by_name(name)
            except Exception:  # noqa: BLE001 - not registered yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def test_serve_registers_the_deployment_with_the_cron_from_params(served):
    deployment = _deployment()
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 18 * * 1-5"
    assert schedule.schedule.timezone == "Asia/Shanghai"
    assert schedule.active and not deployment.paused
    assert deployment.parameters == {"params": "params.yaml"}
    assert deployment.global_concurrency_limit.limit == 1


def test_a_manual_trigger_runs_the_chain_then_a_second_finds_nothing_new(served):
    from prefect.artifacts import Artifact
    from prefect.deployments import run_deployment

    root, _, proc = served
    _deployment()
    first = run_deployment("retrain/daily", timeout=900, poll_interval=2)
    log = (root / "serve.log").read_text()
    assert first.state.is_completed(), f"{first.state}\n{log[-6000:]}"
    registry = json.loads((root / "reports/registry.json").read_text())
    assert registry["SH600519"]["variant"] in {*VARIANTS, *BASELINES}
    assert (
        json.loads((root / "reports/drift.json").read_text())["tickers"][0]["ticker"] == "SH600519"
    )
    summary = Artifact.get("retrain-summary").data
    assert "## SH600519" in summary and "| gru |" in summary and "## Drift" in summary
    # drift.on_drift: warn with drift present: a warning, and the chain retrained all the same
    assert json.loads((root / "reports/drift.json").read_text())["drift"] is True
    assert "drift in ['SH600519']" in log

    assert "## Forecasts" in summary and "## Live skill (forecast ledger)" in summary
    (made,) = csv.DictReader(open(root / "data/ledger/forecasts.csv"))
    assert made["ticker"] == "SH600519" and made["made_on"] == "2020-04-24"
    assert made["model_version"] == str(registry["SH600519"]["version"])
    # the run is a commit of its own, and its version comes back from it
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    version = client.get_model_version("stockcast-SH600519", str(registry["SH600519"]["version"]))
    ref = subprocess.run(
        ["git", "rev-parse", "refs/stockcast/runs"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    assert version.tags["restore_commit"] == ref
    env = served[1]
    back = run([str(BIN_DIR / "stockcast"), "restore", "--ticker", "SH600519", "--version",
                str(registry["SH600519"]["version"])], root, env)  # fmt: skip
    assert back.returncode == 0, back.stdout + back.stderr
    into = root / f"restored/stockcast-SH600519-v{registry['SH600519']['version']}"
    for kept in ("models/train.json", "data/interim/validated.parquet", "dvc.lock"):
        assert (into / kept).read_bytes() == (root / kept).read_bytes(), kept

    second = run_deployment("retrain/daily", timeout=300, poll_interval=2)
    assert second.state.is_completed()
    assert "Nothing to do: no source has a new trading day" in Artifact.get("retrain-check").data
    # A run with nothing to do never hides the last real summary.
    assert Artifact.get("retrain-summary").data == summary
    assert len(list(csv.DictReader(open(root / "data/ledger/forecasts.csv")))) == 1
    assert proc.poll() is None  # still serving


def test_stopping_the_server_leaves_the_schedule_on(served):
    _, _, proc = served
    _deployment()
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    deployment = _deployment()
    assert not deployment.paused and deployment.schedules[0].active


def test_prefect_yaml_deploys_the_same_flow_to_a_work_pool(served, api):
    root, env, _ = served
    env = {**env, "STOCKCAST_ROOT": str(root)}
    pool = run(["prefect", "work-pool", "create", "stockcast", "--type", "process"], root, env)
    assert pool.returncode == 0 or "already exists" in pool.stdout, pool.stdout + pool.stderr
    deployed = run(["prefect", "--no-prompt", "deploy", "--all"], root, env, timeout=300)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    deployment = _deployment()
    assert deployment.work_pool_name == "stockcast"
    assert deployment.entrypoint == "flows/retrain.py:retrain"
    assert deployment.schedules[0].schedule.cron == "0 18 * * 1-5"
    assert str(root) in json.dumps(deployment.pull_steps)


def _webhook() -> tuple[HTTPServer, list[dict]]:
    """A webhook receiver on loopback; the list fills with the JSON bodies it is sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    return hook, received


def _break_a_price(root) -> None:
    bad = root / "data/raw/SH600519.csv"
    lines = bad.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "-1", 1)  # a negative open price
    bad.write_text("\n".join(lines) + "\n")


def test_a_failed_run_is_reported_to_the_webhook(api, tmp_path):
    hook, received = _webhook()
    schedule = {"webhook": f"http://127.0.0.1:{hook.server_port}/stockcast"}
    env = {**make_project(tmp_path, schedule=schedule), "PREFECT_API_URL": api}
    _break_a_price(tmp_path)
    try:
        result = run([sys.executable, "-m", "flows.retrain", "run"], tmp_path, env)
    finally:
        hook.shutdown()
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stockcast validate stopped" in result.stderr and "validation failed" in result.stderr
    (payload,) = received
    assert payload["flow"] == "retrain" and payload["state"] == "Failed"
    assert "validate" in payload["message"]
    assert not (tmp_path / "models").exists()  # nothing downstream was written


def _tree(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_with_on_drift_retrain_and_no_drift_the_models_are_kept(api, tmp_path):
    """An earlier pipeline run leaves models and a champion; a new trading day arrives with no
    drift: the data is refreshed and validated, and every model, the champion alias and the
    registry stay exactly as they were."""
    from mlflow import MlflowClient

    # p_value 1e-12: no test can flag drift, so the run refreshes the data and stops there
    drift = {"recent_days": 20, "p_value": 1e-12, "on_drift": "retrain"}
    env = {**make_project(tmp_path, drift=drift), "PREFECT_API_URL": api}
    raw = tmp_path / "data/raw/SH600519.csv"
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join(lines[:-1]) + "\n")  # the last day has not happened yet
    first = run([sys.executable, "-m", "flows.repro"], tmp_path, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    champion = client.get_model_version_by_alias("stockcast-SH600519", "champion")
    versions = len(client.search_model_versions("name='stockcast-SH600519'"))
    models = _tree(tmp_path / "models")
    assert models

    raw.write_text("\n".join(lines) + "\n")  # the new day arrives
    result = run([sys.executable, "-m", "flows.retrain", "run"], tmp_path, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '"status": "no drift"' in result.stdout
    assert '"forecasts_recorded": 1' in result.stdout  # the kept champion forecast the next day
    report = json.loads((tmp_path / "reports/drift.json").read_text())
    assert report["drift"] is False and report["newest_day"]["SH600519"] == "2020-04-24"
    assert _tree(tmp_path / "models") == models  # not one byte of any model changed
    now = client.get_model_version_by_alias("stockcast-SH600519", "champion")
    assert now.version == champion.version
    assert len(client.search_model_versions("name='stockcast-SH600519'")) == versions


def test_a_failed_make_pipeline_is_reported_to_the_webhook_and_apprise(tmp_path):
    hook, received = _webhook()
    schedule = {"webhook": f"http://127.0.0.1:{hook.server_port}/stockcast"}
    env = make_project(tmp_path, schedule=schedule)
    # Apprise's json:// service POSTs the notice as JSON: a stand-in for Slack or Teams
    env["STOCKCAST_NOTIFY_URL"] = f"json://127.0.0.1:{hook.server_port}/apprise"
    _break_a_price(tmp_path)
    try:
        result = run([sys.executable, "-m", "flows.repro"], tmp_path, env)
    finally:
        hook.shutdown()
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    payload, notice = received
    assert payload["flow"] == "make pipeline" and payload["state"] == "FAILED"
    assert payload["exit_code"] == 1 and payload["project"] == str(tmp_path)
    assert "failure posted to the webhook (HTTP 200)" in result.stdout
    assert notice["title"] == "stockcast: make pipeline FAILED" and notice["type"] == "failure"
    assert f"make pipeline in {tmp_path} failed with exit code 1" in notice["message"]
    assert "failure notice sent to 1 Apprise URL(s) in $STOCKCAST_NOTIFY_URL" in result.stdout


def _flaky_csv_server(body: bytes, failures: int) -> tuple[HTTPServer, list[int]]:
    """Serves ``body``; the first ``failures`` requests get HTTP 503. Returns the statuses."""
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            status = 503 if len(statuses) < failures else 200
            statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, statuses


def test_drift_with_on_drift_retrain_retrains_after_a_retried_fetch_and_pushes(api, tmp_path):
    """A URL source whose first answer is 503 (no retries in the fetch itself, so the flow's
    source check has to retry), drift found with ``on_drift: retrain``: the chain retrains,
    and ``dvc push`` fills the project's DVC remote."""
    import yaml

    from tests.conftest import PROJECT

    body = (PROJECT / "data/raw/SH600519.csv").read_bytes()
    lines = body.decode().splitlines()
    body = ("\n".join([lines[0], *lines[-520:]]) + "\n").encode()
    server, statuses = _flaky_csv_server(body, failures=1)
    data = yaml.safe_load((PROJECT / "params.yaml").read_text())["data"]
    url = f"http://127.0.0.1:{server.server_port}/SH600519.csv"
    data.update(sources=[{"path": url, "ticker": "SH600519"}], fetch_retries=0)
    drift = {"recent_days": 20, "p_value": 0.999999, "on_drift": "retrain"}
    env = {**make_project(tmp_path, data=data, drift=drift), "PREFECT_API_URL": api}
    remote = tmp_path.parent / f"{tmp_path.name}-remote"
    subprocess.run(["dvc", "remote", "add", "-d", "store", str(remote)], cwd=tmp_path, env=env)
    try:
        result = run([sys.executable, "-m", "flows.retrain", "run"], tmp_path, env)
    finally:
        server.shutdown()
    out = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, out
    # fetch_retries: 0, so the 503 failed the source check and the flow's task retry fetched
    assert statuses[0] == 503 and statuses[1:] and set(statuses[1:]) == {200}
    said = json.loads(result.stdout[result.stdout.rindex("{\n") :])
    assert said["status"] == "retrained" and said["drift"] is True and said["pushed"] is True
    assert (tmp_path / "models/SH600519/gru/model.keras").exists()
    pushed = [p for p in remote.rglob("*") if p.is_file()]
    assert len(pushed) >= 5  # the ingested, validated and windowed data, models, reports
    status = run(["dvc", "status", "--cloud", "--json"], tmp_path, env)
    assert json.loads(status.stdout or "{}") == {}, status.stdout  # the remote has everything
