"""The register stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from flows.stages import untagged
from stockcast import leaderboard
from stockcast.config import Config, load_config
from stockcast.paths import Paths
from stockcast.stages import register


@task(name="register")
def register_task(cfg: Config, paths: Paths, tags: dict[str, str]) -> dict:
    """Not retried as a whole: a retry would log a second parent run. Each request to a
    tracking server is retried on a transient fault (``stockcast.store``)."""
    return register.run(cfg, paths, tags, get_run_logger().info)


@flow(name="register")
def flow_(params: str = "params.yaml") -> dict:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    with untagged():
        decisions = register_task(cfg, paths, {"prefect_flow_run_id": str(flow_run.get_id())})
    logger = get_run_logger()
    for ticker, d in decisions.items():
        logger.info(leaderboard.decision_line(ticker, d))
    return decisions
