"""Score forecasts in price units against the naive persistence baseline; draw the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stockcast.windows import WindowSet


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and MAPE (percent) of ``predicted`` against ``actual``."""
    actual = np.asarray(actual, dtype="float64")
    error = np.asarray(predicted, dtype="float64") - actual
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "mape": float(np.mean(np.abs(error / actual)) * 100.0),
    }


def score(ws: WindowSet, predicted: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Test metrics of a forecast for targets ``idx`` beside the naive forecast on them.

    Returns:
        ``test_rmse``, ``test_mae``, ``test_mape``, ``naive_rmse``, ``naive_mae`` and
        ``rmse_vs_naive`` (below 1 means the model beats doing nothing).
    """
    actual = ws.prices[idx]
    model = regression_metrics(actual, predicted)
    naive = regression_metrics(actual, ws.naive(idx))
    return {
        "test_rmse": model["rmse"],
        "test_mae": model["mae"],
        "test_mape": model["mape"],
        "naive_rmse": naive["rmse"],
        "naive_mae": naive["mae"],
        "rmse_vs_naive": model["rmse"] / naive["rmse"],
    }


def predict_prices(model: Any, ws: WindowSet, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """A Keras model's forecasts for targets ``idx``, mapped back to prices."""
    scaled = model.predict(ws.inputs(idx), batch_size=batch_size, verbose=0)  # (n, 1)
    return ws.scaler.inverse(np.asarray(scaled).reshape(-1))


def plot_forecast(
    ws: WindowSet, idx: np.ndarray, predicted: np.ndarray, title: str, path: Path
) -> Path:
    """Predicted vs actual over the span, with the naive line; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    dates = ws.dates[idx]
    ax.plot(dates, ws.prices[idx], label="actual", color="black", linewidth=1.2)
    ax.plot(
        dates, ws.naive(idx), label="naive (yesterday)", color="grey", linewidth=0.8, linestyle="--"
    )
    ax.plot(dates, predicted, label="forecast", color="tab:red", linewidth=1.0)
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
