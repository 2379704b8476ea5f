"""Process environment defaults, applied before Prefect, MLflow, GX or TensorFlow load, and
the commands' quick exit.

Nothing may phone home: every library's telemetry is off unless the user says otherwise.
"""

from __future__ import annotations

import logging
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


class PlainStockcastErrors(logging.Filter):
    """Prefect logs a failing flow or task run's exception with its traceback. Our own
    errors (:class:`stockcast.errors.StockcastError`) already say what went wrong, which
    file, row or store, and the command prints them whole once at its end: their records
    keep one line and lose the traceback, unless ``STOCKCAST_DEBUG`` is set."""

    def filter(self, record: logging.LogRecord) -> bool:
        from stockcast.errors import StockcastError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, StockcastError) and not os.environ.get("STOCKCAST_DEBUG"):
            lines = str(exc).strip().splitlines() or [""]
            # "stockcast register stopped:" heads a stage's error: its next line says why
            first = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
            record.msg, record.args = "stopped: %s: %s", (type(exc).__name__, first)
            record.exc_info, record.exc_text = None, None
        return True


_PLAIN = PlainStockcastErrors()


def plain_errors() -> None:
    """Install :class:`PlainStockcastErrors` on Prefect's run loggers (once)."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if _PLAIN not in logger.filters:
            logger.addFilter(_PLAIN)


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
