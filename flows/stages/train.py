"""The train stage's flow: :func:`stockcast.stages.train.run` with Prefect's executors,
each fit a task on the runner ``execution.runner`` names."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runners import pools, prepare_cluster, task_runner
from stockcast.config import Config, ExecutionConfig, TrainConfig, load_config
from stockcast.paths import Paths
from stockcast.stages import train
from stockcast.train import FitJob, Fitted, run_job
from stockcast.windows import WindowSet

# A fit stops itself at execution.timeout_seconds; a task's timeout is a backstop for one
TASK_TIMEOUT_MARGIN = 300  # stuck outside the fit (loading, saving)


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
    """One fit (a thread, a process or a Dask worker): each epoch a line of the run's log."""
    return run_job(job, windows, cfg, seed, execution, get_run_logger().info, init)


@flow(name="train")
def flow_(params: str = "params.yaml") -> dict[str, list[str]]:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    if cfg.execution.runner == "dask" and cfg.execution.dask_address:
        prepare_cluster(cfg.execution.dask_address)
    return train_variants.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)


@flow(name="train-variants")
def train_variants(cfg: Config, paths: Paths) -> dict[str, list[str]]:
    """The stage on this flow's task runner, or on fresh ones chunk by chunk. Threads and
    Dask run a task in a thread that no timeout interrupts: there the fit's own budget is."""
    in_thread = cfg.execution.runner in ("threads", "dask")
    backstop = None if in_thread else cfg.execution.timeout_seconds + TASK_TIMEOUT_MARGIN
    fit = fit_task.with_options(timeout_seconds=backstop)

    return train.run(cfg, paths, pools(fit, cfg), get_run_logger())
