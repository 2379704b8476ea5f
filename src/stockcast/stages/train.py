"""Stage train: every planned fit (:func:`stockcast.train.plan_fits`) run through the
executor it is given, each as soon as it can start, and every outcome recorded.

The procedure knows nothing of who runs a fit: ``pool(k, n)`` opens chunk ``k`` of ``n``'s
executor (threads, processes, a Dask cluster; the flow passes Prefect's task runners, a test
a plain thread pool) and yields a :data:`Submit`. A fit receives its windows and returns its
model as data, so it needs no shared disk; each is written once, into the models folder being
built aside (``models/``, swapped in whole when the stage succeeds), with what every fit left
behind (``models/train.json``, ``models/backtest.json``) and the global model copied to
every ticker.
"""

from __future__ import annotations

import logging
import queue
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from stockcast import continuation
from stockcast.config import Config
from stockcast.errors import StockcastError
from stockcast.paths import MODEL_FILE, Paths, atomic_write, read_json, staged_dir, write_json
from stockcast.train import (
    GLOBAL_MODEL,
    MAIN_MODEL,
    FitJob,
    Fitted,
    TrainResult,
    chunks,
    collect,
    keep,
    model_dir,
    model_spec,
    plan_fits,
    warm_starts,
)
from stockcast.windows import WindowSet, read_manifest

CONTINUED = "last run"  # warm_from of a main model continued from the last run's weights
Trained = dict[str, dict[str, TrainResult]]  # ticker -> variant -> the main model's result
# A fit handed to an executor: (job, its windows, the .keras bytes it starts from or None)
# -> a future of the fit, or of why the task running it failed (a worker died, ...).
Submit = Callable[[FitJob, list[WindowSet], bytes | None], "Future[Fitted | str]"]
Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


def run(
    cfg: Config, paths: Paths, pool: Callable[[int, int], AbstractContextManager[Submit]], log: Log
) -> dict[str, list[str]]:
    """Run every fit and record it: ticker -> the variants whose main model trained.

    A failed fit is recorded, never fatal, unless every main variant of a ticker fails; then
    ``models/`` keeps the last good models and this run's fits are kept in
    ``models.failed/`` to read.
    """
    manifest = read_manifest(paths.processed)
    jobs = plan_fits(manifest, cfg.train.variants, cfg.train.scope)
    plan, carried = _plan(cfg, paths, manifest, jobs)
    log.info("train %s: %s", "warm" if plan.warm else "cold", plan.reason)
    if plan.warm:  # the main models only, each from its own last weights, their own patience
        warm = {"patience": cfg.train.warm_patience, "epochs": cfg.train.warm_epochs}
        jobs = [replace(job, **warm) for job in jobs if job.fold == MAIN_MODEL]
    with staged_dir(paths.models, keep_failed=paths.failed_models) as building:
        chained = warm_starts(jobs) if cfg.train.warm_start and not plan.warm else {}
        progress = Progress(len(jobs), chained)
        if plan.warm:
            progress.inits = {
                job.name: (paths.models / job.out / MODEL_FILE).read_bytes() for job in jobs
            }
        outcomes: list[Fitted | str] = []
        parts = chunks(jobs, cfg.execution)
        for k, chunk in enumerate(parts):  # several: fresh worker processes, flat memory
            with pool(k, len(parts)) as submit:
                outcomes += fit_all(submit, chunk, paths, progress, log)
        fits = collect(jobs, outcomes)
        results = [
            keep(f, building / job.out, paths.models / job.out)
            for f, job in zip(fits, jobs, strict=True)
        ]
        _log(results, log)  # the fits of this run, each once: a global model is one line
        if any(job.ticker == GLOBAL_MODEL for job in jobs):  # each ticker gets the shared model
            results = share_global_models(results, list(manifest), paths, building)
            log.info("each global model serves all %d tickers", len(manifest))
        results += carry_folds(carried, paths, building)
        write_json(building / continuation.RECORD, plan.to_json())
        summary = write_summary(results, paths, building)
        trained = {t: [v for v, r in variants.items() if r.ok] for t, variants in summary.items()}
        if empty := [t for t, variants in trained.items() if not variants]:
            why = "; ".join(f"{t}/{v}: {r.error}" for t in empty for v, r in summary[t].items())
            raise StockcastError(
                f"every variant failed for {empty} ({why}); models/ keeps the last good "
                f"models, this run's fits are in {paths.failed_models.name}/"
            )
    return trained


def network_specs(cfg: Config, paths: Paths) -> list[tuple[Any, ...]]:
    """The networks the next train stage builds (``build_model``'s arguments, one per
    variant), as far as the windows on disk now tell (their window and inputs): what a
    process may prepare before the window stage rewrites them. Empty when there are none."""
    try:
        manifest = read_manifest(paths.processed)
        first = next(iter(manifest.values()))
        ws = WindowSet.load(paths.processed / first["file"])
    except (OSError, StopIteration, KeyError, ValueError, StockcastError):
        return []
    features = ws.scaled.shape[1]
    return [model_spec(v, ws.window, features, cfg.train, cfg.seed) for v in cfg.train.variants]


def _plan(
    cfg: Config, paths: Paths, manifest: dict, jobs: list[FitJob]
) -> tuple[continuation.Plan, list[TrainResult]]:
    """Warm or cold (:mod:`stockcast.continuation`), and the fold fits a warm run keeps."""
    rows = {str(t): int(entry["rows"]) for t, entry in manifest.items()}
    previous = continuation.read_record(paths.models)
    carried = (
        [
            r
            for variants in read_backtest_summary(paths).values()
            for rs in variants.values()
            for r in rs
        ]
        if previous
        else []
    )
    mains = [paths.models / job.out / MODEL_FILE for job in jobs if job.fold == MAIN_MODEL]
    folds = [_fold_model(r, paths) for r in carried if r.ok and r.model_path]
    expected = sum(1 for job in jobs if job.fold != MAIN_MODEL)
    present = all(p.exists() for p in [*mains, *folds]) and len(carried) >= expected
    plan = continuation.decide(
        cfg, paths.root, rows, previous, present, continuation.forced_reason()
    )
    return plan, carried if plan.warm else []


def carry_folds(carried: list[TrainResult], paths: Paths, building: Path) -> list[TrainResult]:
    """A warm run keeps the last cold run's fold fits: their folders copied into the models
    folder being built, their records as they were."""
    kept = []
    for r in carried:
        if r.model_path:
            where = model_dir(r.ticker, r.variant, r.fold)
            shutil.copytree(paths.models / where, building / where, dirs_exist_ok=True)
            r = replace(r, model_path=str(_fold_model(r, paths)))
        kept.append(r)
    return kept


def _fold_model(r: TrainResult, paths: Paths) -> Path:
    """A fold fit's model file in this project (the record's path may be another folder's)."""
    return paths.models / model_dir(r.ticker, r.variant, r.fold) / MODEL_FILE


@dataclass
class Progress:
    """The stage's fits as they go, across chunks: how many are done out of the total and
    since when (for the time left), and the warm starts: which fit each starts from and the
    ended fits' models that a fit not yet submitted starts from."""

    total: int
    starts: dict[str, str] = field(default_factory=dict)  # job name -> the fit it starts from
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    models: dict[str, bytes | None] = field(default_factory=dict)  # ended, awaited as a start
    inits: dict[str, bytes] = field(default_factory=dict)  # a warm run: each job's last weights


def fit_all(
    submit: Submit, jobs: list[FitJob], paths: Paths, progress: Progress, log: Log
) -> list[Fitted | str]:
    """Load the jobs' windows and submit each job with its own as soon as it can start: at
    once, or with a warm start when the fit it starts from has ended (from that fit's model;
    cold if that fit failed). Report each fit as it ends. Outcomes in job order."""
    windows = {
        name: WindowSet.load(paths.processed / name) for name in {f for j in jobs for f in j.files}
    }
    waiting = {job.name: job for job in jobs}
    running: dict[Future[Fitted | str], tuple[FitJob, str]] = {}  # -> its job and warm start
    ended: queue.SimpleQueue[Future[Fitted | str]] = queue.SimpleQueue()  # as they end
    then = {start: name for name, start in progress.starts.items()}  # who starts from it
    outcomes: dict[str, Fitted | str] = {}

    def start(job: FitJob) -> None:
        warm = progress.starts.get(job.name, "")
        init = progress.models.pop(warm, None) if warm else None
        if warm and init is None:
            log.warning("fit %s starts cold: fit %s left no model", job.name, warm)
        if not warm and job.name in progress.inits:  # continuing the last run's network
            warm, init = CONTINUED, progress.inits.pop(job.name)
        del waiting[job.name]
        future = submit(job, [windows[f] for f in job.files], init)
        running[future] = (job, warm if init is not None else "")
        future.add_done_callback(ended.put)

    for job in jobs:
        warm = progress.starts.get(job.name)
        if warm is None or warm in progress.models:  # cold, or its start already ended
            start(job)
    while running or waiting:
        if not running:  # a start that will never come (not in this chunk): start it cold
            start(next(iter(waiting.values())))
        future = ended.get()
        job, warm = running.pop(future)
        outcome = outcomes[job.name] = _outcome(future)
        if isinstance(outcome, Fitted):
            outcome.result.warm_from = warm
        if (after := then.get(job.name)) is not None:  # a fit starts from this one
            progress.models[job.name] = outcome.model if isinstance(outcome, Fitted) else None
            if after in waiting:
                start(waiting[after])
        _report(log, job, outcome, progress)
    return [outcomes[job.name] for job in jobs]


def _outcome(future: Future[Fitted | str]) -> Fitted | str:
    """A finished future's fit, or why the task running it failed."""
    if (error := future.exception()) is not None:
        return f"{type(error).__name__}: {error}"
    return future.result()


def _report(log: Log, job: FitJob, outcome: Fitted | str, progress: Progress) -> None:
    """A fit ended: which, how it went, how many remain, and the time left at the pace so
    far."""
    if isinstance(outcome, str):
        said = f"task failed: {outcome}"
    elif outcome.result.ok:
        r = outcome.result
        said = f"best val_loss {r.best_val_loss:.6f} at epoch {r.best_epoch}"
        said += f", warm from {r.warm_from}" if r.warm_from else ""
    else:
        said = f"failed: {outcome.result.error}"
    progress.done += 1
    left = progress.total - progress.done
    eta = (time.monotonic() - progress.started) / progress.done * left
    log.info(
        "fit %s ended (%s): %d of %d done, %d remain (about %.0f s left)",
        job.name,
        said,
        progress.done,
        progress.total,
        left,
        eta,
    )


def _log(results: list[TrainResult], log: Log) -> None:
    for r in results:
        if r.ok:
            log.info(
                "%s/%s fold %d: best val_loss %.6f at epoch %d of %d (%.1f s)",
                r.ticker,
                r.variant,
                r.fold,
                r.best_val_loss,
                r.best_epoch,
                r.epochs_run,
                r.fit_seconds,
            )
        else:
            log.error("%s/%s fold %d failed: %s", r.ticker, r.variant, r.fold, r.error)


def share_global_models(
    results: list[TrainResult], tickers: list[str], paths: Paths, folder: Path | None = None
) -> list[TrainResult]:
    """Give every ticker a copy of each global model (``train.scope: global``).

    Evaluation and registration then work per ticker as usual: each ticker's pyfunc wraps
    the shared network with that ticker's own scaler and transform. ``folder`` is where the
    models folder is being built (``paths.models`` itself by default).
    """
    folder = folder or paths.models
    shared = []
    for r in results:
        for ticker in tickers:
            where = model_dir(ticker, r.variant, r.fold)
            model_path = None
            if r.ok and r.model_path:
                copied = folder / Path(r.model_path).relative_to(paths.models)
                atomic_write(
                    folder / where / MODEL_FILE, lambda tmp, s=copied: shutil.copy2(s, tmp)
                )
                model_path = str(paths.models / where / MODEL_FILE)
            shared.append(
                replace(r, ticker=ticker, model_path=model_path, worker=f"global: {r.worker}")
            )
    return shared


def write_summary(results: list[TrainResult], paths: Paths, folder: Path | None = None) -> Trained:
    """Record every fit's outcome, failures too: main models in ``models/train.json``,
    backtest folds in ``models/backtest.json`` (in ``folder``, where the models folder is
    being built, when given). Returns the main models' outcomes."""
    folder = folder or paths.models
    main: Trained = {}
    folds: dict[str, dict[str, list[TrainResult]]] = {}
    for r in sorted(results, key=lambda r: (r.ticker, r.variant, r.fold)):
        if r.fold == MAIN_MODEL:
            main.setdefault(r.ticker, {})[r.variant] = r
        else:
            folds.setdefault(r.ticker, {}).setdefault(r.variant, []).append(r)
    write_json(
        folder / paths.train_summary.name,
        {t: {v: asdict(r) for v, r in vs.items()} for t, vs in main.items()},
    )
    write_json(
        folder / paths.backtest_summary.name,
        {t: {v: [asdict(r) for r in rs] for v, rs in vs.items()} for t, vs in folds.items()},
    )
    return main


def read_summary(paths: Paths) -> Trained:
    """The main models: ticker -> variant -> TrainResult."""
    raw = read_json(paths.train_summary)
    return {t: {v: TrainResult(**r) for v, r in vs.items()} for t, vs in raw.items()}


def read_backtest_summary(paths: Paths) -> dict[str, dict[str, list[TrainResult]]]:
    """The backtest fits: ticker -> variant -> [TrainResult per fold]."""
    if not paths.backtest_summary.exists():
        return {}
    raw = read_json(paths.backtest_summary)
    return {t: {v: [TrainResult(**r) for r in rs] for v, rs in vs.items()} for t, vs in raw.items()}
