"""A forecaster as an MLflow model: the spec the pyfunc reads (layout, scaling, rule,
intervals), its signature and input example, its metadata and the pinned requirements it
needs to load anywhere."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stockcast.registry import sys_path_kept
from stockcast.windows import WindowSet

# What MLflow says on every model logged: its advice against pickled models (ours are pickled
# on purpose, with their code beside them) and its input-example check's announcement.
LOG_MODEL_NOISE = re.compile(
    r"Passing a Python object as `python_model`|Validating input example against"
)


def model_spec(
    ws: WindowSet,
    keras_path: Path | None,
    widths: dict[str, float],
    rule: str,
    ma_window: int,
    calibration: Any = None,
) -> dict[str, Any]:
    """What the pyfunc needs besides the network: layout, scaling, rule and intervals
    (``widths``: the static half-widths; ``calibration``: the bands that follow volatility,
    a :class:`stockcast.intervals.Calibration`, which the pyfunc draws when it is there)."""
    spec: dict[str, Any] = {
        "kind": "network" if keras_path is not None else "baseline",
        "input": "ohlcv",
        "window": ws.window,
        "context": ws.context,
        "target": ws.target,
        "intervals": widths,
    }
    if calibration is not None:
        spec["calibration"] = calibration.to_dict()
    if keras_path is None:
        from stockcast.evaluate import ws_season

        season = {"season": ws_season(ws)} if rule == "seasonal_naive" else {}
        return {**spec, "rule": rule, "ma_window": ma_window, **season}
    return {
        **spec,
        **ws.scaler.to_dict(),
        "transform": ws.transform,
        "anchor": ws.anchor,
        "extra_inputs": list(ws.extra_inputs),
        "extra_scalers": [[e.low, e.high] for e in ws.extra_scalers],
    }


def forecaster_id(rule: str, ws: WindowSet, ma_window: int) -> str:
    """What makes two baseline versions the same forecaster: the rule, the target, the days
    it reads and, for the moving average, its days (its intervals are calibration, not the
    forecaster: they are recalibrated without a new version)."""
    days = f"|ma={ma_window}" if rule == "moving_average" else ""
    if rule == "seasonal_naive":
        from stockcast.evaluate import ws_season

        days = f"|season={ws_season(ws)}"
    return f"{rule}|target={ws.target}|context={ws.context}{days}"


def log_forecaster(
    mlflow: Any,
    ws: WindowSet,
    keras_path: Path | None,
    widths: dict[str, float],
    rule: str,
    ma_window: int = 5,
    calibration: Any = None,
) -> str:
    """Log the OHLCV-in, price-out pyfunc of a network (``keras_path``) or a baseline
    ``rule`` (``ma_window``: the moving average's days), with signature and input example;
    ``calibration``: its bands (see :func:`model_spec`)."""
    from mlflow.models import infer_signature

    import stockcast
    from stockcast.models import muted_logs
    from stockcast.serving import PriceForecaster

    spec = model_spec(ws, keras_path, widths, rule, ma_window, calibration)
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
        # MLflow loads the model back to check its input example
        with sys_path_kept(), muted_logs("mlflow.pyfunc", LOG_MODEL_NOISE):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=forecaster,
                artifacts=artifacts,
                code_paths=[str(Path(stockcast.__file__).parent)],
                signature=infer_signature(example, forecaster.predict(None, example)),
                input_example=example,
                metadata=_metadata(ws, spec, rule),
                pip_requirements=_requirements(),
            )
    return info.model_uri


def _metadata(ws: WindowSet, spec: dict[str, Any], rule: str) -> dict[str, Any]:
    """What a reader of the logged model (and ``forecast``) needs to know of it."""
    return {
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
        "intervals": spec["intervals"],
        "interval_method": spec.get("calibration", {}).get("method", "static"),
    }


def _requirements() -> list[str]:
    """Pinned to what is running (and no slow inference of them by MLflow)."""
    import mlflow
    import pandas as pd

    from stockcast.models import import_keras

    keras = import_keras()  # TensorFlow too, without its start-up lines
    import tensorflow as tf

    return [
        f"tensorflow-cpu=={tf.__version__}",
        f"keras=={keras.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]
