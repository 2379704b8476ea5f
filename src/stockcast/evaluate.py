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


def baselines(ws: WindowSet, idx: np.ndarray, ma_window: int = 5) -> dict[str, np.ndarray]:
    """Forecasts that need no model, for targets ``idx``, in prices.

    naive: tomorrow = today. drift: today plus the average daily change since the first row.
    moving_average: the mean of the last ``ma_window`` prices.
    """
    idx = np.asarray(idx)
    p = ws.prices
    previous = ws.naive(idx)
    drift = previous + (previous - p[0]) / np.maximum(idx - 1, 1)
    cumulative = np.concatenate([[0.0], np.cumsum(p)])
    start = np.maximum(idx - ma_window, 0)
    moving = (cumulative[idx] - cumulative[start]) / (idx - start)
    return {"naive": previous, "drift": drift, "moving_average": moving}


def in_sample_naive_mae(ws: WindowSet) -> float:
    """MASE's scale: the naive forecast's MAE over the training span."""
    train = ws.prices[: int(ws.val_idx[0]) - ws.window]
    return float(np.mean(np.abs(np.diff(train))))


def score(
    ws: WindowSet, predicted: np.ndarray, idx: np.ndarray, prefix: str = "test"
) -> dict[str, float]:
    """A forecast's metrics for targets ``idx``, with the naive forecast's beside them.

    Returns:
        ``<prefix>_rmse``, ``_mae``, ``_mape``, ``_mase`` (MAE over the in-sample naive MAE),
        ``_directional_accuracy`` (share of days whose up/down move is called right),
        ``_rmse_vs_naive`` (below 1 beats doing nothing), plus ``naive_rmse`` and
        ``naive_mae`` for the test span (their historical names).
    """
    idx = np.asarray(idx)
    actual = ws.prices[idx]
    previous = ws.naive(idx)
    model = regression_metrics(actual, predicted)
    naive = regression_metrics(actual, previous)
    called = np.sign(np.asarray(predicted) - previous) == np.sign(actual - previous)
    out = {
        f"{prefix}_rmse": model["rmse"],
        f"{prefix}_mae": model["mae"],
        f"{prefix}_mape": model["mape"],
        f"{prefix}_mase": model["mae"] / in_sample_naive_mae(ws),
        f"{prefix}_directional_accuracy": float(np.mean(called)),
        f"{prefix}_rmse_vs_naive": model["rmse"] / naive["rmse"],
    }
    if prefix == "test":
        out.update(
            naive_rmse=naive["rmse"],
            naive_mae=naive["mae"],
            rmse_vs_naive=out["test_rmse_vs_naive"],
        )
    else:
        out.update({f"{prefix}_naive_rmse": naive["rmse"]})
    return out


def baseline_scores(ws: WindowSet, idx: np.ndarray, ma_window: int = 5) -> dict[str, float]:
    """RMSE, MAE and MASE of every baseline on targets ``idx`` (``drift_rmse`` etc.)."""
    actual = ws.prices[np.asarray(idx)]
    scale = in_sample_naive_mae(ws)
    out = {}
    for name, forecast in baselines(ws, idx, ma_window).items():
        m = regression_metrics(actual, forecast)
        out.update(
            {f"{name}_rmse": m["rmse"], f"{name}_mae": m["mae"], f"{name}_mase": m["mae"] / scale}
        )
    return out


def predict_prices(model: Any, ws: WindowSet, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """A Keras model's forecasts for targets ``idx``, mapped back to prices."""
    scaled = model.predict(ws.inputs(idx), batch_size=batch_size, verbose=0)  # (n, 1)
    return ws.to_prices(scaled, idx)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_forecast(
    ws: WindowSet, idx: np.ndarray, predicted: np.ndarray, title: str, path: Path
) -> Path:
    """Predicted vs actual over the span with the naive line, and the residual histogram."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=[3, 1])
    dates = ws.dates[idx]
    actual = ws.prices[idx]
    ax.plot(dates, actual, label="actual", color="black", linewidth=1.2)
    ax.plot(
        dates, ws.naive(idx), label="naive (yesterday)", color="grey", linewidth=0.8, linestyle="--"
    )
    ax.plot(dates, predicted, label="forecast", color="tab:red", linewidth=1.0)
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.legend()
    hist.hist(np.asarray(predicted) - actual, bins=30, color="tab:red", alpha=0.7, label="forecast")
    hist.hist(ws.naive(idx) - actual, bins=30, color="grey", alpha=0.5, label="naive")
    hist.set_title("residuals (forecast - actual)")
    hist.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_backtest(rows: Any, title: str, path: Path) -> Path:
    """Each variant's MASE and RMSE/naive per fold, with the line at 1 (= naive)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key in zip(axes, ("mase", "rmse_vs_naive"), strict=True):
        table = rows.pivot(index="fold", columns="variant", values=key)
        table.plot.bar(ax=ax, rot=0)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{title}: {key}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
