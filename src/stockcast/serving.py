"""The logged model: raw recent prices in, next-day price out (scaling is inside).

Because the model does its own scaling, a champion trained on other data or another window can
be scored on any run's test span, and ``mlflow models serve`` answers in prices.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc
import numpy as np

from stockcast import transforms


class PriceForecaster(mlflow.pyfunc.PythonModel):
    """Wraps a Keras forecaster of scaled (and possibly transformed) daily inputs.

    Input: (n, context) raw target prices, oldest first; or, for a model with extra inputs,
    (n, context, 5) raw open, high, low, close, volume. ``context`` is the window, plus one
    when the model sees day-to-day changes. Output: (n,) next-day prices.
    """

    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        with open(context.artifacts["scaler"], encoding="utf-8") as fh:
            spec = json.load(fh)
        self.transform = spec.get("transform", "level")
        self.target = spec.get("target", "open")
        self.extra = tuple(spec.get("extra_inputs", ()))
        self.scalers = np.array([[spec["low"], spec["high"]], *spec.get("extra_scalers", [])])
        self.window = int(self.model.input_shape[1])
        self.context = transforms.context(self.window, self.transform, self.extra)

    # No type hints here on purpose: MLflow would try to derive a schema from them and warn;
    # the logged signature (from the input example) is the schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        raw = np.asarray(model_input, dtype="float64")
        expected_ndim = 3 if self.extra else 2
        if raw.ndim == expected_ndim - 1:
            raw = raw[np.newaxis]
        if raw.ndim != expected_ndim or raw.shape[1] != self.context:
            shape = "(n, context, 5) OHLCV" if self.extra else "(n, context) prices"
            raise ValueError(f"expected {shape} with context {self.context}, got {raw.shape}")
        if not self.extra:  # target prices only: lay them out as the target's OHLCV column
            ohlcv = np.zeros(raw.shape + (5,))
            ohlcv[..., transforms.OHLCV.index(self.target)] = raw
            raw = ohlcv
        feats = np.stack(
            [transforms.feature_matrix(row, self.target, self.transform, self.extra) for row in raw]
        )[:, -self.window :]  # (n, window, features)
        low, high = self.scalers[:, 0], self.scalers[:, 1]
        scaled = ((feats - low) / (high - low)).astype("float32")
        out = self.model.predict(scaled, verbose=0).reshape(-1)
        values = out * (high[0] - low[0]) + low[0]
        last = raw[:, -1, transforms.OHLCV.index(self.target)]
        return transforms.inverse(values, last, self.transform)
