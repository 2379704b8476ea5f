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
        for name, c in report.candidates.items():
            bt = c.on("backtest")
            logger.info(
                "%s/%s (%s): test_rmse %.3f = %.4fx %s (DM p=%.3g); backtest %.4fx %s",
                ticker,
                name,
                c.kind,
                c.test.rmse,
                c.test.rmse_vs_best_baseline,
                c.test.best_baseline,
                c.test.dm_p_value,
                bt.rmse_vs_best_baseline,
                bt.best_baseline or "-",
            )
    return reports
