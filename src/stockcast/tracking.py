"""MLflow boundary: log the pipeline run, register the best variant, promote ``@champion``.

The promotion rule lives here and only here (see :func:`decide_promotion`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
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


def choose_candidate(
    scores: dict[str, dict[str, Any]],
    source: str,
    min_improvement: float = 0.0,
    max_p_value: float | None = None,
) -> tuple[str, str]:
    """The candidate to register: the best forecaster of the selection span, network or
    baseline.

    The best network (lowest RMSE in prices on ``source``) is chosen over the best baseline
    only when its RMSE is below the baseline's by ``min_improvement`` (a fraction) and, with
    ``max_p_value``, the Diebold-Mariano p-value against it is below that; otherwise the
    best baseline is. A network without a finite score (a failed fold) cannot be chosen.
    Prices, not the scaled training loss: a log-return model's loss and a level model's are
    not on one scale. The test span never chooses.

    Args:
        scores: per candidate its metrics, with ``kind`` (``network`` | ``baseline``),
            ``<source>_rmse`` and ``<source>_dm_p_value`` (against the span's best baseline).
        source: ``backtest`` or ``val``.
        min_improvement: the share of the baseline's RMSE a network must win by.
        max_p_value: the Diebold-Mariano p-value a network must be under; None: no test.

    Returns:
        (the candidate's name, why it was chosen).
    """
    import math

    key = f"{source}_rmse"

    def rmse(name: str) -> float:
        return float(scores[name].get(key, float("nan")))

    def of_kind(kind: str) -> list[str]:
        return [n for n, s in scores.items() if s.get("kind") == kind and math.isfinite(rmse(n))]

    baselines, networks = of_kind("baseline"), of_kind("network")
    if not baselines:
        raise ValueError(f"no baseline scored on {source}: nothing to compare the networks with")
    base = min(baselines, key=rmse)
    if not networks:
        return base, f"best baseline on {source}; no network has a {source} score"
    net = min(networks, key=rmse)
    from stockcast.evaluate import ratio as rmse_ratio

    ratio = rmse_ratio(rmse(net), rmse(base))
    p_value = float(scores[net].get(f"{source}_dm_p_value", float("nan")))
    versus = f"{net} {source} rmse {ratio:.4f}x {base} (DM p={p_value:.3g})"
    if ratio >= 1.0 - min_improvement:
        return base, f"{versus}: the network does not beat the best baseline"
    if max_p_value is not None and not p_value < max_p_value:
        return base, f"{versus}: not significant at {max_p_value}"
    return net, f"{versus}: the network beats the best baseline"


@dataclass(frozen=True)
class Gate:
    """One promotion gate: a metric of the selection span and its limit."""

    metric: str
    limit: float | None
    strict: bool = False  # True: the value must be below the limit; False: at most it


def gates(cfg: Config) -> tuple[Gate, ...]:
    """The configured gates, relative to baselines scored on the same span."""
    r = cfg.register
    return (
        Gate("rmse_vs_best_baseline", r.max_rmse_vs_best_baseline),
        Gate("rmse_vs_naive", r.max_rmse_vs_naive),
        Gate("mase", r.max_mase, strict=True),
    )


def decide_promotion(
    candidate_rmse: float,
    champion_rmse: float | None,
    gate: dict[str, float],
    limits: tuple[Gate, ...],
    previous_version: str | None = None,
    gate_source: str = "backtest",
) -> Decision:
    """The promotion rule, in one place.

    1. The candidate must pass every gate (``limits``) on the span where selection happened,
       the backtest folds (or the validation span without folds). A missing value (a failed
       fold) rejects; a gate whose limit is None is off.
    2. It must beat the current champion, both scored on this run's test span.

    Args:
        candidate_rmse: the candidate's RMSE on this run's test span.
        champion_rmse: the current champion's RMSE on the same targets; None if there is none.
        gate: the candidate's gate metrics on the gate span, by name.
        limits: the gates.
        previous_version: the current champion's version, recorded on promotion.
        gate_source: where ``gate`` was measured, for the reason text.
    """
    import math

    def reject(reason: str) -> Decision:
        return Decision(False, reason, candidate_rmse, champion_rmse, previous_version)

    active = [g for g in limits if g.limit is not None]
    for g in active:
        value = gate.get(g.metric, float("nan"))
        if math.isnan(value):
            return reject(f"{gate_source} {g.metric} missing (a fold failed?): cannot judge it")
        if not (value < g.limit if g.strict else value <= g.limit):
            return reject(
                f"{gate_source} {g.metric} {value:.4f} {'>=' if g.strict else '>'} {g.limit}"
            )
    passed = ", ".join(f"{gate_source} {g.metric} {gate[g.metric]:.4f}" for g in active)
    passed = f"; {passed}" if passed else ""
    if champion_rmse is None:
        return Decision(True, f"no champion yet{passed}", candidate_rmse, None, None)
    if candidate_rmse < champion_rmse:
        return Decision(
            True,
            f"test rmse {candidate_rmse:.4f} < champion v{previous_version} "
            f"{champion_rmse:.4f}{passed}",
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


def log_candidate(
    mlflow: Any,
    ws: WindowSet,
    name: str,
    metrics: dict[str, Any],
    cfg: Config,
    result: TrainResult | None = None,
    plot: Path | None = None,
) -> str | None:
    """Log one candidate, a network (``result``) or a baseline rule, into the active child
    run: its parameters, per-epoch curves, metrics, plot and model. Returns the model URI."""
    from mlflow.entities import Metric

    run_id = mlflow.active_run().info.run_id
    mlflow.log_params({"variant": name, "ticker": ws.ticker, "kind": metrics["kind"]})
    if result is not None:
        mlflow.log_params(
            {
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
        now = int(time.time() * 1000)
        curves = [
            Metric(key, float(value), now, step)
            for key in ("loss", "val_loss")
            for step, value in enumerate(result.history.get(key, []), start=1)
        ]
        for start in range(0, len(curves), 1000):  # MLflow's limit per batch
            mlflow.MlflowClient().log_batch(run_id, metrics=curves[start : start + 1000])
        metrics = {
            **metrics,
            "best_val_loss": result.best_val_loss or float("nan"),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "fit_seconds": result.fit_seconds,
        }
    mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
    mlflow.set_tags({k: v for k, v in metrics.items() if isinstance(v, str)})
    if plot is not None and plot.exists():
        mlflow.log_artifact(str(plot), artifact_path="plots")
    if result is not None and result.model_path is None:
        return None
    keras_path = Path(result.model_path) if result is not None else None
    return log_forecaster(mlflow, ws, keras_path, half_widths(metrics), name, cfg)


def half_widths(metrics: dict[str, Any]) -> dict[str, float]:
    """The conformal half-widths in a candidate's metrics (``interval_halfwidth_<level>``)."""
    prefix = "interval_halfwidth_"
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}


def model_spec(
    ws: WindowSet, keras_path: Path | None, widths: dict[str, float], rule: str, ma_window: int
) -> dict[str, Any]:
    """What the pyfunc needs besides the network: layout, scaling, rule and intervals."""
    spec: dict[str, Any] = {
        "kind": "network" if keras_path is not None else "baseline",
        "input": "ohlcv",
        "window": ws.window,
        "context": ws.context,
        "target": ws.target,
        "intervals": widths,
    }
    if keras_path is None:
        return {**spec, "rule": rule, "ma_window": ma_window}
    return {
        **spec,
        **ws.scaler.to_dict(),
        "transform": ws.transform,
        "anchor": ws.anchor,
        "extra_inputs": list(ws.extra_inputs),
        "extra_scalers": [[e.low, e.high] for e in ws.extra_scalers],
    }


def log_forecaster(
    mlflow: Any,
    ws: WindowSet,
    keras_path: Path | None,
    widths: dict[str, float],
    rule: str,
    cfg: Config | None = None,
) -> str:
    """Log the OHLCV-in, price-out pyfunc of a network (``keras_path``) or a baseline
    ``rule``, with signature and input example."""
    import keras
    import pandas as pd
    import tensorflow as tf
    from mlflow.models import infer_signature

    import stockcast
    from stockcast.serving import PriceForecaster

    ma_window = cfg.features.moving_average if cfg else 5
    spec = model_spec(ws, keras_path, widths, rule, ma_window)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        mlflow.log_artifact(str(spec_path), artifact_path="spec")
        artifacts = {"spec": str(spec_path)}
        if keras_path is not None:
            artifacts["keras_model"] = str(keras_path)
        forecaster = PriceForecaster()
        forecaster.load_context(type("Context", (), {"artifacts": artifacts})())
        example = ws.raw_inputs(ws.test_idx[:3])  # raw, as a user has it
        signature = infer_signature(example, forecaster.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=forecaster,
            artifacts=artifacts,
            code_paths=[str(Path(stockcast.__file__).parent)],
            signature=signature,
            input_example=example,
            metadata={
                "ticker": ws.ticker,
                "kind": spec["kind"],
                "variant": rule,
                "input": "ohlcv",
                "window": ws.window,
                "context": ws.context,
                "target": ws.target,
                "transform": spec.get("transform", "none"),
                "anchor": spec.get("anchor", "none"),
                "extra_inputs": spec.get("extra_inputs", []),
                "intervals": widths,
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


def model_inputs(meta: dict[str, Any], ohlcv_windows: np.ndarray, target: str) -> np.ndarray:
    """Raw OHLCV windows in the layout a logged model takes: every model logged since
    baselines became candidates takes OHLCV; older ones took the target's prices alone."""
    layout = meta.get("input", "ohlcv" if meta.get("extra_inputs") else "prices")
    if layout == "ohlcv":
        return ohlcv_windows
    from stockcast.transforms import OHLCV

    return ohlcv_windows[..., OHLCV.index(target)]


def champion_rmse(mlflow: Any, client: Any, name: str, ws: WindowSet) -> tuple[float, str] | None:
    """Score the current champion on this run's test targets; None when there is none."""
    from mlflow.exceptions import MlflowException

    from stockcast.evaluate import regression_metrics
    from stockcast.serving import point_forecast

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window", ws.window)))
    idx = ws.test_idx
    inputs = model_inputs(meta, ws.raw_inputs(idx, needed), ws.target)  # champion's layout
    predicted = point_forecast(model.predict(inputs))
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


def forecast(model: Any, ohlcv: np.ndarray, horizon: int, target: str) -> list[dict[str, float]]:
    """The next ``horizon`` days from a logged model and the raw OHLCV history.

    Each forecast is fed back as a flat day (open = high = low = close = the forecast, the
    last volume) to forecast the next. The intervals are calibrated for one day ahead; for
    step h their log half-width is widened by sqrt(h), as for a random walk: an
    approximation, not a calibrated interval.

    Returns:
        One mapping per step: ``forecast`` and ``lower_<level>`` / ``upper_<level>``.
    """
    import math

    import pandas as pd

    from stockcast.serving import point_forecast

    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window")))
    history = np.asarray(ohlcv, dtype="float64")
    if len(history) < needed:
        raise ValueError(f"need {needed} days of history, have {len(history)}")
    history = history[-needed:]
    out = []
    for step in range(1, horizon + 1):
        output = model.predict(model_inputs(meta, history[None], target))
        if not isinstance(output, pd.DataFrame):  # a model logged before intervals
            output = pd.DataFrame({"forecast": point_forecast(output)})
        row = output.iloc[0]
        point = float(row["forecast"])
        values = {"forecast": point}
        for key in row.index:
            if key.startswith("upper_"):
                level = key.removeprefix("upper_")
                width = math.log(row[key] / point) * math.sqrt(step)
                values[f"lower_{level}"] = point * math.exp(-width)
                values[f"upper_{level}"] = point * math.exp(width)
        out.append(values)
        history = np.vstack([history[1:], [point, point, point, point, history[-1, 4]]])
    return out
