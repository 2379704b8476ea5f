"""Stage ingest: every configured source -> one canonical table."""

from __future__ import annotations

from pathlib import Path

from stockcast import sources
from stockcast.config import Config
from stockcast.ingest import IngestResult, combine
from stockcast.paths import Paths, write_json, write_parquet


def read_sources(cfg: Config, root: Path) -> IngestResult:
    """Every source (files, folders, globs, URLs) as one canonical table, in memory."""
    d = cfg.data
    results = [
        r
        for s in d.sources
        for r in sources.load(s, root, d.date_order, d.fetch_timeout, d.fetch_retries)
    ]
    return combine(results, d.tickers)


def run(cfg: Config, paths: Paths) -> IngestResult:
    """Write ``data/interim/ingested.parquet`` and the repairs made on the way in."""
    result = read_sources(cfg, paths.root)
    write_parquet(result.frame, paths.ingested)
    tickers = sorted(result.frame["ticker"].unique())
    write_json(
        paths.ingest_report,
        {
            "rows": len(result.frame),
            "tickers": tickers,
            "repairs": result.repairs,
            "sources": sources.shown(result.origin, paths.root),
            "absent": result.absent,
        },
    )
    return result
