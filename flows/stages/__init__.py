"""One Prefect flow per DVC stage, one module each, so ``dvc.yaml`` can name exactly the
flow that shapes a stage's outputs. ``python -m flows.stages STAGE`` is each stage's command.

Each flow loads the config once, calls ``stockcast.stages.<stage>.run`` and logs what it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import flows.env  # noqa: F401  (telemetry off before the libraries load)

# the environment variable naming the pipeline flow run a stage's process belongs to (a DVC
# experiment's stages: ``python -m flows.stages``)
PIPELINE_RUN = "STOCKCAST_PIPELINE_RUN"


# dvc.yaml's stages, upstream first: each has its module here
STAGES = ("ingest", "validate", "drift", "window", "train", "evaluate", "register")


def stage_flows() -> dict[str, Any]:
    """Stage name -> its flow (imports every stage's flow module)."""
    return {name: stage_flow(name) for name in STAGES}


def stage_flow(stage: str) -> Any:
    """One stage's flow, importing that stage's module only."""
    import importlib

    from flows.env import plain_errors

    plain_errors()
    return importlib.import_module(f"flows.stages.{stage}").flow_


@contextmanager
def untagged() -> Iterator[None]:
    """Task runs started inside carry no tags; the flow runs keep the project's tag, by which
    ``mark_orphans`` finds them.

    Before a tagged task run starts, Prefect asks the server for a concurrency slot of each of
    its tags, even when no tag has a limit (the answer is cached for 5 s). A server on SQLite
    that is writing the run's events at that moment answers 503 ("database is locked", the
    server's log says with ``PREFECT_API_LOG_RETRYABLE_ERRORS=true``) and the client retries
    after about 2 s: before the first fits of a run in four runs of six, and before the daily
    job's ledger tasks (2.3 s and 1.8 s of one 32 s day).
    """
    from prefect.context import TagsContext

    with TagsContext(current_tags=set()):
        yield
