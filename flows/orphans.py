"""What a dead run left behind, cleared by the next run under the project's lock: its flow
runs still Running (marked Crashed) and its MLflow runs still RUNNING (ended); the tag by
which this project's flow runs are told from another project's on a shared server."""

from __future__ import annotations

from pathlib import Path


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
