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


def stage_flows() -> dict[str, Any]:
    """Stage name -> its flow (imports every stage's flow module)."""
    from flows.env import plain_errors
    from flows.stages import drift, evaluate, ingest, register, train, validate, window

    plain_errors()
    modules = (ingest, validate, drift, window, train, evaluate, register)
    return {m.__name__.rsplit(".", 1)[-1]: m.flow_ for m in modules}


@contextmanager
def untagged() -> Iterator[None]:
    """Task runs started inside carry no tags; the flow runs keep the project's tag, by which
    ``mark_orphans`` finds them.

    Before a tagged task run starts, Prefect asks the server for a concurrency slot of each of
    its tags, even when no tag has a limit (the answer is cached for 5 s). Before the first
    fits of a run that request took 1.7-2.2 s in four runs of six (0.02 s in the other two),
    and the fits waited for it.
    """
    from prefect.context import TagsContext

    with TagsContext(current_tags=set()):
        yield
