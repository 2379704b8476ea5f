"""Imports a run needs later, made while it waits on something else: the stage flows and
TensorFlow while the Prefect server starts, the gate's libraries while ingest runs, MLflow and
matplotlib while the networks fit."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable

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


def import_stages(url: str, tensorflow: bool = True) -> None:
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
