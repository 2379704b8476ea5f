"""The Prefect task runners that run the train stage's fits, as ``execution.runner`` names:
threads, worker processes, or a Dask cluster (local, or at ``execution.dask_address``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

from prefect.context import FlowRunContext
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from flows.stages import untagged
from stockcast.config import Config, ExecutionConfig
from stockcast.stages.train import Submit
from stockcast.train import FitJob, Fitted


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


def fresh(cfg: ExecutionConfig, chunk: int) -> Any:
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


def pools(fit: Any, cfg: Config) -> Callable[[int, int], AbstractContextManager[Submit]]:
    """The train stage's executors for the task ``fit``: chunk ``k`` of ``n``'s. One chunk
    runs on the current flow's own task runner; several each on a fresh one
    (:func:`fresh`), whose worker processes end with the chunk."""

    @contextmanager
    def pool(k: int, n: int) -> Iterator[Submit]:
        if n == 1:
            yield partial(submit_fit, FlowRunContext.get().task_runner, fit, cfg)  # type: ignore[union-attr]
            return
        with fresh(cfg.execution, k) as runner:
            yield partial(submit_fit, runner, fit, cfg)

    return pool


def submit_fit(
    runner: Any, fit: Any, cfg: Config, job: FitJob, sets: list, init: bytes | None
) -> Future[Fitted | str]:  # type: ignore[type-arg]
    """A fit as a task on ``runner``, its future a plain one of the fit or of why the task
    failed (a task's state may lag its result: ask for the result, never the state)."""
    params = {"job": job, "windows": sets, "cfg": cfg.train, "seed": cfg.seed}
    with untagged():
        task_future = runner.submit(fit, {**params, "execution": cfg.execution, "init": init})
    plain: Future[Fitted | str] = Future()

    def done(f: Any) -> None:
        result = f.result(raise_on_failure=False)
        plain.set_result(result if isinstance(result, Fitted) else str(result) or f.state.name)

    task_future.add_done_callback(done)
    return plain
