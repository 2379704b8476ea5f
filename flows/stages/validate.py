"""The validate stage's flow: a failure is also recorded as a FAILED MLflow run."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from stockcast.config import load_config
from stockcast.errors import ValidationFailed
from stockcast.paths import Paths
from stockcast.stages import validate


@flow(name="validate")
def flow_(params: str = "params.yaml") -> bool:
    cfg, paths = load_config(Path.cwd() / params), Paths(Path.cwd())
    try:
        report = validate.run(cfg, paths, progress=get_run_logger().info)
    except ValidationFailed as exc:  # keep the report beside the other runs in MLflow
        from stockcast.lineage import lineage_tags
        from stockcast.tracking import log_failed_validation

        tags = {**lineage_tags(cfg, paths.root), "prefect_flow_run_id": str(flow_run.get_id())}
        try:
            run_id = log_failed_validation(
                paths.root, cfg.register.experiment, paths.validation_reports, exc.report, tags
            )
        except Exception as store_error:  # noqa: BLE001 - never hide the data's failure
            run_id = f"not recorded: {str(store_error).splitlines()[0][:200]}"
        get_run_logger().error("validation failed (MLflow run %s):\n%s", run_id, exc.report)
        raise
    get_run_logger().info("validation:\n%s", report.summary())
    return report.success
