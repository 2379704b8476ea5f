"""The evaluate stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from stockcast.config import load_config
from stockcast.paths import Paths
from stockcast.scores import TickerReport
from stockcast.stages import evaluate


@flow(name="evaluate")
def flow_(params: str = "params.yaml") -> dict[str, TickerReport]:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    reports = evaluate.run(cfg, paths)
    logger = get_run_logger()
    for ticker, report in reports.items():
        for c in report.candidates.values():
            logger.info("%s", c.line(ticker))
    return reports
