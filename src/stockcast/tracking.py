"""MLflow boundary: the run tree of a pipeline run, the logged models, registration and the
``@champion`` alias, rollback, forecasts from a logged model.

MLflow is imported here (and by the pyfunc in :mod:`stockcast.serving`) and nowhere else.
The rules it applies live in :mod:`stockcast.promotion`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from stockcast import store
from stockcast.config import Config
from stockcast.lineage import pipeline_started
from stockcast.ops import progress_points
from stockcast.paths import Paths, read_json
from stockcast.promotion import (
    Decision,
    choose_candidate,
    decide_promotion,
    gate_values,
    gates,
    leaders,
)
from stockcast.scores import CandidateScores, TickerReport
from stockcast.store import tracking_uri
from stockcast.train import TrainResult
from stockcast.windows import WindowSet

CHAMPION = "champion"
# What MLflow says on every model logged: its advice against pickled models (ours are pickled
# on purpose, with their code beside them) and its input-example check's announcement.
LOG_MODEL_NOISE = re.compile(
    r"Passing a Python object as `python_model`|Validating input example against"
)


@contextmanager
def sys_path_kept() -> Iterator[None]:
    """Undo what loading a logged model does to ``sys.path``: MLflow puts the model's code
    folder first, for good, so every model loaded makes every later import and package
    lookup search one more folder (registering a thousand tickers went quadratic: 0.3 s a
    ticker at 100, 0.7 s at 1000). This process has ``stockcast`` installed; a model served
    elsewhere still gets its logged code."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path = saved


def client_for(root: Path, policy: store.RetryPolicy | None = None) -> Any:
    """An MLflow client on the project's store (and MLflow's own calls pointed at it), its
    requests retried on transient faults by ``policy`` (default: the params' defaults)."""
    return client_at(tracking_uri(root), policy)


def client_at(uri: str, policy: store.RetryPolicy | None = None) -> Any:
    """An MLflow client on the store at ``uri`` (see :func:`client_for`)."""
    import mlflow
    from mlflow import MlflowClient

    (policy or store.RetryPolicy()).apply()
    mlflow.set_tracking_uri(uri)
    return MlflowClient()


def prepare_store(root: Path) -> None:
    """Open the project's tracking store once. A new SQLite store is created by MLflow's
    migrations (about 3 s), which ``make pipeline`` runs while the models fit."""
    client_for(root).search_experiments(max_results=1)


def load_champion(root: Path, name: str) -> Any | None:
    """The ``@champion`` of registered model ``name`` as a pyfunc; None when there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client_for(root)
    try:
        with sys_path_kept():
            return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    except MlflowException:
        return None


PARENT = "mlflow.parentRunId"  # the tag that nests a run under another in the UI

# Marks the parent run of a pipeline run (its name says when, which tickers, which params).
PIPELINE_TAG = ("stockcast.run", "pipeline")

# MLflow's UI opens an experiment that does not say what it is in its GenAI overview.
EXPERIMENT_KIND = ("mlflow.experimentKind", "forecasting")


def ensure_experiment(client: Any, name: str, project_root: Path) -> str:
    """The experiment's id, creating it (artifacts under ``mlruns/`` for the local store),
    tagged as a forecasting experiment so the UI opens on its runs."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
        return found.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (project_root.resolve() / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))


def flat_params(cfg: Config) -> dict[str, str]:
    """The effective parameters as MLflow params (``section.key`` → string)."""
    out: dict[str, str] = {"base.seed": str(cfg.seed)}
    sections = ("data", "validate", "window", "backtest", "features", "train", "execution")
    for section in (*sections, "register"):
        for key, value in asdict(getattr(cfg, section)).items():
            out[f"{section}.{key}"] = (
                json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
            )
    return out


@dataclass(frozen=True)
class Candidate:
    """A logged candidate of one ticker: its scores and the URI of its logged model."""

    scores: CandidateScores
    model_uri: str


def log_pipeline_run(
    cfg: Config,
    paths: Paths,
    sets: list[WindowSet],
    reports: dict[str, TickerReport],
    trained: dict[str, dict[str, TrainResult]],
    tags: dict[str, str],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One parent run for the pipeline run and, per ticker, a child run per network and one
    for the strongest baseline (:func:`runs_of`), logged by the client in few calls; then
    each ticker's best forecaster is registered (:func:`register_best`). ``progress`` hears
    how many tickers are done, now and then.

    Every run carries the project's tag and is listed in the store journal while open: a
    failure ends the runs FAILED with the reason; runs that a dead process, or a store that
    stopped answering, left RUNNING are ended by the project's next run
    (:func:`stockcast.store.end_dead_runs`).

    Returns:
        Per ticker, the registration and promotion decision.

    Raises:
        StoreUnavailable: the store did not answer, after the retries.
    """
    policy = store.RetryPolicy.of(cfg.execution)
    uri = store.tracking_uri(paths.root)
    decisions: dict[str, Any] = {}
    with store.store_faults(uri, policy, partial(_changed_before, decisions)) as step:
        client = client_for(paths.root, policy)
        store.end_dead_runs(client_at, paths.root, f"the register stage of {_who(tags)}")
        experiment_id = ensure_experiment(client, cfg.register.experiment, paths.root)
        store.open_journal(paths.root, uri, experiment_id)
        tags = {**tags, store.PROJECT_TAG: store.project_id(paths.root)}
        attempt = Attempt(client, experiment_id, tags, decisions, [], step)
        try:
            _log_tree(attempt, cfg, paths, sets, reports, trained, progress)
        except BaseException as exc:
            _end_failed(client, attempt.opened, exc, paths.root)
            raise
        store.close_journal(paths.root)
    return decisions


def _who(tags: dict[str, str]) -> str:
    """A run, as tags name it: its Prefect flow run, else its process."""
    flow_run = tags.get("prefect_flow_run_id")
    return f"Prefect flow run {flow_run}" if flow_run else f"process {os.getpid()}"


def _changed_before(decisions: dict[str, Any], step: store.Step) -> str:
    """What a register attempt changed before the store stopped answering."""
    kept = "reports/registry.json and dvc.lock are as they were"
    if not decisions:
        return f"Nothing was changed: no @champion moved; {kept}."
    done = ", ".join(
        f"{t} v{d['version']}" + (" (now @champion)" if d["promote"] else "")
        for t, d in decisions.items()
    )
    return f"Registered before the fault: {done}; no other @champion moved; {kept}."


def _end_failed(client: Any, opened: list[str], exc: BaseException, root: Path) -> None:
    """End the runs a failed attempt opened as FAILED with the reason; when the store itself
    failed, leave that to the next run (each call would wait out the retries again)."""
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
    if store.fault_reason(exc) is not None or isinstance(exc, KeyboardInterrupt):
        store.journal_failure(root, f"the register stage failed: {reason}")
        return
    for run_id in opened:
        with contextlib.suppress(Exception):
            client.set_tag(run_id, "error", reason)
            client.set_terminated(run_id, "FAILED")
    store.close_journal(root)


@dataclass
class Attempt:
    """One register attempt against the store: its client, experiment and run tags; the
    decisions made so far, the runs it opened and has not ended, and what it is doing."""

    client: Any
    experiment_id: str
    tags: dict[str, str]
    decisions: dict[str, Any]
    opened: list[str]
    step: store.Step


def _log_tree(
    attempt: Attempt,
    cfg: Config,
    paths: Paths,
    sets: list[WindowSet],
    reports: dict[str, TickerReport],
    trained: dict[str, dict[str, TrainResult]],
    progress: Callable[[str], None] | None,
) -> None:
    """The run tree and the registrations (see :func:`log_pipeline_run`); the attempt's
    decisions and open runs grow as it goes."""
    client, experiment_id, tags = attempt.client, attempt.experiment_id, attempt.tags
    decisions, opened, step = attempt.decisions, attempt.opened, attempt.step
    import mlflow
    from mlflow.entities import Param

    ticker_tag = ",".join(ws.ticker for ws in sets)
    step("opening the pipeline's parent run")
    # The parent run starts when the pipeline run started (flows.repro sets the time), so
    # its duration in the UI is the pipeline's, not only the register stage's.
    parent = client.create_run(
        experiment_id,
        start_time=pipeline_started(),
        tags={**tags, "ticker": ticker_tag, PIPELINE_TAG[0]: PIPELINE_TAG[1]},
        run_name=pipeline_run_name([ws.ticker for ws in sets], tags.get("params_hash", "")),
    ).info.run_id
    opened.append(parent)
    source = selection_span(cfg)
    inputs = {ws.ticker: _dataset_input(ws, paths, tags) for ws in sets}
    step("logging the parent run's params and data reports")
    log_batch(client, parent, [], [Param(k, v) for k, v in flat_params(cfg).items()], [])
    _log_run_inputs(client, parent, paths)
    client.log_inputs(parent, datasets=list(inputs.values()))  # one call for every ticker
    summary = []
    report_at = progress_points(len(sets))
    for done, ws in enumerate(sets, start=1):
        step(f"logging and registering {ws.ticker}")
        report = reports[ws.ticker]
        choice = choose_registration(client, cfg, ws.ticker, report.candidates, tags)
        logged = models_to_log(cfg, report, choice)
        candidates = {n: Candidate(c, "") for n, c in report.candidates.items()}
        for name in [*report.errors, *runs_of(report, source)]:
            # by the client: the fluent API would resolve the run's context (a dozen
            # environment probes) and re-read the parent, every ticker's metrics, per child
            child = client.create_run(
                experiment_id,
                run_name=f"{ws.ticker}-{name}",
                tags={**tags, "ticker": ws.ticker, "variant": name, PARENT: parent},
            ).info.run_id
            opened.append(child)
            if name in report.errors:
                client.set_tag(child, "error", report.errors[name])
                client.set_terminated(child, "FAILED")
                opened.remove(child)
                continue
            client.log_inputs(child, datasets=[inputs[ws.ticker]])
            scores, result = report.candidates[name], trained[ws.ticker].get(name)
            plot = paths.forecast_plot(ws.ticker)
            uri = log_candidate(
                mlflow, client, child, ws, scores, cfg, result, plot, name in logged
            )
            opened.remove(child)
            candidates[name] = Candidate(scores, uri)
        summary += _ticker_summary(client, parent, paths, report, source)
        decisions[ws.ticker] = register_best(mlflow, client, cfg, ws, candidates, tags, choice)
        if progress and done in report_at:
            progress(f"logged and registered {done} of {len(sets)} tickers")
    step("ending the parent run")
    log_batch(client, parent, summary, [], [])
    client.set_terminated(parent)
    opened.remove(parent)


def selection_span(cfg: Config) -> str:
    """The span that chooses and gates registration: the backtest with folds, else validation."""
    return "backtest" if cfg.backtest.folds else "val"


@dataclass(frozen=True)
class Choice:
    """A ticker's registration, decided before anything is logged: the candidate, why, its
    fingerprint and the version already registered with that fingerprint (None: register)."""

    name: str
    why: str
    fingerprint: str
    earlier: Any | None


def choose_registration(
    client: Any, cfg: Config, ticker: str, scores: dict[str, CandidateScores], tags: dict[str, str]
) -> Choice:
    """The candidate to register (:func:`choose_candidate` on the selection span) and
    whether this very registration exists already."""
    r = cfg.register
    source = selection_span(cfg)
    name, why = choose_candidate(scores, source, r.min_improvement, r.max_p_value)
    fingerprint = registration_fingerprint(tags, name, scores[name])
    earlier = _registered_as(client, r.model_name(ticker), fingerprint) if fingerprint else None
    return Choice(name, why, fingerprint, earlier)


def models_to_log(cfg: Config, report: TickerReport, choice: Choice) -> set[str]:
    """The candidates whose forecaster is logged as a model: the one to register (unless this
    very registration exists already) and, with ``train.scope: per_ticker``, every network,
    each a model trained for this ticker. A baseline rule that is not registered has no
    trained state to keep, and a global network is logged for the tickers that register it:
    the same network a thousand times over would make registering a thousand tickers take
    hours (the child run still holds every candidate's scores, curves and chart)."""
    chosen = set() if choice.earlier is not None else {choice.name}
    if cfg.train.scope != "per_ticker":
        return chosen
    return chosen | {n for n, c in report.candidates.items() if c.kind == "network"}


def _dataset_input(ws: WindowSet, paths: Paths, tags: dict[str, str]) -> Any:
    """The ticker's series as a run's input dataset (the UI's dataset column): its name,
    rows and date range, and the DVC hash of the windowed data it came from."""
    import warnings

    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    md5 = tags.get("dvc_dataset_md5", "")
    frame = pd.DataFrame({"date": pd.to_datetime(ws.dates), ws.target: ws.prices})
    with warnings.catch_warnings():  # a local path matches two equal source types: harmless
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = mlflow.data.from_pandas(
            frame,
            source=str(paths.processed / f"{ws.ticker}.npz"),
            name=f"{ws.ticker} {ws.target}",
            digest=md5[:10] or None,
        )
    first, last = (str(ws.dates[i])[:10] for i in (0, -1))
    seen = {"rows": str(len(ws.prices)), "dates": f"{first}..{last}", "dvc_md5": md5 or "?"}
    return DatasetInput(
        dataset._to_mlflow_entity(),
        tags=[
            *(InputTag(k, v) for k, v in seen.items()),
            InputTag(MLFLOW_DATASET_CONTEXT, "training"),
        ],
    )


def _log_run_inputs(client: Any, run_id: str, paths: Paths) -> None:
    """The data reports on the parent run: validation (JSON and Data Docs), the ingest
    repairs, and drift (artifact, tag and per-ticker p-values)."""
    from mlflow.entities import Metric

    if paths.validation_reports.exists():
        client.log_artifacts(run_id, str(paths.validation_reports), artifact_path="validation")
    if paths.ingest_report.exists():
        client.log_artifact(run_id, str(paths.ingest_report), artifact_path="validation")
    if not paths.drift.exists():
        return
    client.log_artifact(run_id, str(paths.drift), artifact_path="drift")
    report = read_json(paths.drift)
    client.set_tag(run_id, "drift", str(report["drift"]))
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{d['ticker']}.drift_{key}", float(d[key]), now, 0)
        for d in report["tickers"]
        for key in ("ks_p_value", "levene_p_value", "volatility_ratio")
    ]
    log_batch(client, run_id, metrics, [], [])


def _ticker_summary(
    client: Any, run_id: str, paths: Paths, report: TickerReport, source: str
) -> list[Any]:
    """The ticker's backtest chart onto the parent run; returned, for the parent run too,
    every baseline's test scores and RMSE on the span that chooses (only the strongest
    baseline gets a run of its own)."""
    from mlflow.entities import Metric

    fold_plot = paths.backtest_plot(report.ticker)
    if fold_plot.exists():
        client.log_artifact(run_id, str(fold_plot), artifact_path="backtest")
    chosen_on = {
        f"{name}_{source}_rmse": c.on(source).rmse
        for name, c in report.candidates.items()
        if c.kind == "baseline"
    }
    now = int(time.time() * 1000)
    values = {**report.baselines, **chosen_on}
    return [Metric(f"{report.ticker}.{k}", float(v), now, 0) for k, v in values.items()]


def runs_of(report: TickerReport, source: str) -> list[str]:
    """The candidates that get a child run: every network and the strongest baseline on
    ``source``, the one each network must beat. The weaker rules' scores are on the parent
    run and in ``reports/metrics.json``: at a thousand tickers, four runs a ticker that no
    decision reads would cost minutes."""
    _, baseline = leaders(report.candidates, source)
    return [n for n, c in report.candidates.items() if c.kind == "network" or n == baseline]


def pipeline_run_name(tickers: list[str], params_hash: str, now: float | None = None) -> str:
    """A parent run's name that reads well in a list: when, which tickers, which params."""
    from datetime import datetime

    when = datetime.fromtimestamp(time.time() if now is None else now).strftime("%Y-%m-%d %H:%M")
    shown = " ".join(tickers[:2]) + (f" +{len(tickers) - 2}" if len(tickers) > 2 else "")
    return f"{when} {shown} params {params_hash[:7]}".strip()


def register_best(
    mlflow: Any,
    client: Any,
    cfg: Config,
    ws: WindowSet,
    candidates: dict[str, Candidate],
    tags: dict[str, str],
    choice: Choice | None = None,
) -> dict[str, Any]:
    """Register the best forecaster of the selection span, network or baseline, and move
    ``@champion`` to it if it passes the gates and beats the current champion. ``choice``:
    the registration already decided (:func:`choose_registration`), else decided here."""
    source = selection_span(cfg)
    if choice is None:
        scores = {n: c.scores for n, c in candidates.items()}
        choice = choose_registration(client, cfg, ws.ticker, scores, tags)
    name, why, fingerprint = choice.name, choice.why, choice.fingerprint
    chosen = candidates[name]
    model_name = cfg.register.model_name(ws.ticker)
    if choice.earlier is not None:
        return _already_registered(
            client, model_name, choice.earlier, name, chosen.scores.kind, why
        )
    current = champion_rmse(mlflow, client, model_name, ws)
    decision = decide_promotion(
        chosen.scores.test.rmse,
        current[0] if current else None,
        gate_values(chosen.scores, source),
        gates(cfg),
        current[1] if current else None,
        source,
    )
    version = mlflow.register_model(
        chosen.model_uri,
        model_name,
        tags={
            "variant": name,
            "kind": chosen.scores.kind,
            "selected_on": f"{source} rmse",
            "selection": why,
            **({"fingerprint": fingerprint} if fingerprint else {}),
            **tags,
            **decision_tags(decision),
        },
    )
    client.update_model_version(
        model_name, version.version, description=_description(name, chosen.scores, decision)
    )
    if decision.promote:  # the very last step: a failure before it never moves the alias
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
    return {
        "model": model_name,
        "version": version.version,
        "variant": name,
        "kind": chosen.scores.kind,
        "selection": why,
        **asdict(decision),
    }


def registration_fingerprint(tags: dict[str, str], name: str, scores: CandidateScores) -> str:
    """What makes a registration the same as an earlier one: a clean git commit, the effective
    parameters, the windowed dataset, the candidate and every score it got. Empty (always
    register) when the code is uncommitted or unknown, or the dataset hash is missing."""
    import hashlib

    commit, dirty = tags.get("git_commit", "unknown"), tags.get("git_dirty", "True")
    if commit == "unknown" or dirty != "False" or not tags.get("dvc_dataset_md5"):
        return ""
    parts = [commit, tags.get("params_hash", ""), tags["dvc_dataset_md5"], name]
    parts.append(json.dumps(scores.flat(), sort_keys=True, default=str))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _registered_as(client: Any, model_name: str, fingerprint: str) -> Any | None:
    """The version registered earlier with this fingerprint, if any."""
    found = client.search_model_versions(
        f"name = '{model_name}' and tags.fingerprint = '{fingerprint}'"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


def _already_registered(
    client: Any, model_name: str, version: Any, name: str, kind: str, why: str
) -> dict[str, Any]:
    """Nothing new to register: the earlier version's decision stands."""
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION).version
    except Exception:  # noqa: BLE001 - no champion
        champion = None
    reason = (
        f"already registered as v{version.version} (same code, params, data and scores); "
        f"its decision stands: {version.tags.get('promotion_reason', '?')}"
    )
    print(f"{model_name}: {name} {reason}", flush=True)
    return {
        "model": model_name,
        "version": version.version,
        "variant": name,
        "kind": kind,
        "selection": why,
        "promote": str(champion) == str(version.version),
        "reason": reason,
        "candidate_rmse": None,
        "champion_rmse": None,
        "previous_version": version.tags.get("previous_champion"),
        "already_registered": True,
    }


def _description(name: str, scores: CandidateScores, decision: Decision) -> str:
    """A registered version's headline: its test figures beside the strongest baseline's, and
    the promotion decision."""
    test = scores.test
    return (
        f"{name} ({scores.kind}). Test RMSE {test.rmse:.4f}, {test.rmse_vs_best_baseline:.4f}x "
        f"the best baseline ({test.best_baseline}), {test.rmse_vs_naive:.4f}x naive; MAE "
        f"{test.mae:.4f}, MAPE {test.mape:.2f}%, direction right {test.directional_accuracy:.1%}."
        f" {'Promoted' if decision.promote else 'Not promoted'}: {decision.reason}."
    )


def log_candidate(
    mlflow: Any,
    client: Any,
    run_id: str,
    ws: WindowSet,
    scores: CandidateScores,
    cfg: Config,
    result: TrainResult | None = None,
    plot: Path | None = None,
    with_model: bool = True,
) -> str:
    """Log one candidate, a network (``result``) or a baseline rule, into its run (created,
    not started), and end the run: with ``with_model`` its forecaster as a model; then its
    parameters, metrics, tags and per-epoch curves in one batch, and its chart.

    Returns:
        The logged model's URI; empty without ``with_model``.
    """
    from mlflow.entities import Metric, Param, RunTag

    # every parameter that shaped it, so runs of different configurations compare side by side
    params: dict[str, Any] = {
        **flat_params(cfg),
        "variant": scores.name,
        "ticker": ws.ticker,
        "kind": scores.kind,
    }
    metrics = scores.flat()
    tags: dict[str, str] = {}
    now = int(time.time() * 1000)
    curves = []
    if result is not None:
        params.update(
            {
                "window": ws.window,
                "units": json.dumps(list(cfg.train.units)),
                "dropout": cfg.train.dropout,
                "learning_rate": cfg.train.learning_rate,
                "batch_size": cfg.train.batch_size,
                "max_epochs": cfg.train.epochs,
                "patience": cfg.train.patience,
                "seed": cfg.seed,
            }
        )
        curves = _curves(result, now)
        if result.warm_from:  # the fit whose weights it started from (train.warm_start)
            tags["warm_from"] = result.warm_from
        metrics.update(
            best_val_loss=result.best_val_loss or float("nan"),
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            fit_seconds=result.fit_seconds,
        )
    tags.update({k: v for k, v in metrics.items() if isinstance(v, str)})
    uri = ""
    if with_model:  # first: MLflow copies a run's metrics so far onto a logged model, one by one
        keras_path = Path(result.model_path) if result is not None else None
        with mlflow.start_run(run_id=run_id, nested=True):
            widths = scores.interval_halfwidths
            uri = log_forecaster(mlflow, ws, keras_path, widths, scores.name, cfg)
    log_batch(
        client,
        run_id,
        [Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, int | float)]
        + curves,
        [Param(k, str(v)) for k, v in params.items()],
        [RunTag(k, v) for k, v in tags.items()],
    )
    if plot is not None and plot.exists():
        client.log_artifact(run_id, str(plot), artifact_path="plots")
    if not with_model:  # a run with a model ended with its fluent block
        client.set_terminated(run_id)
    return uri


def log_batch(client: Any, run_id: str, metrics: list, params: list, tags: list) -> None:
    """Metrics, params and tags in as few calls as MLflow's limits allow (per call: 1000
    metrics, 100 params, 100 tags); a call per value is a database write per value."""
    while metrics or params or tags:
        client.log_batch(run_id, metrics=metrics[:1000], params=params[:100], tags=tags[:100])
        metrics, params, tags = metrics[1000:], params[100:], tags[100:]


def decision_tags(decision: Decision) -> dict[str, str]:
    """The promotion decision as a registered version's tags."""
    return {
        "promotion": "promoted" if decision.promote else "rejected",
        "promotion_reason": decision.reason,
        "previous_champion": decision.previous_version or "none",
    }


def _curves(result: TrainResult, now: int) -> list[Any]:
    """Per-epoch loss and val_loss as MLflow metrics, one step per epoch."""
    from mlflow.entities import Metric

    return [
        Metric(key, float(value), now, step)
        for key in ("loss", "val_loss")
        for step, value in enumerate(result.history.get(key, []), start=1)
    ]


def model_spec(
    ws: WindowSet, keras_path: Path | None, widths: dict[str, float], rule: str, ma_window: int
) -> dict[str, Any]:
    """What the pyfunc needs besides the network: layout, scaling, rule and intervals."""
    spec: dict[str, Any] = {
        "kind": "network" if keras_path is not None else "baseline",
        "input": "ohlcv",
        "window": ws.window,
        "context": ws.context,
        "target": ws.target,
        "intervals": widths,
    }
    if keras_path is None:
        return {**spec, "rule": rule, "ma_window": ma_window}
    return {
        **spec,
        **ws.scaler.to_dict(),
        "transform": ws.transform,
        "anchor": ws.anchor,
        "extra_inputs": list(ws.extra_inputs),
        "extra_scalers": [[e.low, e.high] for e in ws.extra_scalers],
    }


def log_forecaster(
    mlflow: Any,
    ws: WindowSet,
    keras_path: Path | None,
    widths: dict[str, float],
    rule: str,
    cfg: Config | None = None,
) -> str:
    """Log the OHLCV-in, price-out pyfunc of a network (``keras_path``) or a baseline
    ``rule``, with signature and input example."""
    from mlflow.models import infer_signature

    import stockcast
    from stockcast.models import muted_logs
    from stockcast.serving import PriceForecaster

    ma_window = cfg.features.moving_average if cfg else 5
    spec = model_spec(ws, keras_path, widths, rule, ma_window)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        mlflow.log_artifact(str(spec_path), artifact_path="spec")
        artifacts = {"spec": str(spec_path)}
        if keras_path is not None:
            artifacts["keras_model"] = str(keras_path)
        forecaster = PriceForecaster()
        forecaster.load_context(type("Context", (), {"artifacts": artifacts})())
        example = ws.raw_inputs(ws.test_idx[:3])  # raw, as a user has it
        # MLflow loads the model back to check its input example
        with sys_path_kept(), muted_logs("mlflow.pyfunc", LOG_MODEL_NOISE):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=forecaster,
                artifacts=artifacts,
                code_paths=[str(Path(stockcast.__file__).parent)],
                signature=infer_signature(example, forecaster.predict(None, example)),
                input_example=example,
                metadata=_metadata(ws, spec, rule),
                pip_requirements=_requirements(),
            )
    return info.model_uri


def _metadata(ws: WindowSet, spec: dict[str, Any], rule: str) -> dict[str, Any]:
    """What a reader of the logged model (and ``forecast``) needs to know of it."""
    return {
        "ticker": ws.ticker,
        "kind": spec["kind"],
        "variant": rule,
        "input": "ohlcv",
        "window": ws.window,
        "context": ws.context,
        "target": ws.target,
        "transform": spec.get("transform", "none"),
        "anchor": spec.get("anchor", "none"),
        "extra_inputs": spec.get("extra_inputs", []),
        "intervals": spec["intervals"],
    }


def _requirements() -> list[str]:
    """Pinned to what is running (and no slow inference of them by MLflow)."""
    import mlflow
    import pandas as pd

    from stockcast.models import import_keras

    keras = import_keras()  # TensorFlow too, without its start-up lines
    import tensorflow as tf

    return [
        f"tensorflow-cpu=={tf.__version__}",
        f"keras=={keras.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]


def model_inputs(meta: dict[str, Any], ohlcv_windows: np.ndarray, target: str) -> np.ndarray:
    """Raw OHLCV windows in the layout a logged model takes (see
    :func:`stockcast.serving.input_layout`)."""
    from stockcast.serving import input_layout

    if input_layout(meta) == "ohlcv":
        return ohlcv_windows
    from stockcast.transforms import OHLCV

    return ohlcv_windows[..., OHLCV.index(target)]


def champion_rmse(mlflow: Any, client: Any, name: str, ws: WindowSet) -> tuple[float, str] | None:
    """Score the current champion on this run's test targets; None when there is none."""
    from mlflow.exceptions import MlflowException

    from stockcast.evaluate import regression_metrics
    from stockcast.serving import point_forecast

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    with sys_path_kept():
        model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window", ws.window)))
    idx = ws.test_idx
    inputs = model_inputs(meta, ws.raw_inputs(idx, needed), ws.target)  # champion's layout
    predicted = point_forecast(model.predict(inputs))
    rmse = regression_metrics(ws.prices[idx], predicted)["rmse"]
    return rmse, str(version.version)


def log_failed_validation(
    project_root: Path,
    experiment: str,
    report_dir: Path,
    message: str,
    tags: dict[str, str] | None = None,
) -> str:
    """Record a run stopped by the validation gate, with its report, as a FAILED MLflow run."""
    import mlflow

    experiment_id = ensure_experiment(client_for(project_root), experiment, project_root)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{time.strftime('%Y-%m-%d %H:%M')} stopped at validate",
        tags={"stage": "validate", PIPELINE_TAG[0]: PIPELINE_TAG[1], **(tags or {})},
    ) as run:
        mlflow.set_tag("error", message[:5000])
        if report_dir.exists():
            mlflow.log_artifacts(str(report_dir), artifact_path="validation")
        mlflow.end_run(status="FAILED")
    return run.info.run_id


def rollback(client: Any, name: str, reason: str) -> tuple[str, str]:
    """Move ``@champion`` back to the version the current champion replaced.

    Returns:
        (the version rolled back from, the version now champion).

    Raises:
        StockcastError: no champion, or the champion records no previous one.
    """
    from mlflow.exceptions import MlflowException

    from stockcast.errors import StockcastError

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise StockcastError(f"{name} has no @{CHAMPION} to roll back") from exc
    previous = current.tags.get("previous_champion", "none")
    if previous in ("", "none"):
        raise StockcastError(
            f"{name} v{current.version} replaced no earlier champion: nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current.version, "rolled_back", reason)
    client.set_model_version_tag(name, previous, "restored_by_rollback_from", current.version)
    return str(current.version), str(previous)


def forecast(model: Any, ohlcv: np.ndarray, horizon: int, target: str) -> list[dict[str, float]]:
    """The next ``horizon`` days from a logged model and the raw OHLCV history.

    Each forecast is fed back as a flat day (open = high = low = close = the forecast, the
    last volume) to forecast the next. The intervals are calibrated for one day ahead; for
    step h their log half-width is widened by sqrt(h), as for a random walk: an
    approximation, not a calibrated interval.

    Returns:
        One mapping per step: ``forecast`` and ``lower_<level>`` / ``upper_<level>``.
    """
    import math

    from stockcast.evaluate import interval
    from stockcast.serving import point_forecast

    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window")))
    widths = meta.get("intervals", {})  # none for a model logged before intervals
    history = np.asarray(ohlcv, dtype="float64")
    if len(history) < needed:
        raise ValueError(f"need {needed} days of history, have {len(history)}")
    history = history[-needed:]
    out = []
    for step in range(1, horizon + 1):
        point = float(point_forecast(model.predict(model_inputs(meta, history[None], target)))[0])
        values = {"forecast": point}
        for level, width in widths.items():
            lower, upper = interval(point, width * math.sqrt(step))
            values[f"lower_{level}"], values[f"upper_{level}"] = float(lower), float(upper)
        out.append(values)
        history = np.vstack([history[1:], [point, point, point, point, history[-1, 4]]])
    return out
