"""Process environment defaults, applied before Prefect, MLflow, GX or TensorFlow load, and
the commands' quick exit.

Nothing may phone home: every library's telemetry is off unless the user says otherwise.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import NoReturn

DEFAULTS = {
    "DO_NOT_TRACK": "1",  # Prefect client telemetry
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


def apply_defaults() -> None:
    """Set each default unless the environment already has a value."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


def exit_now(code: int) -> NoReturn:
    """End a command's process once its work is done: the first steps of a normal exit, then
    none of the interpreter's teardown of every module it loaded.

    A normal exit first waits for the non-daemon threads and runs ``threading``'s exit hooks
    (Prefect drains its queued log lines and events there), then the ``atexit`` handlers
    (logging's flush among them): so does this, with the same two calls ``Py_FinalizeEx``
    makes. The teardown after them frees TensorFlow's, MLflow's and GX's objects one by one,
    with nothing left to write: 2.7 s after a pipeline run had printed its last line.
    """
    import atexit

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


apply_defaults()
