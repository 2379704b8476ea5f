"""``python -m flows.stages STAGE [--params FILE]``: one stage, as ``dvc repro`` runs it.

Run by ``stockcast run -S KEY=VALUE`` (a DVC experiment: ``dvc exp run`` starts one process
per stage), the stage's flow run is a subflow of that run's ``pipeline`` flow run, named by
``STOCKCAST_PIPELINE_RUN``, as the stages of an in-process run are.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from flows.stages import PIPELINE_RUN, stage_flows


def main(argv: list[str] | None = None) -> int:
    flows = stage_flows()
    parser = argparse.ArgumentParser(prog="python -m flows.stages", description=__doc__)
    parser.add_argument("stage", choices=list(flows), help="the dvc.yaml stage to run")
    parser.add_argument("--params", default="params.yaml", help="the parameters file")
    args = parser.parse_args(argv)
    from stockcast.errors import StockcastError

    try:
        if parent := os.environ.get(PIPELINE_RUN):
            run_as_subflow(flows[args.stage], parent, {"params": args.params})
        else:
            flows[args.stage](params=args.params)
    except StockcastError as exc:
        print(f"\nstockcast {args.stage} stopped:\n{exc}", file=sys.stderr)
        return 1
    return 0


def run_as_subflow(flow: Any, parent: str, parameters: dict[str, Any]) -> Any:
    """Run ``flow`` as a subflow of the flow run ``parent`` (of another process): the task
    run that stands for it in the parent, then its flow run under that task run, which is
    how Prefect links a subflow called in-process. Its result, or its exception, as a
    direct call gives."""
    from uuid import UUID, uuid4

    from prefect import Task
    from prefect.client.orchestration import get_client
    from prefect.context import TagsContext
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    tracker = Task(name=flow.name, fn=flow.fn, version=flow.version)
    with get_client(sync_client=True) as client:
        task_run = client.create_task_run(
            tracker, UUID(parent), dynamic_key=uuid4().hex, name=flow.name
        )
        flow_run = client.create_flow_run(
            flow,
            parameters=flow.serialize_parameters(parameters),
            state=Pending(),
            parent_task_run_id=task_run.id,
            tags=TagsContext.get().current_tags | set(client.read_flow_run(UUID(parent)).tags),
        )
    return run_flow(flow, flow_run=flow_run, parameters=parameters)


if __name__ == "__main__":
    from flows.env import exit_now

    exit_now(main())
