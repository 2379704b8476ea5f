"""Stage drift: the newest returns against the training span, per ticker."""

from __future__ import annotations

from typing import Any

import pandas as pd

from stockcast.config import Config
from stockcast.drift import detect_drift, drift_report
from stockcast.paths import Paths, write_json


def run(cfg: Config, paths: Paths) -> dict[str, Any]:
    """Write ``reports/drift.json``: recorded on every run; ``drift.on_drift`` decides in the
    ``retrain`` flow whether drift triggers retraining or is only a warning."""
    frame = pd.read_parquet(paths.validated)
    report = drift_report(detect_drift(frame, cfg.data.target, cfg))
    report["newest_day"] = {
        str(t): pd.Timestamp(d).date().isoformat()
        for t, d in frame.groupby("ticker")["date"].max().items()
    }
    write_json(paths.drift, report)
    return report
