"""The train stage's flow: the pure plan (:func:`stockcast.train.plan_fits`) mapped onto
parallel tasks on the runner ``execution.runner`` names; every outcome recorded."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from flows.stages import untagged
from stockcast.config import Config, ExecutionConfig, TrainConfig, load_config
from stockcast.errors import StockcastError
from stockcast.paths import Paths, staged_dir
from stockcast.stages.train import keep_fit, share_global_models, write_summary
from stockcast.train import (
    GLOBAL_MODEL,
    FitJob,
    Fitted,
    TrainResult,
    chunks,
    collect,
    plan_fits,
    run_job,
    warm_sources,
)
from stockcast.windows import WindowSet, read_manifest

# The fit stops itself at execution.timeout_seconds (a Keras callback, reliable in any
# runner); the task timeout is a backstop for a task stuck outside the fit (loading, saving).
TASK_TIMEOUT_MARGIN = 300


# A fit is never cached: its inputs are arrays, and a rerun means a new fit.
@task(name="fit", task_run_name="fit-{job.ticker}-{job.variant}-{job.fold}", cache_policy=NO_CACHE)
def fit_task(
    job: FitJob,
    windows: list[WindowSet],
    cfg: TrainConfig,
    seed: int,
    execution: ExecutionConfig,
    init: bytes | None = None,
) -> Fitted:
    """Train one job (a thread, a process or a Dask worker on another machine): fold 0 is
    the main model. It gets its windows (and the ``.keras`` bytes of a warm start) as data
    and returns its model as data, so it needs no shared disk. Each epoch is a line of the
    run's log (the terminal and the Prefect UI)."""
    return run_job(job, windows, cfg, seed, execution, get_run_logger().info, init)


def task_runner(cfg: ExecutionConfig) -> Any:
    """The task runner ``execution.runner`` names.

    ``dask`` connects to ``execution.dask_address`` when given; otherwise it starts a
    ``LocalCluster`` of ``max_workers`` single-threaded worker processes (TensorFlow uses the
    cores of its own process, so more threads per worker only contend).
    """
    if cfg.runner == "processes":
        return ProcessPoolTaskRunner(max_workers=cfg.max_workers)
    if cfg.runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": cfg.max_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        },
    )


def _fresh(cfg: ExecutionConfig, chunk: int) -> Any:
    """A task runner whose worker processes have run no fit yet: a new process pool, a new
    local Dask cluster, or, on the cluster at ``dask_address``, its workers restarted by
    their nannies before every chunk but the first."""
    if cfg.runner == "processes":
        return ProcessPoolTaskRunner(max_workers=cfg.max_workers)
    if cfg.dask_address:
        prepare_cluster(cfg.dask_address, restart=chunk > 0)
    return task_runner(cfg)


_SERVED_API: str | None = None  # in a Dask worker: the Prefect API its fits reported to


def _served_api() -> str | None:
    return _SERVED_API


def _serve_api(url: str) -> None:
    global _SERVED_API
    _SERVED_API = url


def prepare_cluster(address: str, restart: bool = False) -> bool:
    """Make the cluster at ``address`` ready for this run's fits; True if its workers were
    restarted. A worker process that ran fits for a run reporting to another Prefect API (a
    run's temporary server, since stopped) keeps that API in Prefect's process-wide
    clients, and its next fit fails to connect; so such workers, or all of them when
    ``restart`` (fresh processes: memory), are restarted by their nannies first."""
    from distributed import Client
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value() or "")
    with Client(address, timeout=60) as client:
        served = client.run(_served_api)
        stale = any(api not in (None, url) for api in served.values())
        if restart or stale:
            client.restart(timeout=300)
        client.run(_serve_api, url)
    return restart or stale


@flow(name="train")
def flow_(params: str = "params.yaml") -> dict[str, list[str]]:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    if cfg.execution.runner == "dask" and cfg.execution.dask_address:
        prepare_cluster(cfg.execution.dask_address)
    return train_variants.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)


@flow(name="train-variants")
def train_variants(cfg: Config, paths: Paths) -> dict[str, list[str]]:
    """Every planned fit as its own task. A failure is recorded, never fatal, unless every
    main variant of a ticker fails.

    ``models/`` is built aside and swapped in whole when the stage succeeds: a failed or
    killed stage leaves the last good models as they were (a failed one's fits are kept in
    ``models.failed/`` to read).
    """
    manifest = read_manifest(paths.processed)
    jobs = plan_fits(manifest, cfg.train.variants, cfg.train.scope)
    # Threads and Dask run a task in a worker thread, where a task timeout cannot interrupt
    # anything (Prefect warns on every fit): there the fit's own time budget is the timeout.
    in_thread = cfg.execution.runner in ("threads", "dask")
    backstop = None if in_thread else cfg.execution.timeout_seconds + TASK_TIMEOUT_MARGIN
    fit = fit_task.with_options(timeout_seconds=backstop)
    with staged_dir(paths.models, keep_failed=paths.failed_models) as building:
        progress = _Progress(len(jobs), warm_sources(jobs) if cfg.train.warm_start else {})
        outcomes: list[Fitted | str] = []
        parts = chunks(jobs, cfg.execution)
        for k, chunk in enumerate(parts):
            if len(parts) == 1:  # one pool for the whole stage
                outcomes += _fit_all(fit, chunk, paths, cfg, progress)
            else:  # fresh worker processes for each chunk: memory stays flat
                outcomes += fit_chunk.with_options(task_runner=_fresh(cfg.execution, k))(
                    cfg, paths, chunk, backstop, progress
                )
        fits = collect(jobs, outcomes)
        results = [
            keep_fit(f, job, building, paths.models) for f, job in zip(fits, jobs, strict=True)
        ]
        if any(job.ticker == GLOBAL_MODEL for job in jobs):  # each ticker gets the shared model
            results = share_global_models(results, list(manifest), paths, building)
        summary = write_summary(results, paths, building)
        _log(results)
        trained = {t: [v for v, r in variants.items() if r.ok] for t, variants in summary.items()}
        if empty := [t for t, variants in trained.items() if not variants]:
            why = "; ".join(f"{t}/{v}: {r.error}" for t in empty for v, r in summary[t].items())
            raise StockcastError(
                f"every variant failed for {empty} ({why}); models/ keeps the last good "
                f"models, this run's fits are in {paths.failed_models.name}/"
            )
    return trained


@dataclass
class _Progress:
    """The stage's fits as they go, across chunks: how many are done out of the total and
    since when (for the time left), and the warm starts: which fit each starts from and the
    ended fits' models that a fit not yet submitted starts from."""

    total: int
    sources: dict[str, str] = field(default_factory=dict)  # job name -> its warm start's
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    models: dict[str, bytes | None] = field(default_factory=dict)  # ended, awaited as a start


# validate_parameters=False: the progress record is shared, not copied
@flow(name="train-chunk", validate_parameters=False)
def fit_chunk(
    cfg: Config, paths: Paths, jobs: list[FitJob], backstop: int | None, progress: _Progress
) -> list[Fitted | str]:
    """Some of the stage's fits on worker processes of their own, which end with it."""
    return _fit_all(fit_task.with_options(timeout_seconds=backstop), jobs, paths, cfg, progress)


def _fit_all(
    fit: Any, jobs: list[FitJob], paths: Paths, cfg: Config, progress: _Progress
) -> list[Fitted | str]:
    """Load the jobs' windows and submit each job with its own as soon as it can start: at
    once, or with a warm start when the fit it starts from has ended (from that fit's model;
    cold if that fit failed). Report each fit as it ends. Outcomes in job order."""
    windows = {
        name: WindowSet.load(paths.processed / name) for name in {f for j in jobs for f in j.files}
    }
    waiting = {job.name: job for job in jobs}
    running: dict[Any, tuple[FitJob, str]] = {}  # future -> its job and its warm start
    ended: queue.SimpleQueue[Any] = queue.SimpleQueue()  # futures, as they end
    then = {source: name for name, source in progress.sources.items()}  # who starts from it
    outcomes: dict[str, Fitted | str] = {}
    logger = get_run_logger()

    def submit(job: FitJob) -> None:
        source = progress.sources.get(job.name, "")
        init = progress.models.pop(source, None) if source else None
        if source and init is None:
            logger.warning("fit %s starts cold: fit %s left no model", job.name, source)
        del waiting[job.name]
        sets = [windows[f] for f in job.files]
        with untagged():
            future = fit.submit(job, sets, cfg.train, cfg.seed, cfg.execution, init)
        running[future] = (job, source if init is not None else "")
        future.add_done_callback(ended.put)

    for job in jobs:
        source = progress.sources.get(job.name)
        if source is None or source in progress.models:  # cold, or its start already ended
            submit(job)
    while running or waiting:
        if not running:  # a start that will never come (not in this chunk): start it cold
            submit(next(iter(waiting.values())))
        future = ended.get()
        job, source = running.pop(future)
        outcome = outcomes[job.name] = _outcome(future)
        if isinstance(outcome, Fitted):
            outcome.result.warm_from = source
        if (after := then.get(job.name)) is not None:  # a fit starts from this one
            progress.models[job.name] = outcome.model if isinstance(outcome, Fitted) else None
            if after in waiting:
                submit(waiting[after])
        _report(logger, job, outcome, progress)
    return [outcomes[job.name] for job in jobs]


def _report(logger: Any, job: FitJob, outcome: Fitted | str, progress: _Progress) -> None:
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
    logger.info(
        "fit %s ended (%s): %d of %d done, %d remain (about %.0f s left)",
        job.name,
        said,
        progress.done,
        progress.total,
        left,
        eta,
    )


def _outcome(future: Any) -> Fitted | str:
    """A finished task's fit, or why the task itself failed (its state may lag the result:
    ask for the result, never the state)."""
    result = future.result(raise_on_failure=False)
    if isinstance(result, Fitted):
        return result
    return str(result) or future.state.name


def _log(results: list[TrainResult]) -> None:
    logger = get_run_logger()
    for r in results:
        if r.ok:
            logger.info(
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
            logger.error("%s/%s fold %d failed: %s", r.ticker, r.variant, r.fold, r.error)
