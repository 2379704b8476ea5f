"""The ingest stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from stockcast.config import load_config
from stockcast.paths import Paths
from stockcast.stages import ingest


@flow(name="ingest")
def flow_(params: str = "params.yaml") -> int:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    result = ingest.run(cfg, paths)
    logger = get_run_logger()
    for repair in result.repairs:
        logger.info("repair: %s", repair)
    tickers = sorted(result.frame["ticker"].unique())
    logger.info("ingested %d rows for %s", len(result.frame), tickers)
    return len(result.frame)
