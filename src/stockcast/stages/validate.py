"""Stage validate: the Great Expectations gate."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from stockcast.config import Config
from stockcast.errors import ValidationFailed
from stockcast.paths import Paths, read_json, write_parquet
from stockcast.validate import validate_prices
from stockcast.validation_report import ValidationReport


def run(
    cfg: Config,
    paths: Paths,
    today: pd.Timestamp | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Publish the ingested table as ``data/interim/validated.parquet`` if it passes.

    On failure (``on_failure: stop``, or every ticker failing) :class:`ValidationFailed` is
    raised and the last validated table stays as it was; with ``skip_ticker`` the failing
    tickers are left out instead.
    """
    frame = pd.read_parquet(paths.ingested)
    v = cfg.validate
    ingested = read_json(paths.ingest_report) if paths.ingest_report.exists() else {}
    report = validate_prices(
        frame,
        cfg.min_rows,
        paths.validation_reports,
        today,
        v.max_daily_move,
        v.max_gap_days,
        sources=ingested.get("sources", {}),
        rows_needed=cfg.rows_needed(),
        absent=ingested.get("absent", {}),
        progress=progress,
    )
    failed = report.failed_tickers
    if failed and (v.on_failure == "stop" or len(failed) == frame["ticker"].nunique()):
        raise ValidationFailed(f"validation failed for {failed}\n{report.summary()}")
    write_parquet(frame[~frame["ticker"].isin(failed)], paths.validated)
    return report
