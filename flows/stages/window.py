"""The window stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from stockcast.config import load_config
from stockcast.paths import Paths
from stockcast.stages import window


@flow(name="window")
def flow_(params: str = "params.yaml") -> dict[str, int]:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    counts = {ws.ticker: len(ws.train_idx) for ws in window.run(cfg, paths)}
    get_run_logger().info("training windows per ticker: %s", counts)
    return counts
