"""The logged model: raw recent OHLCV rows in, next-day price and its intervals out.

Every model of a ticker, a network or a baseline rule, takes the same input, ``(n, context,
5)`` raw open, high, low, close, volume, oldest first, so any version, old or new, is
scored, compared and served the same way. Because the model does its own scaling, a
champion trained on other data can be scored on any run's test span, and
``mlflow models serve`` answers in prices.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from stockcast import transforms


def forecast_frame(point: np.ndarray, half_widths: dict[str, float]) -> pd.DataFrame:
    """``forecast`` and, per interval level, ``lower_<level>`` / ``upper_<level>``."""
    from stockcast.evaluate import interval

    out = {"forecast": np.asarray(point, dtype="float64").reshape(-1)}
    for name, width in half_widths.items():
        out[f"lower_{name}"], out[f"upper_{name}"] = interval(out["forecast"], width)
    return pd.DataFrame(out)


def input_layout(meta: dict[str, Any]) -> str:
    """``ohlcv`` (every model logged since baselines became candidates) or ``prices`` (the
    target's prices alone, as models logged before took), from a model's spec or metadata."""
    return meta.get("input", "ohlcv" if meta.get("extra_inputs") else "prices")


def point_forecast(output: Any) -> np.ndarray:
    """The point forecasts of a model's output (a frame with ``forecast``, or an array)."""
    if isinstance(output, pd.DataFrame):
        return output["forecast"].to_numpy(dtype="float64")
    return np.asarray(output, dtype="float64").reshape(-1)


class PriceForecaster(mlflow.pyfunc.PythonModel):
    """A network or a baseline rule behind one interface.

    Artifacts: ``spec`` (JSON: kind, target, anchor, transform, window, context, scalers,
    rule, interval half-widths) and, for a network, ``keras_model``. Input:
    ``(n, context, 5)`` raw OHLCV (one window ``(context, 5)`` is taken as n = 1). Output: a
    frame of ``forecast`` and ``lower_<level>`` / ``upper_<level>`` per interval level.
    """

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        path = artifacts.get("spec") or artifacts["scaler"]  # "scaler": logged before specs
        with open(path, encoding="utf-8") as fh:
            spec = json.load(fh)
        self.kind = spec.get("kind", "network")
        self.target = spec.get("target", "open")
        self.anchor = spec.get("anchor", "target")
        self.transform = spec.get("transform", "level")
        self.extra = tuple(spec.get("extra_inputs", ()))
        self.rule = spec.get("rule")
        self.ma_window = int(spec.get("ma_window", 5))
        self.half_widths = {str(k): float(v) for k, v in spec.get("intervals", {}).items()}
        self.model = None
        if self.kind == "network":
            from stockcast.models import load_network

            self.model = load_network(artifacts["keras_model"])
            self.window = int(self.model.input_shape[1])
            self.scalers = np.array([[spec["low"], spec["high"]], *spec.get("extra_scalers", [])])
        else:
            self.window = int(spec["window"])
        self.layout = input_layout(spec)
        self.context = int(
            spec.get("context", transforms.context(self.window, self.transform, self.extra))
        )

    # No type hints here on purpose: MLflow would try to derive a schema from them and warn;
    # the logged signature (from the input example) is the schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        raw = self._ohlcv(model_input)
        if self.kind == "baseline":
            from stockcast.evaluate import baseline_forecast

            point = baseline_forecast(self.rule, raw, self.target, self.ma_window)
        else:
            point = self._network(raw)
        return forecast_frame(point, self.half_widths)

    def _ohlcv(self, model_input: Any) -> np.ndarray:
        """The input as (n, context, 5) raw OHLCV; a readable error for any other shape."""
        raw = np.asarray(model_input, dtype="float64")
        expected_ndim = 3 if self.layout == "ohlcv" else 2
        if raw.ndim == expected_ndim - 1:
            raw = raw[np.newaxis]
        if (
            raw.ndim != expected_ndim
            or raw.shape[1] != self.context
            or (expected_ndim == 3 and raw.shape[2] != 5)
        ):
            shape = (
                f"(n, {self.context}, 5): the last {self.context} days' open, high, low, "
                "close, volume, oldest first"
                if self.layout == "ohlcv"
                else f"(n, {self.context}) prices"
            )
            raise ValueError(f"expected input of shape {shape}; got {raw.shape}")
        read = self._columns_read()
        checked = raw if raw.ndim == 2 else raw[..., [transforms.OHLCV.index(c) for c in read]]
        if not np.all(np.isfinite(checked)):  # a column the model never reads may be empty
            raise ValueError(f"input holds a missing or non-finite value in {', '.join(read)}")
        if self.layout == "prices":  # target prices only: lay them out as the target's column
            ohlcv = np.zeros(raw.shape + (5,))
            ohlcv[..., transforms.OHLCV.index(self.target)] = raw
            raw = ohlcv
        return raw

    def _columns_read(self) -> list[str]:
        """The OHLCV columns this model's forecast reads (a one-price series has no others)."""
        if self.kind == "network":
            return list(transforms.needed_columns(self.target, self.extra, self.anchor))
        return [self.target] + (["close"] if self.rule == "last_close" else [])

    def _network(self, raw: np.ndarray) -> np.ndarray:
        feats = np.stack(
            [
                transforms.feature_matrix(row, self.target, self.transform, self.extra, self.anchor)
                for row in raw
            ]
        )[:, -self.window :]  # (n, window, features)
        low, high = self.scalers[:, 0], self.scalers[:, 1]
        scaled = ((feats - low) / (high - low)).astype("float32")
        out = self.model.predict(scaled, verbose=0).reshape(-1)
        values = out * (high[0] - low[0]) + low[0]
        anchor = transforms.anchor_column(self.target, self.anchor)
        last = raw[:, -1, transforms.OHLCV.index(anchor)]
        return transforms.inverse(values, last, self.transform)
