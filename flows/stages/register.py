"""The register stage's flow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from flows.stages import untagged
from stockcast.config import Config, load_config
from stockcast.paths import Paths
from stockcast.stages import register


@task(name="register")
def register_task(cfg: Config, paths: Paths, tags: dict[str, str]) -> dict:
    """Not retried here: a retry would log a second parent run. MLflow's own HTTP client
    already retries transient errors against a tracking server."""
    return register.run(cfg, paths, tags, get_run_logger().info)


@flow(name="register")
def flow_(params: str = "params.yaml") -> dict:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    with untagged():
        decisions = register_task(cfg, paths, {"prefect_flow_run_id": str(flow_run.get_id())})
    logger = get_run_logger()
    for ticker, decision in decisions.items():
        logger.info("%s: %s", ticker, decision)
    return decisions
