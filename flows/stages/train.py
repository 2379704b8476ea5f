"""The train stage's flow: the pure plan (:func:`stockcast.train.plan_fits`) mapped onto
parallel tasks on the runner ``execution.runner`` names; every outcome recorded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed, wait
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from stockcast.config import Config, ExecutionConfig, TrainConfig, load_config
from stockcast.errors import StockcastError
from stockcast.paths import Paths
from stockcast.stages.train import share_global_models, write_summary
from stockcast.train import GLOBAL_MODEL, FitJob, TrainResult, collect, plan_fits, run_job
from stockcast.windows import read_manifest

# The fit stops itself at execution.timeout_seconds (a Keras callback, reliable in any
# runner); the task timeout is a backstop for a task stuck outside the fit (loading, saving).
TASK_TIMEOUT_MARGIN = 300


@task(name="fit", task_run_name="fit-{job.ticker}-{job.variant}-{job.fold}")
def fit_task(job: FitJob, cfg: TrainConfig, seed: int, execution: ExecutionConfig) -> TrainResult:
    """Train one job (a thread, a process or a Dask worker): fold 0 is the main model. Each
    epoch is a line of the run's log (the terminal and the Prefect UI)."""
    return run_job(job, cfg, seed, execution, progress=get_run_logger().info)


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


@flow(name="train")
def flow_(params: str = "params.yaml") -> dict[str, list[str]]:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    return train_variants.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)


@flow(name="train-variants")
def train_variants(cfg: Config, paths: Paths) -> dict[str, list[str]]:
    """Every planned fit as its own task. A failure is recorded, never fatal, unless every
    main variant of a ticker fails."""
    manifest = read_manifest(paths.processed)
    jobs = plan_fits(manifest, cfg.train.variants, cfg.train.scope, paths.processed, paths.models)
    # In a worker thread a task timeout cannot interrupt anything (Prefect warns on every
    # fit); there the fit's own time budget is the timeout.
    backstop = cfg.execution.timeout_seconds + TASK_TIMEOUT_MARGIN
    fit = fit_task.with_options(
        timeout_seconds=None if cfg.execution.runner == "threads" else backstop
    )
    futures = [fit.submit(job, cfg.train, cfg.seed, cfg.execution) for job in jobs]
    _report_progress(futures, jobs)
    results = collect(jobs, [_outcome(f) for f in futures])
    if any(job.ticker == GLOBAL_MODEL for job in jobs):  # each ticker gets the shared model
        results = share_global_models(results, list(manifest), paths)
    summary = write_summary(results, paths)
    _log(results)
    trained = {t: [v for v, r in variants.items() if r.ok] for t, variants in summary.items()}
    if empty := [t for t, variants in trained.items() if not variants]:
        raise StockcastError(f"every variant failed for {empty}; see {paths.train_summary}")
    return trained


def _report_progress(futures: list[Any], jobs: list[FitJob]) -> None:
    """As each fit ends: which, how it went, how many remain, and the time left at the pace
    so far."""
    logger = get_run_logger()
    names = {id(f): job.name for f, job in zip(futures, jobs, strict=True)}
    started = time.monotonic()
    for done, future in enumerate(as_completed(futures), start=1):
        outcome = _outcome(future)
        if isinstance(outcome, str):
            said = f"task failed: {outcome}"
        elif outcome.ok:
            said = f"best val_loss {outcome.best_val_loss:.6f} at epoch {outcome.best_epoch}"
        else:
            said = f"failed: {outcome.error}"
        left = len(futures) - done
        eta = (time.monotonic() - started) / done * left
        logger.info(
            "fit %s ended (%s): %d of %d done, %d remain (about %.0f s left)",
            names[id(future)],
            said,
            done,
            len(futures),
            left,
            eta,
        )
    wait(futures)


def _outcome(future: Any) -> TrainResult | str:
    """A finished task's result, or why the task itself failed (its state may lag the result:
    ask for the result, never the state)."""
    result = future.result(raise_on_failure=False)
    if isinstance(result, TrainResult):
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
