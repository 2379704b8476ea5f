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
    """Wraps a Keras forecaster of scaled (and possibly differenced) prices.

    Input: (n, context) raw prices, oldest first, where context is the window, plus one for a
    ``diff`` or ``log_return`` model. Output: (n,) next-day prices.
    """

    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        with open(context.artifacts["scaler"], encoding="utf-8") as fh:
            scaler = json.load(fh)
        self.low, self.high = float(scaler["low"]), float(scaler["high"])
        self.transform = scaler.get("transform", "level")
        self.window = int(self.model.input_shape[1])
        self.context = self.window if self.transform == "level" else self.window + 1

    # No type hints here on purpose: MLflow would try to derive a schema from them and warn;
    # the logged signature (from the input example) is the schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        prices = np.asarray(model_input, dtype="float64")
        if prices.ndim == 1:
            prices = prices[np.newaxis, :]
        if prices.shape[1] != self.context:
            raise ValueError(
                f"expected {self.context} prices per row (the model's context), "
                f"got {prices.shape[1]}"
            )
        if self.transform == "level":
            series = prices
        elif self.transform == "diff":
            series = np.diff(prices, axis=1)
        else:
            series = np.diff(np.log(prices), axis=1)
        scaled = (series - self.low) / (self.high - self.low)  # (n, window)
        out = self.model.predict(scaled[..., np.newaxis].astype("float32"), verbose=0)
        values = out.reshape(-1) * (self.high - self.low) + self.low
        return transforms.inverse(values, prices[:, -1], self.transform)
