"""Process environment defaults, applied before Prefect, MLflow, GX or TensorFlow load.

Nothing may phone home: every library's telemetry is off unless the user says otherwise.
"""

from __future__ import annotations

import os

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


apply_defaults()
