"""Stage ingest: every configured source -> one canonical table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast import sources
from stockcast.config import Config
from stockcast.ingest import IngestResult, combine
from stockcast.paths import Paths, write_json, write_parquet


def refresh_providers(
    cfg: Config,
    root: Path,
    track: Callable[[Path], None] | None = None,
    log: Callable[[str], None] = print,
    today: pd.Timestamp | None = None,
) -> list[Any]:
    """Bring every provider source's raw file up to date (:func:`stockcast.providers.update`)
    before the sources are read; ``track`` records a file that grew (``dvc add``)."""
    from stockcast import providers

    today = today or pd.Timestamp.now().normalize()
    done = []
    for s in cfg.data.sources:
        if s.provider is None:
            continue
        path = root / s.path
        result = providers.update(
            path,
            s.provider,
            str(s.symbol or s.ticker),
            s.first_day,
            today,
            cfg.data.fetch_retries,
        )
        for revision in result.revised:
            log(f"warning: {revision}")
        log(
            f"{s.provider}:{s.symbol or s.ticker}: {result.added} new day(s) into {s.path}"
            + (f", newest {result.newest}" if result.newest else "")
        )
        if result.added and track is not None:
            track(path)
        done.append(result)
    return done


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
