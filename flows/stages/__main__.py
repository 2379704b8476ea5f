"""``python -m flows.stages STAGE [--params FILE]``: one stage, as ``dvc repro`` runs it.

Run by ``stockcast run -S KEY=VALUE`` (a DVC experiment: ``dvc exp run`` starts one process
per stage), the stage's flow run is a subflow of that run's ``pipeline`` flow run, named by
``STOCKCAST_PIPELINE_RUN``, as the stages of an in-process run are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from flows.stages import PIPELINE_RUN, STAGES, stage_flow, stage_flows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.stages", description=__doc__)
    parser.add_argument("stage", choices=STAGES, help="the dvc.yaml stage to run")
    parser.add_argument("--params", default="params.yaml", help="the parameters file")
    parser.add_argument(
        "--when-told",
        metavar="FILE",
        help="started ahead by a run in another process (flows.plan.StageAhead): get ready, "
        "then wait for a line on stdin (the run's STOCKCAST_* variables as JSON; an empty "
        "line or the end of stdin: exit without running); a failure's message goes to FILE",
    )
    args = parser.parse_args(argv)
    if args.when_told:
        return when_told(args.stage, args.params, sys.stdin, Path(args.when_told))
    return _run(stage_flows()[args.stage], args.stage, args.params)


def when_told(stage: str, params: str, told: TextIO, error_file: Path) -> int:
    """A stage started ahead of the run that needs it (``flows.plan.StageAhead``): get ready
    (:func:`_get_ready`), then wait for a line on ``told``: the run's ``STOCKCAST_*``
    variables as JSON, its flow run's id among them, and run the stage as its subflow; an
    empty line or the end of ``told``: exit without running. A failure's message is
    written to ``error_file``. Returns the exit code."""
    flow = stage_flow(stage)
    prepared = _get_ready(stage, params)
    line = told.readline().strip()
    if not line:
        return 0
    _take_environment(json.loads(line))
    print(f"stockcast {stage}: started ahead ({prepared})", flush=True)
    from flows.plan import stage_settings

    with stage_settings():
        return _run(flow, stage, params, error_file)


def _run(flow: Any, stage: str, params: str, error_file: Path | None = None) -> int:
    from stockcast.errors import StockcastError

    try:
        if parent := os.environ.get(PIPELINE_RUN):
            run_as_subflow(flow, parent, {"params": params})
        else:
            flow(params=params)
    except StockcastError as exc:
        print(f"\nstockcast {stage} stopped:\n{exc}", file=sys.stderr)
        if error_file is not None:
            error_file.write_text(str(exc), encoding="utf-8")
        return 1
    return 0


def _get_ready(stage: str, params: str) -> str:
    """What a stage can do before its inputs exist: the train stage imports TensorFlow and
    builds and traces the networks the windows on disk call for
    (:func:`stockcast.train.prepare_networks`). Says what it did."""
    if stage != "train":
        return "nothing to prepare"
    from stockcast.config import load_config
    from stockcast.paths import Paths
    from stockcast.stages.train import network_specs
    from stockcast.train import prepare_networks

    try:
        cfg = load_config(Path.cwd() / params)
        if cfg.execution.runner != "threads":  # the fits run in other processes
            return "its fits run in other processes: nothing prepared"
        specs = network_specs(cfg, Paths(Path.cwd()))
        count = prepare_networks(specs, cfg.train.batch_size)
    except Exception as exc:  # noqa: BLE001 - the stage builds its networks itself
        return f"nothing prepared: {type(exc).__name__}: {exc}"
    return f"{count} network(s) built and traced while the stages before it ran"


def _take_environment(values: dict[str, str]) -> None:
    """The run's ``STOCKCAST_*`` variables as they are when it reaches this stage (a reason
    to start cold, set after this process started; the flow run it is a subflow of)."""
    for name in [n for n in os.environ if n.startswith("STOCKCAST_")]:
        if name not in values:
            del os.environ[name]
    os.environ.update(values)


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
