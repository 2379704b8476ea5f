"""``make pipeline``: bring every ``dvc.yaml`` stage up to date, in this one process, with one
Prefect API for the run.

DVC stays the judge and the record keeper: the stage order and each stage's upstream come
from DVC's own graph, ``dvc status`` says which stages are stale, and after a stage succeeds
``dvc commit`` writes it to ``dvc.lock`` and caches its outputs, as ``dvc repro`` would.
Each stage's ``cmd`` is ``python -m flows.stages STAGE``, so a plain ``dvc repro`` runs the
same flows, one interpreter per stage. Exit codes: 0 done, 1 a stage or the data gate
failed, 2 usage, 3 another run holds the project.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import flows.env  # noqa: F401
from flows.server import BIN, flush_prefect_logs, prefect_api

DEFAULT_PARAMS = "params.yaml"


def dvc(*args: str, env: dict[str, str] | None = None, quiet: bool = False) -> int:
    """Run the venv's ``dvc`` with its ``python`` first on PATH (stage commands use it)."""
    env = dict(env or os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run([str(BIN / "dvc"), *args], env=env, stdout=out, stderr=out).returncode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.repro", description=__doc__)
    parser.add_argument(
        "targets", nargs="*", help="dvc.yaml stages to bring up to date (default: all)"
    )
    parser.add_argument("--force", action="store_true", help="rerun stages even if unchanged")
    parser.add_argument(
        "--single-item", action="store_true", help="only the named stages, not their upstream"
    )
    parser.add_argument(
        "--dry", action="store_true", help="print the stages that would run, run nothing"
    )
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run as a DVC experiment (`dvc exp run -S KEY=VALUE`); repeatable",
    )
    parser.add_argument(
        "--params",
        default=DEFAULT_PARAMS,
        help="the parameters file; another than params.yaml runs every selected stage and "
        "leaves dvc.lock alone (dvc.yaml's params name params.yaml)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from stockcast.config import load_config
    from stockcast.errors import RunLocked, StockcastError
    from stockcast.lineage import mark_pipeline_started
    from stockcast.ops import run_lock

    started = time.perf_counter()
    mark_pipeline_started()  # the MLflow parent run spans the whole pipeline run
    root = Path.cwd()
    try:
        schedule = load_config(root / args.params).schedule
        if args.dry:
            print("\n".join(planned_stages(root, args.targets, args.force, args.single_item)))
            return 0
        with run_lock(root, "make pipeline", schedule.lock_wait_seconds):
            code = _run(args)
    except RunLocked as exc:
        print(f"stockcast pipeline did not start: {exc}", file=sys.stderr)
        return 3
    except StockcastError as exc:
        print(f"stockcast pipeline stopped: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(f"pipeline {'finished' if code == 0 else 'FAILED'} in {elapsed:.1f} s")
    if code != 0 and schedule.webhook:
        _notify(schedule.webhook, code, elapsed)
    if code != 0:
        _apprise(schedule.notify, code, elapsed)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.set_param:  # a DVC experiment: dvc runs each stage's cmd as its own process
        repro = ["exp", "run", *(f"-S{kv}" for kv in args.set_param), *args.targets]
        with prefect_api() as url:
            return dvc(*repro, env={**os.environ, "PREFECT_API_URL": url})
    own_params = args.params == DEFAULT_PARAMS
    if own_params and not args.force and dvc("status", "--quiet", *args.targets, quiet=True) == 0:
        print("pipeline is up to date: every stage skipped (dvc status)")
        return 0
    from stockcast.errors import StockcastError

    needs_tf = not args.targets or bool(set(args.targets) & {"train", "evaluate", "register"})
    with prefect_api(while_starting=lambda url: _import_stages(url, needs_tf)):
        try:
            from prefect import tags

            with tags(project_tag(Path.cwd())):
                pipeline_flow()(args.targets, args.force, args.single_item, args.params)
        except StockcastError as exc:
            print(f"\n{exc}", file=sys.stderr)
            return 1
        finally:
            flush_prefect_logs()
    return 0


def pipeline_flow() -> Any:
    """The ``pipeline`` flow: one flow run per ``make pipeline`` run, each stage a subflow of
    it, so the Prefect UI says whether a run as a whole succeeded and how long it took."""
    from prefect import flow

    @flow(name="pipeline")
    def pipeline(
        targets: list[str] | None = None,
        force: bool = False,
        single_item: bool = False,
        params: str = DEFAULT_PARAMS,
    ) -> list[str]:
        mark_orphans(Path.cwd())
        end_dead_mlflow_runs(Path.cwd())
        return run_stages(Path.cwd(), targets, force, single_item, params=params)

    return pipeline


def project_tag(root: Path) -> str:
    """The tag on every flow run of this project's runs (one Prefect server may serve many)."""
    from stockcast.store import project_id

    return f"stockcast-project:{project_id(root)}"


def mark_orphans(root: Path) -> list[str]:
    """Mark Crashed the project's flow runs still Running or Pending from a run whose process
    died (a SIGKILL, the OOM killer). Called under the project's run lock, from inside a flow
    run, so no other run of the project can be alive. Returns the names of the runs marked."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.runtime import flow_run
    from prefect.states import Crashed

    me, my_name = flow_run.get_id(), flow_run.get_name()
    alive = FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
    wanted = FlowRunFilter(
        state=FlowRunFilterState(type=alive), tags=FlowRunFilterTags(all_=[project_tag(root)])
    )
    marked = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=wanted):
            if str(run.id) == str(me):
                continue
            message = f"orphaned: its process died mid-run; marked Crashed by flow run {my_name!r}"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            marked.append(run.name)
    if marked:
        get_run_logger().warning("marked %d orphaned flow run(s) Crashed: %s", len(marked), marked)
    return marked


def end_dead_mlflow_runs(root: Path) -> list[str]:
    """End the MLflow runs a dead register attempt left RUNNING (its journal says so; MLflow
    is imported only then). Called under the run lock, inside the pipeline flow run. A store
    that does not answer is only warned of here: the register stage reports it, if it runs."""
    from stockcast.store import JOURNAL

    if not (root / JOURNAL).exists():
        return []
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    from stockcast import store

    logger = get_run_logger()
    try:
        ended = store.end_dead_runs(store.client_at, root, f"pipeline {flow_run.get_name()!r}")
    except Exception as exc:  # noqa: BLE001 - a store down now is the register stage's to report
        logger.warning("could not end the MLflow runs a dead run left RUNNING: %s", exc)
        return []
    if ended:
        logger.warning("ended %d MLflow run(s) a dead run left RUNNING: %s", len(ended), ended)
    return ended


def _import_stages(url: str, tensorflow: bool = True) -> None:
    """Point Prefect at ``url``, then import the stage flows (Prefect, pandas: seconds) and,
    when a stage that needs it may run, TensorFlow."""
    # Before Prefect is first imported in this process: its settings (and the context it
    # hands to training worker processes) must carry the URL, or each worker would start a
    # temporary server of its own.
    os.environ["PREFECT_API_URL"] = url
    from flows.stages import stage_flows

    stage_flows()
    if tensorflow:  # its import (about 10 s) while the server starts, not while nothing fits
        from stockcast.models import import_keras

        import_keras()
    preload(BEFORE_VALIDATE)  # while the server finishes starting and ingest runs


def stage_order(
    repo: Any, targets: list[str] | None = None, single_item: bool = False
) -> list[str]:
    """The stages to consider, upstream first, from DVC's graph: every stage, or the targets
    and their upstream (only the targets with ``single_item``)."""
    from dvc.repo.reproduce import plan_repro

    from stockcast.errors import StockcastError

    graph = repo.index.graph
    by_name = {stage.addressing: stage for stage in graph}
    if unknown := sorted(set(targets or []) - set(by_name)):
        raise StockcastError(f"unknown stage(s) {unknown}; dvc.yaml has {sorted(by_name)}")
    if single_item and targets:
        order = [s.addressing for s in plan_repro(graph)]
        return [name for name in order if name in targets]
    chosen = [by_name[t] for t in targets] if targets else None
    return [s.addressing for s in plan_repro(graph, chosen)]


def planned_stages(
    root: Path, targets: list[str] | None = None, force: bool = False, single_item: bool = False
) -> list[str]:
    """What a run would run now: the stale stages (per ``dvc status``) and every stage
    downstream of one, in DVC's order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        order = stage_order(repo, targets, single_item)
        graph = repo.index.graph
        by_name = {stage.addressing: stage for stage in graph}
        stale = {name for name in order if force or repo.status(targets=[name])}
        # edges point from a stage to its upstream: a stage's ancestors are its downstream
        reached = stale | {d.addressing for s in stale for d in nx.ancestors(graph, by_name[s])}
    return [name for name in order if name in reached]


def run_stages(
    root: Path,
    targets: list[str] | None = None,
    force: bool = False,
    single_item: bool = False,
    params: str = DEFAULT_PARAMS,
) -> list[str]:
    """Run the stale stages in this process, as Prefect flows, upstream first.

    DVC judges what is stale (``dvc status`` per stage, after its upstream has run) and
    records what ran (``dvc commit``). A stage that fails is not committed. With a parameters
    file other than ``params.yaml``, DVC's record does not describe the run: every selected
    stage runs and nothing is committed.

    Returns:
        The stages that ran.

    Raises:
        StockcastError: a stage failed (its own message, e.g. the validation report).
    """
    from dvc.repo import Repo

    from flows.stages import stage_flows
    from stockcast.errors import StockcastError
    from stockcast.tracking import prepare_store

    own_params = params == DEFAULT_PARAMS
    flows_by_stage = stage_flows()
    ran = []
    with Repo(str(root)) as repo:
        order = stage_order(repo, targets, single_item)
        warming = None
        try:
            for name in order:
                if own_params and not force and not repo.status(targets=[name]):
                    print(f"Stage '{name}' didn't change, skipping", flush=True)
                    continue
                print(f"Running stage '{name}':\n> python -m flows.stages {name}", flush=True)
                if name == "train" and {"evaluate", "register"} & set(order):
                    store = partial(prepare_store, root) if "register" in order else None
                    warming = preload(AFTER_TRAIN, then=store)
                elif warming is not None:  # done long ago; never two migrations of one store
                    warming.join()
                try:
                    with stage_settings():
                        flows_by_stage[name](params=params)
                except StockcastError as exc:
                    raise StockcastError(f"stockcast {name} stopped:\n{exc}") from exc
                if own_params:
                    repo.commit(target=name, force=True)  # DVC prints "Updating lock file"
                ran.append(name)
        finally:  # a failed stage waits for a store's migrations to end, never cuts them
            if warming is not None:
                warming.join()
    if not own_params:
        print(f"ran with {params}: dvc.lock was left as it was (it records params.yaml runs)")
    return ran


def stage_settings() -> Any:
    """Prefect settings for a stage's flow run inside the pipeline flow run: no heartbeat.

    A flow run's heartbeat thread sleeps in 1 s steps, and the run's end waits for it to
    wake: about 1 s at the end of every flow run, 8 s over a default run's stage flows. A
    stage flow runs in the pipeline flow run's process, whose own heartbeat goes on, and
    ``mark_orphans`` marks Crashed whatever a dead process left Running.
    """
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})


# What validate and drift import (4-5 s): in the background once the run's other imports
# are done, while a first run's server is still migrating its database and ingest runs.
BEFORE_VALIDATE = ("great_expectations", "great_expectations.expectations", "scipy.stats")
# What evaluate and register import that training does not: imported while the fits run
# (they spend their time in TensorFlow's kernels, outside the GIL), not after them, when
# nothing else would run: about 4 s of wall.
AFTER_TRAIN = (
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "mlflow",
    "mlflow.data",
    "mlflow.models",
    "mlflow.pyfunc",
)


def preload(modules: tuple[str, ...], then: Callable[[], object] | None = None) -> threading.Thread:
    """Import ``modules`` in a background thread (Python's import locks make a module's
    import wait for one already under way, so a stage needing one meanwhile is safe), then
    call ``then``. A module that fails to import, or a ``then`` that fails, is left for the
    stage that needs it to report."""

    def load() -> None:
        for module in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(module)
        if then is not None:
            with contextlib.suppress(Exception):
                then()

    thread = threading.Thread(target=load, name="stockcast-preload", daemon=True)
    thread.start()
    return thread


def _apprise(env_name: str | None, code: int, elapsed: float) -> None:
    from stockcast.ops import notify

    body = f"make pipeline in {Path.cwd()} failed with exit code {code} after {elapsed:.0f} s"
    try:
        sent = notify(env_name, "stockcast: make pipeline FAILED", body)
        if sent:
            print(f"failure notice sent to {sent} Apprise URL(s) in ${env_name}")
    except Exception as exc:  # noqa: BLE001 - the notice must never hide the failure
        print(f"could not send the failure notice: {exc}", file=sys.stderr)


def _notify(url: str, code: int, elapsed: float) -> None:
    from stockcast.ops import post_webhook

    payload = {"flow": "make pipeline", "state": "FAILED", "exit_code": code, "seconds": elapsed}
    payload["project"] = str(Path.cwd())
    try:
        print(f"failure posted to the webhook (HTTP {post_webhook(url, payload)})")
    except Exception as exc:  # noqa: BLE001 - the hook must never hide the failure
        print(f"could not post to the webhook {url}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    from flows.env import exit_now

    exit_now(main())
