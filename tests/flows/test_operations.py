"""Operation on real parts: a real ``mlflow server`` as the store, Dask as the task runner,
the MLflow UI checked in a real browser, DVC experiments, and one run at a time.

One short pipeline run (SH600519, tiny models, 1 epoch) fills a tracking server started on
loopback; the tests then read it back the way users do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.server import free_port
from stockcast.config import VARIANTS, load_config
from stockcast.evaluate import BASELINES
from tests.flows.project import commit, make_project, mlflow_server, pipeline, run
from tests.flows.project import stop as _stop
from tests.flows.project import wait_http as _wait_http

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A project whose pipeline ran on Dask against a real MLflow tracking server."""
    root = tmp_path_factory.mktemp("ops")
    env = make_project(root, execution={"runner": "dask", "max_workers": 2})
    commit(root, env, "the project as it runs")  # so the runs carry a real git revision
    store = root / "server"
    store.mkdir()
    with mlflow_server(f"sqlite:///{store}/mlflow.db", store / "artifacts", store, env) as uri:
        env["MLFLOW_TRACKING_URI"] = uri
        result = pipeline(root, env)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        yield root, env, uri, store, result


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_the_pipeline_logs_to_a_tracking_server_unchanged(served):
    root, _, uri, _, _ = served
    client = _client(uri)
    experiment = client.get_experiment_by_name("stockcast")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stockcast.run") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4  # 3 networks, the strongest baseline
    variants = {c.data.tags["variant"] for c in children}
    assert set(VARIANTS) < variants and len((variants - set(VARIANTS)) & set(BASELINES)) == 1
    assert all(c.info.status == "FINISHED" and "test_rmse" in c.data.metrics for c in children)
    champion = client.get_model_version_by_alias("stockcast-SH600519", "champion")
    assert champion.tags["promotion"] == "promoted"
    assert not (root / "mlflow.db").exists()  # nothing went to the local default store


def test_every_run_carries_its_lineage(served):
    root, _, uri, _, _ = served
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    processed = next(o for o in lock["window"]["outs"] if o["path"] == "data/processed")
    ingested = next(
        o for o in lock["ingest"]["outs"] if o["path"] == "data/interim/ingested.parquet"
    )
    head = subprocess.run(  # the fixture's commit, the one the pipeline ran on
        ["git", "rev-list", "--max-parents=0", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    params_hash = load_config(root / "params.yaml").digest()
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("stockcast").experiment_id])
    for r in runs:
        tags = r.data.tags
        assert tags["dvc_dataset_md5"] == processed["md5"]
        assert tags["dvc_ingested_md5"] == ingested["md5"]
        assert tags["git_commit"] == head
        assert tags["git_dirty"] == "False"  # the stages write only DVC-tracked outputs
        assert tags["params_hash"] == params_hash
        assert tags["prefect_flow_run_id"]
    parent = next(r for r in runs if r.data.tags.get("stockcast.run") == "pipeline")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"validation", "drift"} <= artifacts
    assert parent.data.tags["drift"] in {"True", "False"}
    version = client.get_model_version_by_alias("stockcast-SH600519", "champion")
    assert version.tags["dvc_dataset_md5"] == processed["md5"]


def test_the_three_variants_trained_on_a_dask_local_cluster(served):
    root, _, _, _, result = served
    summary = json.loads((root / "models/train.json").read_text())["SH600519"]
    assert set(summary) == {"simple_rnn", "lstm", "gru"}
    assert all(r["error"] is None for r in summary.values())
    workers = {r["worker"] for r in summary.values()}
    # each fit records the process it ran in: Dask worker processes, two at most
    assert all("Dask Worker" in w for w in workers), workers
    assert 1 <= len({w.split("pid ")[-1] for w in workers}) <= 2


def test_the_mlflow_ui_opens_on_the_verdict_and_the_figures_that_choose(served, tmp_path):
    """What a person sees on `make ui`'s URL: the training view (not GenAI's), the parent
    run's verdict, the selection span's figures as columns and as the first charts."""
    if not CHROMIUM.exists():
        if os.environ.get("STOCKCAST_REQUIRE_BROWSER"):
            pytest.fail("Chromium is missing: `make browser` installs Debian's chromium")
        pytest.skip("no /usr/bin/chromium (make test installs it)")
    from playwright.sync_api import expect, sync_playwright

    from stockcast.scores import selection_span

    root, env, uri, store, _ = served
    span = selection_span(load_config(root / "params.yaml").backtest.folds)
    # a second pipeline run with another target transform: the compare view must show it
    original = (root / "params.yaml").read_text()
    try:
        again = pipeline(root, env, "-S", "features.target_transform=diff")
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    finally:
        (root / "params.yaml").write_text(original)
    port = free_port()
    printed = tmp_path / "ui.out"
    with printed.open("w") as out:
        ui = subprocess.Popen(
            # -o: the project's venv is a link to ours, already set up: never reinstall into it
            ["make", "-o", str(root / ".venv/.installed"), "-o", str(root / ".venv/.compiled")]
            + ["ui", f"MLFLOW_PORT={port}"],
            cwd=root,
            env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"},
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    client = _client(uri)
    experiment = client.get_experiment_by_name("stockcast")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    parent_run, diff_run = [r for r in runs if r.data.tags.get("stockcast.run") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == diff_run.info.run_id]
    grus = [
        next(
            r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            and r.data.tags.get("variant") == "gru"
        )
        for parent in (parent_run, diff_run)
    ]
    shot = root.parent / "reports"
    shot.mkdir(exist_ok=True)
    try:
        _wait_http(f"{base}/health", ui)
        link = re.search(r"open (http\S+)", printed.read_text())
        assert link, printed.read_text()  # the URL `make ui` prints is the one a person opens
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(link[1])
            # the newest run leads; its name is the verdict, readable without a click
            name = diff_run.data.tags["mlflow.runName"]
            verdict = name.split(" · ")[0]
            assert "SH600519: " in verdict and " is champion; best network " in verdict, name
            parent = page.get_by_role("link", name=name, exact=True)
            expect(parent).to_be_visible(timeout=60000)
            expect(parent).to_be_in_viewport()
            expect(parent).to_contain_text(verdict)
            cell = page.get_by_role("gridcell").filter(has=parent).first
            assert cell.bounding_box()["width"] >= 500  # wide enough to read the verdict
            # the training view: GenAI's sidebar entries are not there
            expect(page.get_by_text("Model training", exact=True).first).to_be_visible()
            for genai in ("Judges", "Agent versions"):
                expect(page.get_by_text(genai, exact=True)).to_have_count(0)
            # the figure that chooses heads the metric columns, on the first screen
            first = page.get_by_role("columnheader").filter(
                has_text=re.compile(f"^{span}_rmse_vs_best_baseline$")
            )
            expect(first.first).to_be_in_viewport()
            page.screenshot(path=str(shot / "mlflow-first-screen.png"))
            close = page.get_by_label("Close")  # MLflow's Assistant panel, once per browser
            if close.count():
                close.first.click()
            # the variant runs are nested under the parent: expand it, as a person would
            cell.get_by_role("button").first.click()
            for child in children:
                link_ = page.get_by_role("link", name=child.data.tags["mlflow.runName"], exact=True)
                expect(link_).to_be_visible(timeout=30000)
            # each child's figure is in its column (the full value: JS and Python print a
            # float the same way, but for a whole number's ".0")
            key = f"{span}_rmse_vs_best_baseline"
            column = page.locator(f"[role=gridcell][col-id='metrics.`{key}`']")
            expect(column).to_have_count(len(children) + 2)  # and the two parents' "-"
            cells = [c.strip() for c in column.all_inner_texts()]
            for child in children:
                assert repr(child.data.metrics[key]).removesuffix(".0") in cells, cells
            page.screenshot(path=str(shot / "mlflow-runs.png"), full_page=True)
            # the chart view leads with the same figures, one bar per run
            page.locator("label:has(input[value=CHART])").click()
            section = page.get_by_text(re.compile(rf"^Selection \({span}, against the best"))
            expect(section.first).to_be_visible(timeout=30000)
            cards = page.get_by_text(re.compile(rf"^{span}_rmse_vs_best_baseline$"))
            expect(cards.first).to_be_in_viewport(timeout=30000)
            page.screenshot(path=str(shot / "mlflow-charts.png"))
            children = [
                r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_run.info.run_id
            ]
            networks = [c for c in children if c.data.tags["kind"] == "network"]
            ids = json.dumps([c.info.run_id for c in networks])
            page.goto(
                f"{base}/#/compare-runs?runs={ids}&experiments="
                f"{json.dumps([experiment.experiment_id])}"
            )
            shown = _compare_row(page, "test_rmse")
            # the compare view shows 4 significant digits, one column per run, in run order
            assert shown == [f"{c.data.metrics['test_rmse']:.4g}" for c in networks], shown
            chosen_on = _compare_row(page, f"{span}_rmse_vs_best_baseline")
            key = f"{span}_rmse_vs_best_baseline"
            assert chosen_on == [f"{c.data.metrics[key]:.4g}" for c in networks], chosen_on
            page.screenshot(path=str(shot / "mlflow-compare.png"), full_page=True)
            # the GRU of each run side by side: the transform differs, test_rmse is there
            # (a fresh page: a hash change alone leaves the single-page app's last compare)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(
                f"{base}/#/compare-runs?runs={json.dumps([r.info.run_id for r in grus])}"
                f"&experiments={json.dumps([experiment.experiment_id])}"
            )
            values, differs = _param_row(page, "features.target_transform")
            assert values == ["log_return", "diff"] and differs, values
            shown = _compare_row(page, "test_rmse")
            assert shown == [f"{r.data.metrics['test_rmse']:.4g}" for r in grus], shown
            assert _param_row(page, "window.window") == (["10", "10"], False)
            page.screenshot(path=str(shot / "mlflow-compare-transforms.png"), full_page=True)
            browser.close()
    finally:
        _stop(ui)
    saved = Path(__file__).resolve().parents[2] / "reports"
    saved.mkdir(exist_ok=True)
    shots = ("mlflow-first-screen.png", "mlflow-runs.png", "mlflow-charts.png")
    for name in (*shots, "mlflow-compare.png", "mlflow-compare-transforms.png"):
        (saved / name).write_bytes((shot / name).read_bytes())


def _param_row(page, key: str, runs: int = 2) -> tuple[list[str], bool]:
    """A parameter's values in the compare view, one per run (waiting for every run's
    column), and whether the view marks the row as differing."""
    from playwright.sync_api import expect

    head = page.locator("th.head-value").filter(has_text=re.compile(f"^{re.escape(key)}$"))
    expect(head.first).to_be_visible(timeout=60000)
    row = head.first.locator("xpath=..")
    expect(row.locator("td")).to_have_count(runs, timeout=60000)
    cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    return cells, "diff-row" in (row.get_attribute("class") or "")


def _compare_row(page, metric: str) -> list[str]:
    """The values of ``metric`` in the compare view's metrics table (virtualised grids that
    only render the rows in view: scroll them until the row is there)."""
    from playwright.sync_api import expect

    label = page.get_by_role("link", name=metric, exact=True)
    expect(page.locator("a[title='Plot chart']").first).to_be_visible(timeout=60000)
    for _ in range(60):
        if label.count():
            break
        page.evaluate(
            "() => document.querySelectorAll('.ReactVirtualized__Grid')"
            ".forEach(g => { g.scrollTop += 200; g.dispatchEvent(new Event('scroll')); })"
        )
        page.wait_for_timeout(150)
    top = label.first.locator("xpath=..").evaluate("e => e.style.top")
    page.wait_for_timeout(500)
    cells = page.locator(f".ReactVirtualized__Grid [style*='top: {top}']").all_inner_texts()
    return [c.strip() for c in cells if c.strip() != metric]


def test_a_dvc_experiment_reruns_train_and_shows_in_metrics_and_params_diff(served):
    root, env, _, _, _ = served
    commit(root, env, "baseline run")
    result = pipeline(root, env, "-S", "train.epochs=2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Running stage 'train'" in result.stdout
    assert "Running stage 'ingest'" not in result.stdout  # DVC reran only what the param feeds
    params = json.loads(run(["dvc", "params", "diff", "--json"], root, env).stdout)
    changed = params["params.yaml"]["train.epochs"]
    assert (changed["old"], changed["new"]) == (1, 2)
    shown = run(["dvc", "exp", "show", "--json"], root, env)
    assert shown.returncode == 0 and '"train.epochs"' not in shown.stderr
    metrics = run(["dvc", "metrics", "diff", "--json", "--all"], root, env)
    diff = json.loads(metrics.stdout)["reports/metrics.json"]
    assert "SH600519.gru.test_rmse" in diff
    # make compare: the changed param and a number per headline metric, in 120 columns
    compared = run(["stockcast", "compare"], root, env)
    assert compared.returncode == 0, compared.stdout[-2000:] + compared.stderr[-2000:]
    hints = ("every metric's", "(not shown")  # what to run for more, columns left out
    lines = [line for line in compared.stdout.splitlines() if line.strip(" -")]
    lines = [line for line in lines if not line.startswith(hints)]
    header = lines[0].split()
    metrics = header.count("x") + header.count("test_rmse")  # "gru x best", "best test_rmse"
    assert header[0] == "run" and "train.epochs" in header and metrics >= 2, header
    assert all(len(line) <= 120 for line in lines), compared.stdout
    rows = {row[0]: row for row in (line.split() for line in lines[1:])}
    epochs = header.index("train.epochs")
    assert sorted({row[epochs] for row in rows.values()}) == ["1", "2"], compared.stdout
    assert len(rows) >= 3, compared.stdout  # the workspace, HEAD and the experiment
    for name, row in rows.items():
        if name != "workspace":  # HEAD and each experiment: every headline metric a number
            assert all(float(cell) > 0 for cell in row[-metrics:]), row
    # in Prefect the experiment is one pipeline flow run, its stages subflows of it
    runs = _flow_runs(root, env)
    (exp,) = [r for r in runs if r["parameters"].get("experiment") == ["train.epochs=2"]]
    assert exp["flow"] == "pipeline" and exp["parent"] is None
    stages = {r["flow"] for r in runs if r["parent_flow_run"] == exp["id"]}
    assert {"train", "evaluate", "register"} <= stages and "ingest" not in stages
    assert all(r["parent"] is not None for r in runs if r["flow"] != "pipeline")


FLOW_RUNS = """
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    out = []
    for r in client.read_flow_runs():
        parent = client.read_task_run(r.parent_task_run_id) if r.parent_task_run_id else None
        out.append({"id": str(r.id), "flow": client.read_flow(r.flow_id).name,
                    "parameters": r.parameters, "parent": str(r.parent_task_run_id or "") or None,
                    "parent_flow_run": str(parent.flow_run_id) if parent else None})
print(json.dumps(out))
"""


def _flow_runs(root: Path, env: dict[str, str]) -> list[dict]:
    """Every flow run in the project's Prefect database, read through a server on it."""
    from flows.server import prefect_api

    os.environ["PREFECT_HOME"] = env["PREFECT_HOME"]
    try:
        with prefect_api() as url:
            done = subprocess.run(
                [sys.executable, "-c", FLOW_RUNS], cwd=root, capture_output=True, text=True,
                env={**env, "PREFECT_API_URL": url}, timeout=120,
            )  # fmt: skip
    finally:
        os.environ.pop("PREFECT_HOME", None)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_run_at_once_exits_with_a_clear_message(served):
    from stockcast.ops import run_lock

    root, env, _, _, _ = served
    with run_lock(root, "the test's own run"):
        result = pipeline(root, env, "--force")
    assert result.returncode == 3
    assert "another stockcast run is in progress (the test's own run" in result.stderr
    assert "Running stage" not in result.stdout


def _hold_the_lock(root: Path, env: dict, seconds: float) -> subprocess.Popen:
    """Another process holding the project's run lock for ``seconds``; returns once held."""
    code = (
        "import sys, time; from pathlib import Path; from stockcast.ops import run_lock\n"
        "with run_lock(Path('.'), 'a holder of the test'):\n"
        "    print('held', flush=True); time.sleep(float(sys.argv[1]))\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(seconds)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def _with_params(root: Path, **sections) -> str:
    """Update sections of the project's params.yaml; returns the text to restore."""
    saved = (root / "params.yaml").read_text()
    params = yaml.safe_load(saved)
    for section, values in sections.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return saved


def test_lock_wait_seconds_waits_for_the_holder_then_runs(served):
    root, env, _, _, _ = served
    saved = _with_params(root, schedule={"lock_wait_seconds": 120})
    holder = _hold_the_lock(root, env, 6)
    try:
        started = time.monotonic()
        result = pipeline(root, env, "--single-item", "ingest")
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
        (root / "params.yaml").write_text(saved)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert holder.returncode == 0 and waited >= 4  # it waited for the holder, then ran
    assert "did not start" not in result.stderr


def test_a_wait_that_runs_out_exits_3_naming_the_holder(served):
    root, env, _, _, _ = served
    saved = _with_params(root, schedule={"lock_wait_seconds": 2})
    holder = _hold_the_lock(root, env, 15)
    try:
        started = time.monotonic()
        result = pipeline(root, env, "--single-item", "ingest")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=30)
        (root / "params.yaml").write_text(saved)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "(a holder of the test, pid" in result.stderr and "after waiting 2 s" in result.stderr
    assert 2 <= waited < 15


def test_a_locked_retrain_exits_3_and_alerts_nobody(served):
    """The daily job finding another run at work: exit code 3, the flow run Cancelled (not
    Failed), so no failure webhook fires."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    from stockcast.ops import run_lock

    posted = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posted.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    Thread(target=hook.serve_forever, daemon=True).start()
    root, env, _, _, _ = served
    saved = _with_params(root, schedule={"webhook": f"http://127.0.0.1:{hook.server_port}/"})
    try:
        with run_lock(root, "the test's own run"):
            result = run([sys.executable, "-m", "flows.retrain", "run"], root, env)
    finally:
        hook.shutdown()
        (root / "params.yaml").write_text(saved)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stockcast retrain did not start: another stockcast run is in progress" in result.stderr
    assert "the test's own run" in result.stderr
    assert "Cancelled" in result.stdout + result.stderr
    assert posted == []


def _champion(uri: str) -> str:
    return _client(uri).get_model_version_by_alias("stockcast-SH600519", "champion").version


def _register(root: Path, env: dict[str, str], **more: str) -> subprocess.CompletedProcess:
    """The register stage alone, as the README says to rerun it."""
    args = [sys.executable, "-m", "flows.repro", "register", "--single-item", "--force"]
    return run(args, root, {**env, **more}, timeout=600)


@pytest.fixture(scope="module")
def proxy(served):
    """One loopback proxy in front of the served store for the fault tests: MLflow records
    the address a model was logged through, so every run of these tests uses this one."""
    from tests.flows.project import FlakyProxy

    with FlakyProxy(served[2]) as running:
        yield running


def test_a_store_that_drops_connections_then_answers_is_retried(served, proxy):
    root, env, uri, _, _ = served
    champion = _champion(uri)
    proxy.reset(drop=2, unavailable=1)
    result = _register(root, env, MLFLOW_TRACKING_URI=proxy.uri)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-4000:]
    assert (proxy.dropped, proxy.refused) == (2, 1) and proxy.forwarded > 0
    assert re.search(r"failed \(connection broken\): retrying, \d tries left", said), said[-3000:]
    assert "failed (HTTP 503): retrying" in said
    assert "Traceback" not in said
    assert _champion(uri) == champion  # the same data again: a tie never promotes


def test_a_store_that_never_answers_exits_1_plainly_and_changes_nothing(served):
    root, env, uri, _, _ = served
    champion, kept = _champion(uri), ("reports/registry.json", "dvc.lock")
    before = {name: (root / name).read_bytes() for name in kept}
    dead = f"http://127.0.0.1:{free_port()}"
    result = _register(root, env, MLFLOW_TRACKING_URI=dead, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
    assert result.returncode == 1
    assert f"the MLflow tracking store at {dead} did not answer while " in result.stderr
    assert "(connection refused; 5 tries per request" in result.stderr
    assert "Nothing was changed: no @champion moved" in result.stderr
    assert "rerun this stage alone: stockcast run register --single-item --force" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert {name: (root / name).read_bytes() for name in kept} == before
    assert _champion(uri) == champion


def test_a_register_killed_mid_write_leaves_no_mlflow_run_running(served, proxy):
    from stockcast.store import ENDED_BY_TAG, JOURNAL, PROJECT_TAG, project_id

    root, env, uri, _, _ = served
    champion, client = _champion(uri), _client(uri)
    experiment = client.get_experiment_by_name("stockcast").experiment_id
    ours = f"attributes.status = 'RUNNING' and tags.`{PROJECT_TAG}` = '{project_id(root)}'"
    slow = proxy.reset(delay=0.2)  # a slow store: the kill lands mid-register
    args = [sys.executable, "-m", "flows.repro", "register", "--single-item", "--force"]
    proc = subprocess.Popen(
        args, cwd=root, env={**env, "MLFLOW_TRACKING_URI": slow.uri},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not client.search_runs([experiment], ours):
        assert proc.poll() is None and time.monotonic() < deadline, "register never began"
        time.sleep(0.2)
    os.killpg(proc.pid, 9)
    proc.wait()
    left = {r.info.run_id for r in client.search_runs([experiment], ours)}
    assert left and (root / JOURNAL).exists()
    assert _champion(uri) == champion

    result = _register(root, env, MLFLOW_TRACKING_URI=proxy.reset().uri)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert not client.search_runs([experiment], ours)
    for run_id in left:
        ended = client.get_run(run_id)
        assert ended.info.status == "KILLED"
        assert ended.data.tags[ENDED_BY_TAG].startswith("pipeline ")
    assert not (root / JOURNAL).exists()
    assert _champion(uri) == champion


def test_fits_past_their_timeout_on_dask_are_recorded_and_the_stage_fails(served):
    # one variant timing out while the other finishes: tests/flows/test_train_flow.py
    root, env, _, _, _ = served
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(variants=["simple_rnn", "gru"], epochs=200, patience=200)
    params["execution"]["timeout_seconds"] = 3
    params["train"]["units"] = [64, 64]  # slow enough that 200 epochs outlast 3 s
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (root / "models/train.json").read_bytes()
    result = pipeline(root, env, "--single-item", "train")
    assert result.returncode != 0
    assert (root / "models/train.json").read_bytes() == before  # the last good models stay
    summary = json.loads((root / "models.failed/train.json").read_text())["SH600519"]
    assert set(summary) == {"simple_rnn", "gru"}
    for record in summary.values():
        assert "timeout" in (record["error"] or "").lower(), record["error"]
    said = result.stderr + result.stdout
    assert "every variant failed" in said and "models.failed/" in said
