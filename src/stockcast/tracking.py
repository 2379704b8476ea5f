"""The run tree of a pipeline run in MLflow: a parent run, per ticker a child run per
candidate that a decision reads, each with its params, metrics, curves, chart and (for the
ones that may be registered) its forecaster as a logged model (:mod:`stockcast.packaging`);
registration and ``@champion`` are :mod:`stockcast.registry`'s, the store's faults and
journal :mod:`stockcast.store`'s, the rules :mod:`stockcast.promotion`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from stockcast import leaderboard, registry, store, ui_view
from stockcast.config import Config
from stockcast.lineage import pipeline_started
from stockcast.ops import progress_points
from stockcast.packaging import forecaster_id, log_forecaster
from stockcast.paths import Paths, read_json
from stockcast.promotion import discoveries, fdr_family, leaders
from stockcast.scores import CandidateScores, TickerReport, selection_span
from stockcast.train import TrainResult
from stockcast.windows import WindowSet


def prepare_store(root: Path) -> None:
    """Open the project's tracking store once. A new SQLite store is created by MLflow's
    migrations (about 3 s), which ``make pipeline`` runs while the models fit."""
    store.client_for(root).search_experiments(max_results=1)


PARENT = "mlflow.parentRunId"  # the tag that nests a run under another in the UI

# Marks the parent run of a pipeline run (its name says when, which tickers, which params).
PIPELINE_TAG = ("stockcast.run", "pipeline")

# MLflow's UI opens an experiment that does not say what it is in its GenAI overview.
EXPERIMENT_KIND = ("mlflow.experimentKind", "forecasting")


def ensure_experiment(client: Any, name: str, project_root: Path, span: str | None = None) -> str:
    """The experiment's id, creating it (artifacts under ``mlruns/`` for the local store),
    tagged as a forecasting experiment so the UI opens on its runs; with ``span`` (the one
    that chooses), also tagged with the runs page's view that shows its figures first
    (:mod:`stockcast.ui_view`)."""
    wanted = dict([EXPERIMENT_KIND])
    if span is not None:
        wanted[ui_view.TAG] = ui_view.tag_value(span)
    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in wanted.items():
            if found.tags.get(key) != value:
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (project_root.resolve() / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=location, tags=wanted)


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
        client = store.client_for(paths.root, policy)
        store.end_dead_runs(store.client_at, paths.root, f"the register stage of {_who(tags)}")
        experiment_id = ensure_experiment(
            client, cfg.register.experiment, paths.root, selection_span(cfg.backtest.folds)
        )
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
    from mlflow.entities import Metric, Param

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
    span = selection_span(cfg.backtest.folds)
    inputs = {ws.ticker: _dataset_input(ws, paths, tags) for ws in sets}
    step("logging the parent run's params and data reports")
    log_batch(client, parent, [], [Param(k, v) for k, v in flat_params(cfg).items()], [])
    _log_run_inputs(client, parent, paths)
    client.log_inputs(parent, datasets=list(inputs.values()))  # one call for every ticker
    summary = []
    edges, adjusted = fdr_family({t: r.candidates for t, r in reports.items()}, span, cfg.register)
    report_at = progress_points(len(sets))
    stamp = time.strftime("%Y%m%d-%H%M")  # child runs' names stay distinct across runs
    for done, ws in enumerate(sets, start=1):
        step(f"logging and registering {ws.ticker}")
        report = reports[ws.ticker]
        rules = {
            n: forecaster_id(n, ws, cfg.features.moving_average)
            for n, c in report.candidates.items()
            if c.kind == "baseline"
        }
        choice = registry.choose_registration(
            client,
            cfg.register,
            span,
            ws.ticker,
            report.candidates,
            tags,
            rules,
            adjusted.get(ws.ticker),
        )
        logged = models_to_log(cfg.train.scope, report, choice)
        candidates = {n: registry.Candidate(c, "") for n, c in report.candidates.items()}
        for name in [*report.errors, *runs_of(report, span)]:
            # by the client: the fluent API would resolve the run's context (a dozen
            # environment probes) and re-read the parent, every ticker's metrics, per child
            result = trained[ws.ticker].get(name)
            began, ended = _fit_times(result)
            child = client.create_run(
                experiment_id,
                start_time=began,
                run_name=f"{ws.ticker}-{name}-{stamp}",
                tags={**tags, "ticker": ws.ticker, "variant": name, PARENT: parent},
            ).info.run_id
            opened.append(child)
            if name in report.errors:
                client.set_tag(child, "error", report.errors[name])
                client.set_terminated(child, "FAILED")
                opened.remove(child)
                continue
            client.log_inputs(child, datasets=[inputs[ws.ticker]])
            scores = report.candidates[name]
            plot = paths.forecast_plot(ws.ticker)
            uri = log_candidate(
                mlflow, client, child, ws, scores, cfg, result, plot, name in logged
            )
            if ended is not None:  # the run lasts as long as its fit did
                client.set_terminated(child, end_time=ended)
            opened.remove(child)
            candidates[name] = registry.Candidate(scores, uri, rules.get(name, ""))
        summary += _ticker_summary(client, parent, paths, report, span)
        decisions[ws.ticker] = registry.register_best(
            mlflow, client, cfg.register, span, ws, candidates, tags, choice
        )
        if progress and done in report_at:
            progress(f"logged and registered {done} of {len(sets)} tickers")
    step("ending the parent run")
    figures, which = leaderboard.headline_figures(reports, span)
    now = int(time.time() * 1000)
    summary += [Metric(k, float(v), now, 0) for k, v in figures.items()]
    client.set_tag(parent, "headline_metrics", f"{', '.join(figures) or 'none'}: {which}")
    log_batch(client, parent, summary, [], [])
    _log_verdict(client, parent, reports, decisions, span, adjusted)
    _log_discoveries(client, parent, cfg, edges, decisions)
    client.set_terminated(parent)
    opened.remove(parent)


def _log_discoveries(
    client: Any, run_id: str, cfg: Config, edges: dict[str, float], decisions: dict[str, Any]
) -> None:
    """How many of the run's tickers chose a network over their rule, beside how many chance
    alone would give (:func:`stockcast.promotion.discoveries`): a tag that reads, and two
    metrics that compare across runs."""
    chosen = sum(d.get("kind") == "network" for d in decisions.values())
    found = discoveries(edges, chosen, cfg.register)
    client.set_tag(
        run_id,
        "networks_chosen",
        f"{found.chosen} of {found.tickers} tickers chose a network ({found.rule}); "
        f"chance alone: {found.by_chance:.3g}",
    )
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = {"networks_chosen": found.chosen, "networks_chosen_by_chance": found.by_chance}
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if math.isfinite(v)]
    log_batch(client, run_id, metrics, [], [])


def _fit_times(result: TrainResult | None) -> tuple[int | None, int | None]:
    """When a network's fit began and ended (ms), for its run; None for a rule (no fit)."""
    if result is None or not result.fit_started:
        return None, None
    return int(result.fit_started * 1000), int(result.fit_ended * 1000) or None


def _log_verdict(
    client: Any,
    run_id: str,
    reports: dict[str, TickerReport],
    decisions: dict[str, Any],
    span: str,
    adjusted: dict[str, float] | None = None,
) -> None:
    """Say on the parent run who won: its name leads with the verdict, its description (the
    run's note) holds the leaderboard, which is also a logged table (``leaderboard.json``,
    every candidate; ``tickers.json``, a row per ticker). One ticker's note lists its
    candidates; many tickers' list a row each, as many as a note holds."""
    import pandas as pd

    board = leaderboard.board(reports, decisions, span)
    per_ticker = leaderboard.ticker_board(reports, decisions, span, adjusted)
    headline = leaderboard.run_verdict(reports, decisions, span)
    client.log_table(
        run_id,
        data=pd.DataFrame(board, columns=leaderboard.COLUMNS),
        artifact_file="leaderboard.json",
    )
    client.log_table(
        run_id,
        data=pd.DataFrame(per_ticker, columns=leaderboard.TICKER_COLUMNS),
        artifact_file="tickers.json",
    )
    note = (
        leaderboard.markdown(board, headline)
        if len(reports) == 1
        else leaderboard.markdown(per_ticker, headline, leaderboard.TICKER_COLUMNS)
    )
    client.set_tag(run_id, "mlflow.note.content", note)
    name = client.get_run(run_id).info.run_name
    client.update_run(run_id, name=f"{headline} · {name}")


def models_to_log(scope: str, report: TickerReport, choice: registry.Choice) -> set[str]:
    """The candidates whose forecaster is logged as a model: the one to register (unless this
    very registration exists already) and, with ``train.scope: per_ticker``, every network,
    each a model trained for this ticker. A baseline rule that is not registered has no
    trained state to keep, and a global network is logged for the tickers that register it:
    the same network a thousand times over would make registering a thousand tickers take
    hours (the child run still holds every candidate's scores, curves and chart)."""
    chosen = set() if choice.earlier is not None else {choice.name}
    if scope != "per_ticker":
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
        for key in ("ks_p_value", "levene_p_value", "adjusted_p_value", "volatility_ratio")
        if key in d  # a report from before the adjusted p-value has none
    ]
    log_batch(client, run_id, metrics, [], [])


def _ticker_summary(
    client: Any, run_id: str, paths: Paths, report: TickerReport, span: str
) -> list[Any]:
    """The ticker's backtest chart onto the parent run; returned, for the parent run too,
    every baseline's test scores and RMSE on the span that chooses (only the strongest
    baseline gets a run of its own)."""
    from mlflow.entities import Metric

    fold_plot = paths.backtest_plot(report.ticker)
    if fold_plot.exists():
        client.log_artifact(run_id, str(fold_plot), artifact_path="backtest")
    chosen_on = {
        f"{name}_{span}_rmse": c.on(span).rmse
        for name, c in report.candidates.items()
        if c.kind == "baseline"
    }
    now = int(time.time() * 1000)
    values = {**report.baselines, **chosen_on}
    return [Metric(f"{report.ticker}.{k}", float(v), now, 0) for k, v in values.items()]


def runs_of(report: TickerReport, span: str) -> list[str]:
    """The candidates that get a child run: every network and the strongest baseline on
    ``span``, the one each network must beat. The weaker rules' scores are on the parent
    run and in ``reports/metrics.json``: at a thousand tickers, four runs a ticker that no
    decision reads would cost minutes."""
    _, baseline = leaders(report.candidates, span)
    return [n for n, c in report.candidates.items() if c.kind == "network" or n == baseline]


def pipeline_run_name(tickers: list[str], params_hash: str, now: float | None = None) -> str:
    """A parent run's name that reads well in a list: when, which tickers, which params."""
    from datetime import datetime

    when = datetime.fromtimestamp(time.time() if now is None else now).strftime("%Y-%m-%d %H:%M")
    shown = " ".join(tickers[:2]) + (f" +{len(tickers) - 2}" if len(tickers) > 2 else "")
    return f"{when} {shown} params {params_hash[:7]}".strip()


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
            uri = log_forecaster(
                mlflow,
                ws,
                keras_path,
                widths,
                scores.name,
                cfg.features.moving_average,
                scores.calibration,
            )
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


def _curves(result: TrainResult, now: int) -> list[Any]:
    """Per-epoch loss and val_loss as MLflow metrics, one step per epoch."""
    from mlflow.entities import Metric

    return [
        Metric(key, float(value), now, step)
        for key in ("loss", "val_loss")
        for step, value in enumerate(result.history.get(key, []), start=1)
    ]


def log_failed_validation(
    project_root: Path,
    experiment: str,
    report_dir: Path,
    message: str,
    tags: dict[str, str] | None = None,
) -> str:
    """Record a run stopped by the validation gate, with its report, as a FAILED MLflow run."""
    import mlflow

    experiment_id = ensure_experiment(store.client_for(project_root), experiment, project_root)
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
