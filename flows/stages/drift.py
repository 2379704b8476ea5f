"""The drift stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from stockcast.config import load_config
from stockcast.drift import log_lines
from stockcast.paths import Paths
from stockcast.stages import drift


@flow(name="drift")
def flow_(params: str = "params.yaml") -> dict:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    report = drift.run(cfg, paths)
    logger = get_run_logger()
    for line, drifted in log_lines(report, cfg.drift.p_value):
        (logger.warning if drifted else logger.info)(line)
    return report
