"""Split each ticker's series into train / validation / test spans and cut sliding windows.

Windows are never materialised as a (rows x window) copy: a span is described by the
positions of its targets, and inputs are strided views (numpy) or gathered per batch (tf.data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stockcast import transforms
from stockcast.columns import OHLCV
from stockcast.errors import SeriesError
from stockcast.paths import atomic_write, write_json


@dataclass(frozen=True)
class MinMaxScaler:
    """Maps [low, high] of the training span to [0, 1]; values outside map outside."""

    low: float
    high: float

    @classmethod
    def fit(cls, values: np.ndarray) -> MinMaxScaler:
        low, high = float(np.min(values)), float(np.max(values))
        if high <= low:
            raise SeriesError("", f"constant series ({low}) in the training span: cannot scale")
        return cls(low, high)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype="float64") - self.low) / (self.high - self.low)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype="float64") * (self.high - self.low) + self.low

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class WindowSet:
    """One ticker's series and the target positions of each span.

    Attributes:
        ticker: the ticker.
        dates: trading dates, ascending.
        prices: the target column in price units.
        scaled: (rows, features) float32, the model's input: column 0 is the target through
            ``transform`` and ``scaler``; then each extra input through its own scaler.
        scaler: the target's, fitted on the training span only.
        window: past days per input.
        train_idx, val_idx, test_idx: positions t whose input is ``scaled[t-window:t]``.
        transform: the target transform.
        target: the target's canonical column name.
        extra_inputs: names of the extra inputs (columns 1.. of ``scaled``).
        extra_scalers: one scaler per extra input, fitted on the training span only.
        ohlcv: (rows, 5) raw open, high, low, close, volume (to score any model on raw data).
        anchor: ``target`` or ``close``: the price a forecast change is measured from.
    """

    ticker: str
    dates: np.ndarray
    prices: np.ndarray
    scaled: np.ndarray
    scaler: MinMaxScaler
    window: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    transform: str = "level"
    target: str = "open"
    extra_inputs: tuple[str, ...] = ()
    extra_scalers: tuple[MinMaxScaler, ...] = ()
    ohlcv: np.ndarray | None = None
    anchor: str = "target"

    @property
    def context(self) -> int:
        """Raw rows one forecast needs."""
        return transforms.context(self.window, self.transform, self.extra_inputs)

    def to_prices(self, scaled: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Model outputs for targets ``idx`` back in price units."""
        values = self.scaler.inverse(np.asarray(scaled).reshape(-1))
        return transforms.inverse(values, self.previous(idx), self.transform)

    def previous(self, idx: np.ndarray) -> np.ndarray:
        """The anchor's price the day before each target: what a forecast change adds to."""
        if self.anchor == "target" or self.ohlcv is None:
            return self.naive(idx)
        column = OHLCV.index(transforms.anchor_column(self.target, self.anchor))
        return self.ohlcv[np.asarray(idx) - 1, column]

    def inputs(self, idx: np.ndarray) -> np.ndarray:
        """Scaled inputs for targets ``idx``: (len(idx), window, features) float32, a gather
        from a strided view (no copy of the whole series)."""
        view = np.lib.stride_tricks.sliding_window_view(self.scaled, self.window, axis=0)
        return view[np.asarray(idx) - self.window].transpose(0, 2, 1)  # (n, window, features)

    def targets(self, idx: np.ndarray) -> np.ndarray:
        """Scaled targets for ``idx``: (len(idx),) float32."""
        return self.scaled[np.asarray(idx), 0]

    def naive(self, idx: np.ndarray) -> np.ndarray:
        """Persistence forecast in prices: tomorrow = today."""
        return self.prices[np.asarray(idx) - 1]

    def raw_inputs(self, idx: np.ndarray, context: int | None = None) -> np.ndarray:
        """What every logged model of the ticker takes for targets ``idx``: the raw OHLCV
        rows before each target, (n, context, 5), oldest first."""
        rows = np.asarray(idx)[:, None] + np.arange(-(context or self.context), 0)
        return self.ohlcv[rows]

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) through a temporary file, so a crash keeps the old one."""
        arrays = dict(
            ticker=self.ticker,
            dates=self.dates.astype("datetime64[D]"),
            prices=self.prices,
            scaled=self.scaled,
            scaler=np.array([self.scaler.low, self.scaler.high]),
            window=self.window,
            train_idx=self.train_idx,
            val_idx=self.val_idx,
            test_idx=self.test_idx,
            transform=self.transform,
            target=self.target,
            extra_inputs=np.array(self.extra_inputs, dtype=str),
            extra_scalers=np.array([[e.low, e.high] for e in self.extra_scalers]).reshape(-1, 2),
            ohlcv=self.ohlcv if self.ohlcv is not None else np.zeros((0, 5)),
            anchor=self.anchor,
        )
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays))

    @classmethod
    def load(cls, path: Path) -> WindowSet:
        with np.load(path) as z:
            low, high = z["scaler"]
            return cls(
                ticker=str(z["ticker"]),
                dates=z["dates"],
                prices=z["prices"],
                scaled=z["scaled"],
                scaler=MinMaxScaler(float(low), float(high)),
                window=int(z["window"]),
                train_idx=z["train_idx"],
                val_idx=z["val_idx"],
                test_idx=z["test_idx"],
                transform=str(z["transform"]),
                target=str(z["target"]),
                extra_inputs=tuple(str(n) for n in z["extra_inputs"]),
                extra_scalers=tuple(
                    MinMaxScaler(float(a), float(b)) for a, b in z["extra_scalers"]
                ),
                ohlcv=z["ohlcv"] if len(z["ohlcv"]) else None,
                anchor=str(z["anchor"]) if "anchor" in z.files else "target",
            )


def span_targets(start: int, stop: int, window: int) -> np.ndarray:
    """Target positions whose whole input window lies in ``[start, stop)``."""
    return np.arange(start + window, stop)


def every_row(start: int, stop: int) -> np.ndarray:
    """Every row of ``[start, stop)`` as a target: its window reaches back into the rows
    before the span, prices that were known at forecast time."""
    return np.arange(start, stop)


def make_windows(
    frame: pd.DataFrame,
    target: str,
    window: int,
    val_days: int,
    test_days: int,
    transform: str = "level",
    extra_inputs: tuple[str, ...] = (),
    anchor: str = "target",
) -> WindowSet:
    """Cut one ticker's canonical rows into spans; fit every scaler on the training span only.

    Layout of rows: ``[ train | val (val_days) | test (test_days) ]``. Validation is cut from
    the end of the training data, so the test span is never seen before the final report.
    Every row of the validation and test spans is a target; training targets' windows lie
    wholly in the training span.

    Args:
        frame: one ticker's canonical rows in ascending date order.
        target: the price column to forecast.
        window: past days per input.
        val_days: rows of the validation span.
        test_days: rows of the test span.
        transform: ``level`` | ``diff`` | ``log_return`` (see :mod:`stockcast.transforms`).
        extra_inputs: extra per-day inputs (see :func:`stockcast.transforms.feature_matrix`).
        anchor: ``target`` | ``close``: the price a forecast change is measured from.

    Raises:
        SeriesError: too few rows for the three spans.
    """
    ticker = str(frame["ticker"].iloc[0])
    n = len(frame)
    test_start, val_start = n - test_days, n - test_days - val_days
    if val_start < 2 * window:
        raise SeriesError(
            ticker,
            f"{n} rows are too few",
            column=target,
            expected=f"at least {test_days + val_days + 2 * window} rows "
            f"(window {window}, validation {val_days}, test {test_days})",
        )
    ohlcv = frame[list(OHLCV)].to_numpy(dtype="float64")
    features = transforms.feature_matrix(ohlcv, target, transform, tuple(extra_inputs), anchor)
    first = transforms.context(0, transform, tuple(extra_inputs))  # changes lack row 0
    try:
        scalers = [MinMaxScaler.fit(features[first:val_start, j]) for j in range(features.shape[1])]
    except SeriesError as exc:
        raise SeriesError(ticker, exc.problem, column=target) from None
    scaled = np.stack([sc.transform(features[:, j]) for j, sc in enumerate(scalers)], axis=1)
    return WindowSet(
        ticker=ticker,
        dates=frame["date"].to_numpy(dtype="datetime64[D]"),
        prices=ohlcv[:, OHLCV.index(target)],
        scaled=scaled.astype("float32"),
        scaler=scalers[0],
        window=window,
        train_idx=span_targets(first, val_start, window),
        val_idx=every_row(val_start, test_start),
        test_idx=every_row(test_start, n),
        transform=transform,
        target=target,
        extra_inputs=tuple(extra_inputs),
        extra_scalers=tuple(scalers[1:]),
        ohlcv=ohlcv,
        anchor=anchor,
    )


def write_windows(
    sets: list[WindowSet], out_dir: Path, folds: dict[str, list[WindowSet]] | None = None
) -> Path:
    """Save every ticker's windows (and backtest folds) plus a manifest; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for ws in sets:
        ws.save(out_dir / f"{ws.ticker}.npz")
        fold_files = []
        for k, fold in enumerate((folds or {}).get(ws.ticker, []), start=1):
            fold_files.append(f"{ws.ticker}.fold{k}.npz")
            fold.save(out_dir / fold_files[-1])
        manifest[ws.ticker] = {
            "file": f"{ws.ticker}.npz",
            "rows": len(ws.prices),
            "window": ws.window,
            "train": len(ws.train_idx),
            "val": len(ws.val_idx),
            "test": len(ws.test_idx),
            "first_date": str(ws.dates[0]),
            "last_date": str(ws.dates[-1]),
            "scaler": ws.scaler.to_dict(),
            "transform": ws.transform,
            "folds": fold_files,
        }
    return write_json(out_dir / "manifest.json", manifest)


def read_manifest(out_dir: Path) -> dict[str, dict]:
    return json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))


def read_windows(out_dir: Path) -> list[WindowSet]:
    return [WindowSet.load(out_dir / entry["file"]) for entry in read_manifest(out_dir).values()]


def read_folds(out_dir: Path, ticker: str) -> list[WindowSet]:
    """A ticker's backtest folds, oldest first."""
    return [WindowSet.load(out_dir / f) for f in read_manifest(out_dir)[ticker].get("folds", [])]
