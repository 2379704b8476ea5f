"""One Prefect flow per DVC stage, one module each, so ``dvc.yaml`` can name exactly the
flow that shapes a stage's outputs. ``python -m flows.stages STAGE`` is each stage's command.

Each flow loads the config once, calls ``stockcast.stages.<stage>.run`` and logs what it did.
"""

from __future__ import annotations

from typing import Any

import flows.env  # noqa: F401  (telemetry off before the libraries load)


def stage_flows() -> dict[str, Any]:
    """Stage name -> its flow (imports every stage's flow module)."""
    from flows.stages import drift, evaluate, ingest, register, train, validate, window

    modules = (ingest, validate, drift, window, train, evaluate, register)
    return {m.__name__.rsplit(".", 1)[-1]: m.flow_ for m in modules}
