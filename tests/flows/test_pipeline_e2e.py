"""The whole pipeline, as ``make pipeline`` runs it, on a short sample in a temporary project.

Real Prefect (one local server for the run), real DVC, real Great Expectations, real MLflow
(SQLite store at the project root). Tiny models, 2 epochs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES, PROJECT
from tests.flows.project import pipeline
from tests.flows.project import run as run_command

pytestmark = pytest.mark.e2e

METRICS = {
    "test_rmse",
    "test_mae",
    "test_mape",
    "naive_rmse",
    "naive_mae",
    "rmse_vs_naive",
    "test_mase",
    "test_directional_accuracy",
    "val_rmse",
    "val_rmse_vs_naive",
    "test_rmse_vs_best_baseline",
    "test_dm_p_value",
    "val_rmse_vs_best_baseline",
    "backtest_rmse",
    "backtest_rmse_vs_best_baseline",
    "backtest_dm_p_value",
    "interval_halfwidth_80",
    "test_coverage_95",
    "test_interval_score_80",
}
CANDIDATES = ["drift", "gru", "last_close", "lstm", "moving_average", "naive", "simple_rnn"]
STAGES = {"ingest", "validate", "drift", "window", "train", "evaluate", "register"}


def _make_project(root: Path) -> None:
    for name in ("src", "flows"):
        shutil.copytree(
            PROJECT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    shutil.copy(PROJECT / "dvc.yaml", root / "dvc.yaml")
    (root / "data/raw").mkdir(parents=True)
    # Two tickers in two layouts: the seed's legacy tushare file and a Kaggle all_stocks_5yr file.
    for name, source in (
        ("SH600519.csv", PROJECT / "data/raw/SH600519.csv"),
        ("MSFT_data.csv", FIXTURES / "e2e/MSFT_data.csv"),
    ):
        raw = source.read_text().splitlines()
        (root / "data/raw" / name).write_text("\n".join([raw[0], *raw[-260:]]) + "\n")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["data"]["sources"] = [
        {"path": "data/raw/SH600519.csv", "ticker": "SH600519"},
        {"path": "data/raw/MSFT_data.csv"},
    ]
    params["window"] = {"window": 10, "val_days": 50, "test_days": 60}
    params["train"].update(units=[8, 8], epochs=2, patience=2, batch_size=32)
    params["backtest"] = {"folds": 2, "fold_days": 30}
    params["register"]["max_rmse_vs_naive"] = None  # the naive gates have their own tests
    params["register"]["max_mase"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("mlflow.db\nmlruns/\n.prefect/\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    _make_project(root)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_URI", "PREFECT_API_URL"))
    }
    env.update(PREFECT_HOME=str(root / ".prefect"), DVC_NO_ANALYTICS="1")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    started = time.perf_counter()
    first = pipeline(root, env)
    elapsed = time.perf_counter() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    return root, env, first, elapsed


def _client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")


def test_every_stage_is_locked_and_each_ran_as_a_prefect_flow(project):
    root, _, first, _ = project
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == STAGES
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    logs = first.stdout + first.stderr
    # one flow run for the pipeline run, each stage a subflow of it
    assert len(re.findall(r"Beginning flow run '[^']+' for flow 'pipeline'", logs)) == 1
    for flow in STAGES:
        assert re.search(rf"Beginning subflow run '[^']+' for flow '{flow}'", logs), flow
    # progress a person can follow: a line per epoch, and per ended fit what remains
    assert "SH600519/gru/main epoch 1/2: loss" in logs
    assert "SH600519/gru/fold2 epoch 2/2" in logs or "SH600519/gru/fold2 ended" in logs
    ended = [line for line in logs.splitlines() if " ended (best val_loss " in line]
    assert len(ended) == 2 * 3 * 3, ended  # 2 tickers x 3 variants x (main + 2 folds)
    assert any("18 of 18 done, 0 remain" in line for line in ended)
    # no link to the run's own Prefect server, gone when the run ends; what to do next
    assert "View at http" not in logs
    assert first.stdout.rstrip().splitlines()[-1].startswith("next: make ui")
    # before it, a table of each ticker's outcome: champion, the networks' edge, the decision
    out = first.stdout.splitlines()
    (head,) = [i for i, line in enumerate(out) if line.startswith("ticker ") and "champion" in line]
    table = out[head + 1 : head + 3]
    assert [line.split()[0] for line in table] == sorted(
        json.loads((root / "reports/registry.json").read_text())
    ), table
    assert all(re.search(r"x \w+ on backtest \(DM p=[0-9.e-]+\)", line) for line in table)
    assert all(re.search(r"(promoted|kept): ", line) for line in table), table
    # the first line, before Prefect and the libraries load: what is about to run
    assert first.stdout.splitlines()[0].startswith("stockcast run: out of date: ")
    assert re.search(r"SH600519: v1 \w+ \((network|baseline)\) is @champion: ", logs)


def test_three_child_runs_with_metrics_history_and_model(project):
    root, _, _, elapsed = project
    client = _client(root)
    experiment = client.get_experiment_by_name("stockcast")
    assert experiment.tags["mlflow.experimentKind"] == "forecasting"  # UI opens on its runs
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["ticker"] == "MSFT,SH600519"
    assert parents[0].data.tags["git_commit"]
    # the parent run spans the pipeline run it records (start-up imports aside), not only
    # the register stage: it began before any child run, by at least the training time
    parent = parents[0].info
    spanned = (parent.end_time - parent.start_time) / 1000
    assert 0.7 * elapsed < spanned <= elapsed, (spanned, elapsed)
    train_seconds = sum(
        r["fit_seconds"]
        for t in json.loads((root / "models/train.json").read_text()).values()
        for r in t.values()
    )
    assert min(r.info.start_time for r in children) - parent.start_time > train_seconds * 500
    metrics = json.loads((root / "reports/metrics.json").read_text())
    registry = json.loads((root / "reports/registry.json").read_text())
    for ticker in ("MSFT", "SH600519"):
        variants = sorted(
            r.data.tags["variant"] for r in children if r.data.tags["ticker"] == ticker
        )
        # every network, and the strongest baseline on the backtest: the one they must beat
        rules = {n: m for n, m in metrics[ticker].items() if m.get("kind") == "baseline"}
        strongest = min(rules, key=lambda n: rules[n]["backtest_rmse"])
        assert variants == sorted(["gru", "lstm", "simple_rnn", strongest])
        assert registry[ticker]["variant"] in variants
        # the weaker rules' scores are on the parent run
        for rule in rules:
            got = parents[0].data.metrics[f"{ticker}.{rule}_backtest_rmse"]
            assert got == pytest.approx(rules[rule]["backtest_rmse"])
    # two tickers: the parent's runs-list columns hold the median edge of the best networks
    edges = sorted(
        min(
            (m for m in metrics[t].values() if m.get("kind") == "network"),
            key=lambda m: m["backtest_rmse"],
        )["backtest_rmse_vs_best_baseline"]
        for t in ("MSFT", "SH600519")
    )
    got = parents[0].data.metrics["backtest_rmse_vs_best_baseline"]
    assert got == pytest.approx(sum(edges) / 2)
    assert parents[0].data.tags["headline_metrics"].startswith("backtest_rmse_vs_best_baseline")
    parent_artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "validation")}
    assert "validation/validation.json" in parent_artifacts
    assert "validation/data_docs" in parent_artifacts
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert METRICS <= set(run.data.metrics), run.data.metrics
        assert run.data.params["variant"] == run.data.tags["variant"]
        # every parameter that shaped it, comparable across runs in the UI
        assert run.data.params["features.target_transform"] == "log_return"
        assert run.data.params["backtest.folds"] == "2"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        ticker = run.data.tags["ticker"]
        assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == [
            f"plots/{ticker}_forecast.png"
        ]
        # a model for every network (each trained for its ticker) and for the registered one
        logged = run.data.tags["kind"] == "network" or (
            registry[ticker]["variant"] == run.data.tags["variant"]
        )
        assert ("spec" in artifacts) == logged, (run.data.tags["variant"], artifacts)
        # what it trained on, in the UI's dataset column
        (data,) = run.inputs.dataset_inputs
        ticker = run.data.tags["ticker"]
        assert data.dataset.name == f"{ticker} open"
        seen = {t.key: t.value for t in data.tags}
        assert seen["mlflow.data.context"] == "training" and seen["rows"] == "260"
        assert seen["dates"].count("..") == 1
        if run.data.tags["kind"] == "network":
            history = client.get_metric_history(run.info.run_id, "val_loss")
            assert len(history) == int(run.data.metrics["epochs_run"]) >= 1


def test_best_on_the_backtest_is_registered_and_becomes_champion(project):
    root, *_ = project
    client = _client(root)
    champion = client.get_model_version_by_alias("stockcast-SH600519", "champion")
    assert champion.tags["promotion"] == "promoted"
    assert "no champion yet" in champion.tags["promotion_reason"]
    runs = client.search_runs(
        [client.get_experiment_by_name("stockcast").experiment_id],
        filter_string="tags.variant != ''",
    )
    mine = {r.data.tags["variant"]: r for r in runs if r.data.tags["ticker"] == "SH600519"}
    chosen = mine[champion.tags["variant"]].data.metrics["backtest_rmse"]
    baselines = [r for r in mine.values() if r.data.tags["kind"] == "baseline"]
    assert chosen <= min(r.data.metrics["backtest_rmse"] for r in baselines)
    assert champion.tags["selected_on"] == "backtest rmse"
    assert champion.tags["kind"] == mine[champion.tags["variant"]].data.tags["kind"]
    registry = json.loads((root / "reports/registry.json").read_text())
    assert registry["SH600519"]["promote"] is True
    assert registry["SH600519"]["variant"] == champion.tags["variant"]


def test_outputs_land_where_the_readme_says(project):
    root, *_ = project
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics["SH600519"]) == {"baselines", *CANDIDATES}
    assert {"naive_rmse", "drift_rmse", "moving_average_mase", "last_close_rmse"} <= set(
        metrics["SH600519"]["baselines"]
    )
    # one chart per ticker of its candidates
    assert sorted(p.name for p in (root / "reports/plots").glob("*_forecast.png")) == [
        "MSFT_forecast.png",
        "SH600519_forecast.png",
    ]
    assert (root / "reports/plots/SH600519_forecast.png").stat().st_size > 1000
    for variant in ("simple_rnn", "lstm", "gru"):
        assert (root / f"models/SH600519/{variant}/model.keras").exists()
    assert (root / "reports/validation/data_docs/index.html").exists()
    assert (root / "reports/predictions/SH600519.csv").exists()
    folds = json.loads((root / "models/backtest.json").read_text())["SH600519"]["gru"]
    assert [f["fold"] for f in folds] == [1, 2] and all(f["error"] is None for f in folds)
    assert metrics["SH600519"]["gru"]["backtest_folds"] == 2
    assert (root / "reports/backtest/SH600519.csv").exists()
    assert (root / "reports/plots/SH600519_backtest.png").exists()


def test_predict_writes_a_forecast_per_champion(project):
    import pandas as pd

    root, env, _, _ = project
    run = run_command(
        [str(Path(sys.executable).parent / "stockcast"), "predict", "--horizon", "2"], root, env
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (written,) = (root / "data/predictions").glob("*.csv")
    table = pd.read_csv(written)
    assert sorted(table["ticker"].unique()) == ["MSFT", "SH600519"]
    assert table.groupby("ticker")["step"].max().tolist() == [2, 2]
    assert (table["forecast_open"] > 0).all()
    assert (table["lower_95"] <= table["lower_80"]).all()
    assert (table["lower_80"] <= table["forecast_open"]).all()
    assert (table["forecast_open"] <= table["upper_80"]).all()
    assert (table["upper_80"] <= table["upper_95"]).all()


def test_second_run_is_a_no_op_and_train_params_rerun_only_train_onwards(project):
    root, env, _, _ = project
    lock_before = (root / "dvc.lock").read_bytes()
    started = time.perf_counter()
    again = pipeline(root, env)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert time.perf_counter() - started < 30
    assert (root / "dvc.lock").read_bytes() == lock_before
    params = yaml.safe_load((root / "params.yaml").read_text())
    rate = params["train"]["learning_rate"]
    params["train"]["learning_rate"] = rate * 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = run_command(["dvc", "status", "--json"], root, env)
        assert set(json.loads(status.stdout)) == {"train"}
        dry = run_command(["dvc", "repro", "--dry"], root, env).stdout
        # (a dry run cannot know train's outputs will change, so it stops listing there)
        assert "Running stage 'train'" in dry
        assert "Running stage 'ingest'" not in dry and "Running stage 'window'" not in dry
    finally:
        params["train"]["learning_rate"] = rate  # as it was: the later tests start up to date
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


DOWNSTREAM = {
    "ingest": ["ingest", "validate", "drift", "window", "train", "evaluate", "register"],
    "validate": ["validate", "drift", "window", "train", "evaluate", "register"],
    "drift": ["drift", "register"],
    "window": ["window", "train", "evaluate", "register"],
    "train": ["train", "evaluate", "register"],
    "evaluate": ["evaluate", "register"],
    "register": ["register"],
}


@pytest.mark.parametrize("stage", sorted(DOWNSTREAM))
@pytest.mark.parametrize("shell", ["flows/stages/{}.py", "src/stockcast/stages/{}.py"])
def test_editing_a_stage_shell_makes_it_and_its_downstream_stale(project, stage, shell):
    root, env, _, _ = project
    assert json.loads(run_command(["dvc", "status", "--json"], root, env).stdout) == {}
    path = root / shell.format(stage)
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        status = set(json.loads(run_command(["dvc", "status", "--json"], root, env).stdout))
        # the stage, and any downstream stage that reads its records through the same file
        assert stage in status and status <= set(DOWNSTREAM[stage]), status
        dry = run_command([sys.executable, "-m", "flows.repro", "--dry"], root, env)
        assert dry.returncode == 0, dry.stderr
        planned = dry.stdout.split()
        assert sorted(planned) == sorted(DOWNSTREAM[stage])
        assert planned.index(stage) == 0  # upstream first, in DVC's order
    finally:
        path.write_text(original)


def test_changing_how_fits_run_makes_nothing_stale(project):
    root, env, _, _ = project
    assert json.loads(run_command(["dvc", "status", "--json"], root, env).stdout) == {}
    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["execution"].update(runner="processes", max_workers=2, timeout_seconds=999)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = run_command(["dvc", "status", "--json"], root, env)
        assert json.loads(status.stdout) == {}
        dry = run_command([sys.executable, "-m", "flows.repro", "--dry"], root, env)
        assert dry.returncode == 0 and dry.stdout.split() == []
    finally:
        params_file.write_text(original)


def test_bad_raw_file_stops_at_the_gate_and_loses_nothing(project):
    root, env, _, _ = project
    raw = root / "data/raw/SH600519.csv"
    original = raw.read_text()
    lines = original.splitlines()
    cells = lines[5].split(",")
    cells[2] = "-5.0"  # a negative open price on one day
    lines[5] = ",".join(cells)
    raw.write_text("\n".join(lines) + "\n")
    bad_bytes = raw.read_bytes()
    validated = root / "data/interim/validated.parquet"
    digest = hashlib.md5(validated.read_bytes()).hexdigest()
    lock_before = (root / "dvc.lock").read_bytes()
    client = _client(root)
    champion = client.get_model_version_by_alias("stockcast-SH600519", "champion").version
    try:
        failed = pipeline(root, env)
        assert failed.returncode != 0
        report = failed.stdout + failed.stderr
        assert "validation failed for ['SH600519']" in report
        assert "column open" in report and f"{cells[1]}: open=-5" in report
        assert "Running stage 'window'" not in failed.stdout
        assert raw.read_bytes() == bad_bytes  # raw data never modified
        assert hashlib.md5(validated.read_bytes()).hexdigest() == digest
        assert (
            client.get_model_version_by_alias("stockcast-SH600519", "champion").version == champion
        )
        stopped = client.search_runs(
            [client.get_experiment_by_name("stockcast").experiment_id],
            filter_string="tags.stage = 'validate'",
        )
        assert len(stopped) == 1 and stopped[0].info.status == "FAILED"
        assert "validation failed for ['SH600519']" in stopped[0].data.tags["error"]
        lock = yaml.safe_load((root / "dvc.lock").read_text())
        assert set(lock["stages"]) == STAGES
        # ingest ran (and was recorded); nothing from the gate on was touched
        before = yaml.safe_load(lock_before)["stages"]
        for stage in STAGES - {"ingest"}:
            assert lock["stages"][stage] == before[stage], stage
    finally:
        raw.write_text(original)


LSTM_TASK_DIES = """
import stockcast.train as train

real_fit = train.fit


def fit(ws, variant, *args, **kwargs):
    if variant == "lstm":  # raised outside the fit's own guard: the lstm task dies
        raise OSError("injected: the lstm worker lost its disk")
    return real_fit(ws, variant, *args, **kwargs)


train.fit = fit
"""


def test_one_failing_variant_does_not_take_the_others_down(project, tmp_path):
    root, env, _, _ = project
    (tmp_path / "sitecustomize.py").write_text(LSTM_TASK_DIES)  # outside the git tree
    run = pipeline(root, {**env, "PYTHONPATH": str(tmp_path)}, "--force")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = json.loads((root / "models/train.json").read_text())["SH600519"]
    assert "task failed" in summary["lstm"]["error"]
    assert "lost its disk" in summary["lstm"]["error"]
    assert summary["gru"]["error"] is None and summary["simple_rnn"]["error"] is None
    metrics = json.loads((root / "reports/metrics.json").read_text())["SH600519"]
    assert "error" in metrics["lstm"] and "test_rmse" in metrics["gru"]
    client = _client(root)
    experiment = client.get_experiment_by_name("stockcast").experiment_id
    failed = client.search_runs(
        [experiment], filter_string="tags.variant = 'lstm'", order_by=["attributes.start_time DESC"]
    )[0]
    assert failed.info.status == "FAILED" and "task failed" in failed.data.tags["error"]
    versions = client.search_model_versions("name = 'stockcast-SH600519'")
    decision = json.loads((root / "reports/registry.json").read_text())["SH600519"]
    if decision.get("already_registered"):  # the champion's own rule won again: no copy
        assert decision["reason"].startswith("the champion's own forecaster")
        assert len(versions) == 1 and str(decision["version"]) == "1" and decision["promote"]
        return
    assert len(versions) == 2  # the second run still registered its best surviving candidate
    second = client.get_model_version("stockcast-SH600519", "2")
    champion = client.get_model_version_by_alias("stockcast-SH600519", "champion")
    assert second.tags["previous_champion"] == "1"  # the champion it was judged against
    if second.tags["promotion"] == "promoted":
        assert str(champion.version) == "2" and "< champion v1" in second.tags["promotion_reason"]
    else:
        assert second.tags["promotion"] == "rejected"
        assert str(champion.version) == "1" and ">= champion v1" in second.tags["promotion_reason"]


def _stockcast(root: Path, env: dict, *args: str):
    return run_command([str(Path(sys.executable).parent / "stockcast"), *args], root, env)


def test_with_the_gates_on_a_losing_candidate_is_rejected_and_the_alias_stays(project):
    """A gate no candidate can pass (RMSE at most 1% of naive's): the run registers its best
    candidate, tags it rejected with the gate that failed, and moves no alias."""
    root, env, _, _ = project
    client = _client(root)
    names = ("stockcast-SH600519", "stockcast-MSFT")
    before = {n: client.get_model_version_by_alias(n, "champion").version for n in names}
    counts = {n: len(client.search_model_versions(f"name = '{n}'")) for n in names}
    for name in names:  # champions as registered before rules had an identity: the rule
        # chosen again is a new version, judged by the gates (else it is no copy at all)
        client.delete_model_version_tag(name, before[name], "forecaster")
    params = root / "params.yaml"
    saved = params.read_text()
    raw = yaml.safe_load(saved)
    raw["register"]["max_rmse_vs_naive"] = 0.01
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        run = pipeline(root, env)
    finally:
        params.write_text(saved)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "Running stage 'register'" in run.stdout
    for name in names:
        newest = client.get_model_version(name, str(counts[name] + 1))
        assert newest.tags["promotion"] == "rejected"
        assert "rmse_vs_naive" in newest.tags["promotion_reason"]
        assert "> 0.01" in newest.tags["promotion_reason"]
        assert client.get_model_version_by_alias(name, "champion").version == before[name]
    registry = json.loads((root / "reports/registry.json").read_text())
    assert registry["SH600519"]["promote"] is False


def test_rollback_runs_as_a_command(project):
    root, env, _, _ = project
    client = _client(root)
    name = "stockcast-SH600519"
    champion = client.get_model_version_by_alias(name, "champion")
    previous = champion.tags.get("previous_champion", "none")
    result = _stockcast(root, env, "rollback", "--ticker", "SH600519", "--reason", "bad fills")
    now = client.get_model_version_by_alias(name, "champion")
    if previous in ("", "none"):  # the first champion: nothing before it
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"v{champion.version} replaced no earlier champion" in result.stderr
        assert now.version == champion.version
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"moved back from v{champion.version} to v{previous} (bad fills)" in result.stdout
        assert now.version == previous
        assert client.get_model_version(name, champion.version).tags["rolled_back"] == "bad fills"
        client.set_registered_model_alias(name, "champion", champion.version)  # as it was


def test_predict_names_a_ticker_with_no_champion_and_forecasts_the_others(project):
    import pandas as pd

    root, env, _, _ = project
    client = _client(root)
    msft = client.get_model_version_by_alias("stockcast-MSFT", "champion").version
    client.delete_registered_model_alias("stockcast-MSFT", "champion")
    try:
        result = _stockcast(root, env, "predict")
    finally:
        client.set_registered_model_alias("stockcast-MSFT", "champion", msft)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no @champion for stockcast-MSFT: nothing promoted yet" in result.stdout
    (written,) = (root / "data/predictions").glob("*.csv")
    assert pd.read_csv(written)["ticker"].unique().tolist() == ["SH600519"]


def test_the_champion_served_over_http_answers_as_predict_does(project):
    """``stockcast serve`` (``mlflow models serve --env-manager local``) on a free port: the
    body ``stockcast request`` prints gets the forecast ``stockcast predict`` writes, and a
    malformed body gets a 400 that says what went wrong."""
    import signal
    import urllib.error
    import urllib.request

    import pandas as pd

    from flows.server import free_port

    root, env, _, _ = project
    body = _stockcast(root, env, "request", "--ticker", "SH600519")
    assert body.returncode == 0, body.stdout + body.stderr
    request = json.loads(body.stdout)
    assert np_shape(request["inputs"])[0] == 1 and np_shape(request["inputs"])[2] == 5
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "stockcast"), "serve", "--ticker", "SH600519"]
        + ["--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def post(payload: dict) -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the model server did not come up"
                time.sleep(1)
        status, answer = post(request)
        bad_status, bad = post({"inputs": [[1.0, 2.0, 3.0]]})
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert status == 200, answer
    (served,) = answer["predictions"]
    assert served["lower_95"] <= served["lower_80"] <= served["forecast"]
    assert served["forecast"] <= served["upper_80"] <= served["upper_95"]
    predicted = _stockcast(root, env, "predict")
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    (written,) = (root / "data/predictions").glob("*.csv")
    table = pd.read_csv(written).set_index("ticker")
    assert round(served["forecast"], 4) == table.loc["SH600519", "forecast_open"]
    assert round(served["upper_95"], 4) == table.loc["SH600519", "upper_95"]
    assert bad_status == 400 and bad["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "does not match expected shape (-1, " in bad["message"]


def np_shape(nested: list) -> tuple[int, ...]:
    shape = []
    while isinstance(nested, list):
        shape.append(len(nested))
        nested = nested[0]
    return tuple(shape)
