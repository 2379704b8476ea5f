"""The logged model: raw recent prices in, next-day price out (scaling is inside).

Because the model does its own scaling, a champion trained on other data or another window can
be scored on any run's test span, and ``mlflow models serve`` answers in prices.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc
import numpy as np


class PriceForecaster(mlflow.pyfunc.PythonModel):
    """Wraps a Keras forecaster of MinMax-scaled prices.

    Input: (n, window) raw prices, oldest first. Output: (n,) next-day prices.
    """

    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        with open(context.artifacts["scaler"], encoding="utf-8") as fh:
            scaler = json.load(fh)
        self.low, self.high = float(scaler["low"]), float(scaler["high"])
        self.window = int(self.model.input_shape[1])

    # No type hints here on purpose: MLflow would try to derive a schema from them and warn;
    # the logged signature (from the input example) is the schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        prices = np.asarray(model_input, dtype="float64")
        if prices.ndim == 1:
            prices = prices[np.newaxis, :]
        if prices.shape[1] != self.window:
            raise ValueError(
                f"expected {self.window} prices per row (the model's window), got {prices.shape[1]}"
            )
        scaled = (prices - self.low) / (self.high - self.low)
        out = self.model.predict(scaled[..., np.newaxis].astype("float32"), verbose=0)
        return out.reshape(-1) * (self.high - self.low) + self.low
