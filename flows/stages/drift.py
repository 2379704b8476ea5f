"""The drift stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from stockcast.config import load_config
from stockcast.paths import Paths
from stockcast.stages import drift


@flow(name="drift")
def flow_(params: str = "params.yaml") -> dict:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    report = drift.run(cfg, paths)
    logger = get_run_logger()
    for d in report["tickers"]:
        (logger.warning if d["drift"] else logger.info)(
            "%s drift=%s: KS p=%.4g, Levene p=%.4g, volatility x%.2f (last %d vs %d returns)",
            d["ticker"],
            d["drift"],
            d["ks_p_value"],
            d["levene_p_value"],
            d["volatility_ratio"],
            d["recent_days"],
            d["reference_days"],
        )
    return report
