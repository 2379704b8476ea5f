"""MLflow boundary: log the pipeline run, register the best variant, promote ``@champion``.

The promotion rule lives here and only here (see :func:`decide_promotion`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stockcast.config import Config
from stockcast.train import TrainResult
from stockcast.windows import WindowSet

CHAMPION = "champion"


def tracking_uri(project_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root.resolve()}/mlflow.db"


def ensure_experiment(client: Any, name: str, project_root: Path) -> str:
    """The experiment's id, creating it (artifacts under ``mlruns/`` for the local store)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (project_root.resolve() / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=location)


# What a run writes into tracked files itself: DVC's record of the stages and the
# .gitignore entries DVC adds for their outputs. Changes there do not make the code dirty.
RUN_WRITTEN = (":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")


def git_revision(root: Path) -> tuple[str, bool]:
    """The commit checked out at ``root`` and whether tracked files differ from it.

    ``dvc.lock`` and ``.gitignore`` files are left out of "dirty": the pipeline run being
    recorded writes them itself (its data hashes are tagged separately).
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *RUN_WRITTEN],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sha, bool(dirty.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


@dataclass
class Decision:
    """Whether a candidate becomes champion, and why."""

    promote: bool
    reason: str
    candidate_rmse: float
    champion_rmse: float | None = None
    previous_version: str | None = None


def select_variant(rmse_vs_naive: dict[str, float], val_loss: dict[str, float | None]) -> str:
    """The variant to register: the lowest RMSE/naive in prices on the selection span.

    The selection span is the backtest folds (mean over folds) or, without folds, the
    validation span; never the test span. Prices, not the scaled training loss, because the
    loss of a log-return model and the loss of a level model are not on one scale. A variant
    without a finite score (a failed fold) ranks after every scored one, by validation loss.

    Args:
        rmse_vs_naive: per variant, its RMSE divided by naive's on the selection span.
        val_loss: per variant, its best validation loss (the tie-breaker and fallback).
    """
    import math

    def rank(variant: str) -> tuple[int, float, float]:
        score = rmse_vs_naive.get(variant, float("nan"))
        loss = val_loss.get(variant)
        loss = float("inf") if loss is None or math.isnan(loss) else loss
        return (0, score, loss) if math.isfinite(score) else (1, 0.0, loss)

    return min(val_loss, key=rank)


def decide_promotion(
    candidate_rmse: float,
    champion_rmse: float | None,
    gate: dict[str, float],
    max_mase: float | None,
    max_rmse_vs_naive: float | None,
    previous_version: str | None = None,
    gate_source: str = "backtest",
) -> Decision:
    """The promotion rule, in one place.

    1. The candidate must beat doing nothing where it was not trained and where selection
       happened: ``gate["mase"] < max_mase`` and ``gate["rmse_vs_naive"] <= max_rmse_vs_naive``
       on the backtest folds (or the validation span without folds). A missing value
       (a failed fold) rejects.
    2. It must beat the current champion, both scored on this run's test span.

    Args:
        candidate_rmse: the candidate's RMSE on this run's test span.
        champion_rmse: the current champion's RMSE on the same targets; None if there is none.
        gate: ``mase`` and ``rmse_vs_naive`` on the gate span.
        max_mase: highest allowed MASE (strictly below); None turns this gate off.
        max_rmse_vs_naive: highest allowed RMSE/naive; None turns this gate off.
        previous_version: the current champion's version, recorded on promotion.
        gate_source: where ``gate`` was measured, for the reason text.
    """
    import math

    def reject(reason: str) -> Decision:
        return Decision(False, reason, candidate_rmse, champion_rmse, previous_version)

    checks = (
        ("mase", max_mase, lambda v, m: v < m, ">="),
        ("rmse_vs_naive", max_rmse_vs_naive, lambda v, m: v <= m, ">"),
    )
    for key, limit, ok, broken in checks:
        if limit is None:
            continue
        value = gate.get(key, float("nan"))
        if math.isnan(value):
            return reject(f"{gate_source} {key} missing (a fold failed?): cannot judge vs naive")
        if not ok(value, limit):
            return reject(f"{gate_source} {key} {value:.4f} {broken} {limit}: no better than naive")
    passed = ", ".join(
        f"{gate_source} {k} {gate.get(k, float('nan')):.4f}" for k in ("mase", "rmse_vs_naive")
    )
    if champion_rmse is None:
        return Decision(True, f"no champion yet; {passed}", candidate_rmse, None, None)
    if candidate_rmse < champion_rmse:
        return Decision(
            True,
            f"test rmse {candidate_rmse:.4f} < champion v{previous_version} "
            f"{champion_rmse:.4f}; {passed}",
            candidate_rmse,
            champion_rmse,
            previous_version,
        )
    return reject(
        f"test rmse {candidate_rmse:.4f} >= champion v{previous_version} "
        f"{champion_rmse:.4f} on the same span"
    )


def flat_params(cfg: Config) -> dict[str, str]:
    """The effective parameters as MLflow params (``section.key`` → string)."""
    out: dict[str, str] = {"base.seed": str(cfg.seed)}
    for section in ("data", "validate", "window", "backtest", "features", "train", "register"):
        for key, value in asdict(getattr(cfg, section)).items():
            out[f"{section}.{key}"] = (
                json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
            )
    return out


def log_variant(
    mlflow: Any,
    ws: WindowSet,
    result: TrainResult,
    metrics: dict[str, float],
    plot: Path | None,
    cfg: Config,
) -> str | None:
    """Log one variant into the active (child) run; returns the logged model's URI."""
    mlflow.log_params(
        {
            "variant": result.variant,
            "ticker": ws.ticker,
            "window": ws.window,
            "units": json.dumps(list(cfg.train.units)),
            "dropout": cfg.train.dropout,
            "learning_rate": cfg.train.learning_rate,
            "batch_size": cfg.train.batch_size,
            "max_epochs": cfg.train.epochs,
            "patience": cfg.train.patience,
            "seed": cfg.seed,
        }
    )
    for key in ("loss", "val_loss"):
        for step, value in enumerate(result.history.get(key, []), start=1):
            mlflow.log_metric(key, value, step=step)
    mlflow.log_metrics(
        {
            **metrics,
            "best_val_loss": result.best_val_loss or float("nan"),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "fit_seconds": result.fit_seconds,
        }
    )
    if plot is not None and plot.exists():
        mlflow.log_artifact(str(plot), artifact_path="plots")
    if result.model_path is None:
        return None
    return log_forecaster(mlflow, Path(result.model_path), ws)


def log_forecaster(mlflow: Any, keras_path: Path, ws: WindowSet) -> str:
    """Log the price-in/price-out pyfunc with signature and input example."""
    import keras
    import pandas as pd
    import tensorflow as tf
    from mlflow.models import infer_signature

    import stockcast
    from stockcast.serving import PriceForecaster

    needed = ws.context
    with tempfile.TemporaryDirectory() as tmp:
        scaler_path = Path(tmp) / "scaler.json"
        spec = {
            **ws.scaler.to_dict(),
            "window": ws.window,
            "transform": ws.transform,
            "target": ws.target,
            "extra_inputs": list(ws.extra_inputs),
            "extra_scalers": [[e.low, e.high] for e in ws.extra_scalers],
        }
        scaler_path.write_text(json.dumps(spec))
        mlflow.log_artifact(str(scaler_path), artifact_path="scaler")
        idx = ws.test_idx[:3]
        example = ws.raw_inputs(idx, needed, bool(ws.extra_inputs))  # raw, as a user has it
        model = keras.saving.load_model(keras_path, compile=False)
        output = ws.to_prices(model.predict(ws.inputs(idx), verbose=0), idx)
        signature = infer_signature(example, output)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PriceForecaster(),
            artifacts={"keras_model": str(keras_path), "scaler": str(scaler_path)},
            code_paths=[str(Path(stockcast.__file__).parent)],
            signature=signature,
            input_example=example,
            metadata={
                "ticker": ws.ticker,
                "window": ws.window,
                "context": needed,
                "transform": ws.transform,
                "extra_inputs": list(ws.extra_inputs),
            },
            pip_requirements=[
                f"tensorflow-cpu=={tf.__version__}",
                f"keras=={keras.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )
    return info.model_uri


def champion_rmse(mlflow: Any, client: Any, name: str, ws: WindowSet) -> tuple[float, str] | None:
    """Score the current champion on this run's test targets; None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window", ws.window)))
    idx = ws.test_idx
    inputs = ws.raw_inputs(idx, needed, bool(meta.get("extra_inputs")))  # champion's layout
    predicted = np.asarray(model.predict(inputs), dtype="float64").reshape(-1)
    from stockcast.evaluate import regression_metrics

    rmse = regression_metrics(ws.prices[idx], predicted)["rmse"]
    return rmse, str(version.version)


def lineage_tags(cfg: Config, root: Path) -> dict[str, str]:
    """Tags tracing a run to its exact code, parameters and data.

    ``git_commit`` / ``git_dirty``, ``params_hash`` (of the effective parameters) and the DVC
    hashes of the datasets in ``dvc.lock`` (``dvc_dataset_md5``, ``dvc_ingested_md5``).
    """
    from stockcast.ops import dvc_lineage

    sha, dirty = git_revision(root)
    return {
        "git_commit": sha,
        "git_dirty": str(dirty),
        "params_hash": cfg.digest(),
        **dvc_lineage(root),
    }


def log_failed_validation(
    project_root: Path,
    experiment: str,
    report_dir: Path,
    message: str,
    tags: dict[str, str] | None = None,
) -> str:
    """Record a run stopped by the validation gate, with its report, as a FAILED MLflow run."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(project_root))
    experiment_id = ensure_experiment(MlflowClient(), experiment, project_root)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name="pipeline", tags={"stage": "validate", **(tags or {})}
    ) as run:
        mlflow.set_tag("error", message[:5000])
        if report_dir.exists():
            mlflow.log_artifacts(str(report_dir), artifact_path="validation")
        mlflow.end_run(status="FAILED")
    return run.info.run_id


def rollback(client: Any, name: str, reason: str) -> tuple[str, str]:
    """Move ``@champion`` back to the version the current champion replaced.

    Returns:
        (the version rolled back from, the version now champion).

    Raises:
        StockcastError: no champion, or the champion records no previous one.
    """
    from mlflow.exceptions import MlflowException

    from stockcast.errors import StockcastError

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise StockcastError(f"{name} has no @{CHAMPION} to roll back") from exc
    previous = current.tags.get("previous_champion", "none")
    if previous in ("", "none"):
        raise StockcastError(
            f"{name} v{current.version} replaced no earlier champion: nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current.version, "rolled_back", reason)
    client.set_model_version_tag(name, previous, "restored_by_rollback_from", current.version)
    return str(current.version), str(previous)


def forecast(
    model: Any, history: np.ndarray, horizon: int, ohlcv: np.ndarray | None = None
) -> list[float]:
    """Next ``horizon`` prices from a price-in/price-out pyfunc, feeding forecasts back in.

    A model with extra inputs needs the raw OHLCV history and forecasts one day only: the
    other columns of the following days are not forecast.
    """
    from stockcast.errors import StockcastError

    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window")))
    if meta.get("extra_inputs"):
        if horizon != 1:
            raise StockcastError(
                f"horizon {horizon}: a model with extra inputs {meta['extra_inputs']} forecasts "
                "one day only (its other inputs are not forecast)"
            )
        return [float(np.asarray(model.predict(np.asarray(ohlcv)[None, -needed:])).reshape(-1)[0])]
    window = list(np.asarray(history, dtype="float64")[-needed:])
    if len(window) < needed:
        raise ValueError(f"need {needed} prices of history, have {len(window)}")
    out = []
    for _ in range(horizon):
        value = float(np.asarray(model.predict(np.array([window[-needed:]]))).reshape(-1)[0])
        out.append(value)
        window.append(value)
    return out
