"""One Prefect flow per DVC stage; ``python -m flows.stages STAGE`` is each stage's command.

Each flow loads the config once, calls the pure stage in ``stockcast.pipeline`` and passes
results on. Training submits one task per (ticker, variant) so variants run in parallel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

import flows.env  # noqa: F401  (telemetry off before the libraries load)
from stockcast import pipeline
from stockcast.config import Config, TrainConfig, load_config
from stockcast.errors import StockcastError, ValidationFailed
from stockcast.pipeline import Paths
from stockcast.train import TrainResult

ROOT = Path.cwd()
# The fit stops itself at train.timeout_seconds (a Keras callback, reliable in any runner);
# the task timeout is a backstop for a task stuck outside the fit (loading, saving).
TASK_TIMEOUT_MARGIN = 300


@flow(name="ingest")
def ingest_flow(params: str = "params.yaml") -> int:
    cfg, paths = _setup(params)
    result = pipeline.ingest(cfg, paths)
    logger = get_run_logger()
    for repair in result.repairs:
        logger.info("repair: %s", repair)
    logger.info(
        "ingested %d rows for %s", len(result.frame), sorted(result.frame["ticker"].unique())
    )
    return len(result.frame)


@flow(name="validate")
def validate_flow(params: str = "params.yaml") -> bool:
    cfg, paths = _setup(params)
    try:
        report = pipeline.validate(cfg, paths)
    except ValidationFailed as exc:  # keep the report beside the other runs in MLflow
        from stockcast.tracking import lineage_tags, log_failed_validation

        run_id = log_failed_validation(
            paths.root,
            cfg.register.experiment,
            paths.validation_reports,
            exc.report,
            {
                **lineage_tags(cfg, paths.root),
                "prefect_flow_run_id": str(flow_run.get_id()),
            },
        )
        get_run_logger().error("validation failed (MLflow run %s):\n%s", run_id, exc.report)
        raise
    get_run_logger().info("validation:\n%s", report.summary())
    return report.success


@flow(name="drift")
def drift_flow(params: str = "params.yaml") -> dict:
    cfg, paths = _setup(params)
    report = pipeline.drift(cfg, paths)
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


@flow(name="window")
def window_flow(params: str = "params.yaml") -> dict[str, int]:
    cfg, paths = _setup(params)
    sets = pipeline.window(cfg, paths)
    counts = {ws.ticker: len(ws.train_idx) for ws in sets}
    get_run_logger().info("training windows per ticker: %s", counts)
    return counts


@task(name="fit-variant", task_run_name="fit-{ticker}-{variant}-{fold}")
def fit_task(
    file: str, ticker: str, variant: str, fold: int, cfg: TrainConfig, seed: int, out_dir: str
) -> TrainResult:
    """Train one variant on one window set (fold 0: the main model); a thread or a process."""
    from stockcast.train import fit_variant
    from stockcast.windows import WindowSet

    result = fit_variant(WindowSet.load(Path(file)), variant, cfg, seed, Path(out_dir))
    result.fold = fold
    return result


def task_runner(cfg: TrainConfig) -> Any:
    """The task runner ``train.runner`` names.

    ``dask`` connects to ``train.dask_address`` when given; otherwise it starts a
    ``LocalCluster`` of ``max_workers`` single-threaded worker processes (TensorFlow uses the
    cores of its own process, so more threads per worker only contend).
    """
    if cfg.runner == "processes":
        return ProcessPoolTaskRunner(max_workers=cfg.max_workers)
    if cfg.runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": cfg.max_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        },
    )


@task(name="fit-global", task_run_name="fit-global-{variant}-{fold}")
def fit_global_task(
    files: list[str], variant: str, fold: int, cfg: TrainConfig, seed: int, out_dir: str
) -> TrainResult:
    """Train one variant on every ticker's windows at once (``train.scope: global``)."""
    from stockcast.train import StackedWindows, fit_variant
    from stockcast.windows import WindowSet

    stacked = StackedWindows.stack([WindowSet.load(Path(f)) for f in files])
    result = fit_variant(stacked, variant, cfg, seed, Path(out_dir))
    result.fold = fold
    return result


@flow(name="train")
def train_flow(params: str = "params.yaml") -> dict[str, list[str]]:
    cfg, paths = _setup(params)
    return _train.with_options(task_runner=task_runner(cfg.train))(cfg, paths)


@flow(name="train-variants")
def _train(cfg: Config, paths: Paths) -> dict[str, list[str]]:
    """Every (ticker, variant, fold) as its own task: fold 0 is the model that may be
    registered, folds 1..K the walk-forward backtest. A failure is recorded, never fatal,
    unless every main variant of a ticker fails."""
    from stockcast.windows import read_manifest

    manifest = read_manifest(paths.processed)
    jobs = {}
    if cfg.train.scope == "global":
        fit = fit_global_task.with_options(
            timeout_seconds=cfg.train.timeout_seconds + TASK_TIMEOUT_MARGIN
        )
        folds = min(len(entry.get("folds", [])) for entry in manifest.values())
        for variant in cfg.train.variants:
            for fold in range(folds + 1):
                files = [
                    str(paths.processed / (e["file"] if fold == 0 else e["folds"][fold - 1]))
                    for e in manifest.values()
                ]
                out = paths.models / "_global" / variant / (f"fold{fold}" if fold else "")
                jobs[("_global", variant, fold)] = fit.submit(
                    files, variant, fold, cfg.train, cfg.seed, str(out)
                )
    else:
        fit = fit_task.with_options(timeout_seconds=cfg.train.timeout_seconds + TASK_TIMEOUT_MARGIN)
        for ticker, entry in manifest.items():
            files = [entry["file"], *entry.get("folds", [])]
            for variant in cfg.train.variants:
                for fold, name in enumerate(files):
                    out = paths.variant_dir(ticker, variant) / (f"fold{fold}" if fold else "")
                    jobs[(ticker, variant, fold)] = fit.submit(
                        str(paths.processed / name),
                        ticker,
                        variant,
                        fold,
                        cfg.train,
                        cfg.seed,
                        str(out),
                    )
    wait(list(jobs.values()))
    results = []
    for (ticker, variant, fold), future in jobs.items():
        if future.state.is_completed():
            results.append(future.result())
        else:  # the task itself failed (worker died, folder unwritable...): record it too
            message = future.state.message or future.state.name
            results.append(TrainResult(ticker, variant, fold=fold, error=f"task failed: {message}"))
    if cfg.train.scope == "global":  # every ticker gets the shared model, with its own scaling
        results = pipeline.share_global_models(results, list(manifest), paths)
    summary = pipeline.write_train_summary(results, paths)
    logger = get_run_logger()
    for r in results:
        if r.ok:
            logger.info(
                "%s/%s fold %d: best val_loss %.6f at epoch %d of %d (%.1f s)",
                r.ticker,
                r.variant,
                r.fold,
                r.best_val_loss,
                r.best_epoch,
                r.epochs_run,
                r.fit_seconds,
            )
        else:
            logger.error("%s/%s fold %d failed: %s", r.ticker, r.variant, r.fold, r.error)
    trained = {t: [v for v, r in variants.items() if r.ok] for t, variants in summary.items()}
    if empty := [t for t, variants in trained.items() if not variants]:
        raise StockcastError(f"every variant failed for {empty}; see {paths.train_summary}")
    return trained


@flow(name="evaluate")
def evaluate_flow(params: str = "params.yaml") -> dict:
    cfg, paths = _setup(params)
    report = pipeline.evaluate(cfg, paths)
    logger = get_run_logger()
    for ticker, candidates in report.items():
        for name, scores in candidates.items():
            if "test_rmse" in scores:
                logger.info(
                    "%s/%s (%s): test_rmse %.3f = %.4fx %s (DM p=%.3g); backtest %.4fx %s",
                    ticker,
                    name,
                    scores["kind"],
                    scores["test_rmse"],
                    scores["test_rmse_vs_best_baseline"],
                    scores["test_best_baseline"],
                    scores["test_dm_p_value"],
                    scores.get("backtest_rmse_vs_best_baseline", float("nan")),
                    scores.get("backtest_best_baseline", "-"),
                )
    return report


@task(name="register")
def register_task(cfg: Config, paths: Paths, tags: dict[str, str]) -> dict:
    """Not retried here: a retry would log a second parent run. MLflow's own HTTP client
    already retries transient errors against a tracking server."""
    return pipeline.register(cfg, paths, tags)


@flow(name="register")
def register_flow(params: str = "params.yaml") -> dict:
    cfg, paths = _setup(params)
    decisions = register_task(cfg, paths, {"prefect_flow_run_id": str(flow_run.get_id())})
    logger = get_run_logger()
    for ticker, decision in decisions.items():
        logger.info("%s: %s", ticker, decision)
    return decisions


STAGES = {
    "ingest": ingest_flow,
    "validate": validate_flow,
    "drift": drift_flow,
    "window": window_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
    "register": register_flow,
}


def _setup(params: str) -> tuple[Config, Paths]:
    return load_config(ROOT / params), Paths(ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.stages", description=__doc__)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        STAGES[args.stage](params=args.params)
    except StockcastError as exc:
        print(f"\nstockcast {args.stage} stopped:\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
