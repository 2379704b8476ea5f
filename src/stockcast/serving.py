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
from stockcast.columns import OHLCV


def forecast_frame(point: np.ndarray, half_widths: dict[str, Any]) -> pd.DataFrame:
    """``forecast`` and, per interval level, ``lower_<level>`` / ``upper_<level>``, always
    nested: ``lower_95 <= lower_80 <= forecast <= upper_80 <= upper_95``. A wider level never
    gets a narrower band than a lower one, and a band's ends are ordered whatever the sign.
    ``half_widths``: per level name, one width for every row or each row's (an unknown, NaN,
    width leaves that band and the wider ones unknown)."""
    from stockcast.evaluate import interval

    out = {"forecast": np.asarray(point, dtype="float64").reshape(-1)}
    widest: Any = 0.0
    for name, width in sorted(half_widths.items(), key=lambda kv: _level(kv[0])):
        widest = np.maximum(widest, np.abs(np.asarray(width, dtype="float64")))
        ends = interval(out["forecast"], widest)
        out[f"lower_{name}"], out[f"upper_{name}"] = np.fmin(*ends), np.fmax(*ends)
    return pd.DataFrame(out)


def _level(name: str) -> float:
    try:
        return float(name)
    except ValueError:
        return float("inf")


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
        self.season = int(spec.get("season", 0))  # seasonal_naive's rows back
        self.half_widths = {str(k): float(v) for k, v in spec.get("intervals", {}).items()}
        self.calibration = None  # bands that follow volatility (logged since issue 31)
        if "calibration" in spec:
            from stockcast.intervals import Calibration

            self.calibration = Calibration.from_dict(spec["calibration"])
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
        if self.model is not None:  # trace the predict function now, not on the first request
            features = len(self.scalers)
            self.model.predict_on_batch(np.zeros((1, self.window, features), dtype="float32"))

    # A raw OHLCV array (or a frame of one): MLflow derives no schema from these hints (the
    # logged signature, from the input example, is the schema) and asks for no others.
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        raw = self._ohlcv(model_input)
        if self.kind == "baseline":
            from stockcast.evaluate import baseline_forecast

            point = baseline_forecast(self.rule, raw, self.target, self.ma_window, self.season)
        else:
            point = self._network(raw)
        return forecast_frame(point, self.bands(raw))

    def bands(self, raw: np.ndarray) -> dict[str, Any]:
        """Each window's half-widths by level name: drawn from its own recent volatility
        when the model has a calibration, else the fixed ones logged with it."""
        return band_widths(self.calibration, self.half_widths, raw[..., OHLCV.index(self.target)])

    def _ohlcv(self, model_input: Any) -> np.ndarray:
        """The input as (n, context, 5) raw OHLCV.

        Raises:
            MlflowException: (HTTP 400 when served) the input cannot be price windows: its
                shape, a missing or non-finite value, a price not above zero, a high below
                the low or a negative volume, named by window, day and column.
        """
        try:
            raw = np.asarray(model_input, dtype="float64")
        except (TypeError, ValueError) as exc:
            raise refused(f"input is not numbers: {exc}") from None
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
            raise refused(f"expected input of shape {shape}; got {raw.shape}")
        if self.layout == "prices":  # target prices only: lay them out as the target's column
            ohlcv = np.full(raw.shape + (5,), np.nan)
            ohlcv[..., OHLCV.index(self.target)] = raw
            raw = ohlcv
        read = [self.target] if self.layout == "prices" else self._columns_read()
        if problem := window_problem(raw, read):
            raise refused(problem)
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
        # predict_on_batch runs the traced predict function: Keras's predict() builds a data
        # pipeline per call, 134 ms a served window against a few ms
        out = np.asarray(self.model.predict_on_batch(scaled)).reshape(-1)
        values = out * (high[0] - low[0]) + low[0]
        anchor = transforms.anchor_column(self.target, self.anchor)
        last = raw[:, -1, OHLCV.index(anchor)]
        return transforms.inverse(values, last, self.transform)


PRICES = ("open", "high", "low", "close")


def refused(message: str) -> Exception:
    """An input error as MLflow's scoring server answers it: HTTP 400 with ``message``."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def window_problem(raw: np.ndarray, read: list[str]) -> str | None:
    """What makes ``raw`` (n, context, 5) no price windows, or None: a missing or non-finite
    value in a column the model reads (a column it never reads may be empty), a price not
    above zero, a high below the low, a negative volume. Names the first offence by window,
    day and column, and how many values share it."""
    col = {c: raw[..., OHLCV.index(c)] for c in OHLCV}
    checks = [(c, ~np.isfinite(col[c]), "is missing or not a finite number") for c in read] + [
        (c, np.isfinite(col[c]) & (col[c] <= 0), "is not a price: prices must be above 0")
        for c in PRICES
    ]
    checks.append(("high", col["high"] < col["low"], "is below that day's low"))
    checks.append(("volume", col["volume"] < 0, "is negative: a volume is 0 or more"))
    for column, bad, what in checks:
        if bad.any():
            w, d = (int(i) for i in np.argwhere(bad)[0])
            more = int(bad.sum()) - 1
            where = f"window {w + 1} of {raw.shape[0]}, day {d + 1} of {raw.shape[1]}"
            newest = " (the newest)" if d == raw.shape[1] - 1 else ""
            tail = f" ({more} more value(s) like it)" if more else ""
            value = float(raw[w, d, OHLCV.index(column)])
            return f"{where}{newest}, column {column}: {value!r} {what}{tail}"
    return None


def model_inputs(meta: dict[str, Any], ohlcv_windows: np.ndarray, target: str) -> np.ndarray:
    """Raw OHLCV windows in the layout a logged model takes (see
    :func:`stockcast.serving.input_layout`)."""
    from stockcast.serving import input_layout

    if input_layout(meta) == "ohlcv":
        return ohlcv_windows

    return ohlcv_windows[..., OHLCV.index(target)]


def band_widths(calibration: Any, fixed: dict[str, float], prices: np.ndarray) -> dict[str, Any]:
    """Half-widths by level name for windows of target ``prices`` (n, context): a
    :class:`stockcast.intervals.Calibration`'s, from each window's realised volatility, at
    the levels of ``fixed`` (the static widths logged with a model); ``fixed`` itself without
    one."""
    if calibration is None:
        return fixed
    from stockcast.intervals import window_volatility

    sigma = window_volatility(prices, calibration.days)
    return calibration.widths(tuple(_level(name) / 100 for name in fixed), sigma)


def calibration_of(model: Any) -> Any:
    """The interval calibration inside a loaded pyfunc (None: it has fixed widths only)."""
    try:
        inner = model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a python model of ours: fixed widths
        return None
    return getattr(inner, "calibration", None)


def forecast(
    model: Any,
    ohlcv: np.ndarray,
    horizon: int,
    target: str,
    bands: Any = None,
) -> list[dict[str, float]]:
    """The next ``horizon`` days from a logged model and the raw OHLCV history.

    Each forecast is fed back as a flat day (open = high = low = close = the forecast, the
    last volume) to forecast the next. The intervals are calibrated for one day ahead; for
    step h their log half-width is widened by sqrt(h), as for a random walk: an
    approximation, not a calibrated interval. ``bands``: the champion's latest calibration
    (:class:`stockcast.registry.Champion`: a :class:`stockcast.intervals.Calibration`, its
    miscoverage nudged by the ledger, or fixed half-widths by level name), else the model's
    own.

    Returns:
        One mapping per step: ``forecast`` and ``lower_<level>`` / ``upper_<level>``.
    """
    import math

    from stockcast.serving import point_forecast

    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window")))
    fixed = {str(k): float(v) for k, v in meta.get("intervals", {}).items()}
    calibration = calibration_of(model) if bands is None else None
    if isinstance(bands, dict):
        fixed = {str(k): float(v) for k, v in bands.items()}
    elif bands is not None:
        calibration = bands
    history = np.asarray(ohlcv, dtype="float64")
    if len(history) < needed:
        raise ValueError(f"need {needed} days of history, have {len(history)}")
    history = history[-needed:]
    column = OHLCV.index(target)
    out = []
    for step in range(1, horizon + 1):
        point = float(point_forecast(model.predict(model_inputs(meta, history[None], target)))[0])
        widths = band_widths(calibration, fixed, history[None, :, column])
        stretched = {k: np.asarray(w).reshape(-1) * math.sqrt(step) for k, w in widths.items()}
        frame = forecast_frame(np.array([point]), stretched)
        out.append({k: float(v) for k, v in frame.iloc[0].items()})
        history = np.vstack([history[1:], [point, point, point, point, history[-1, 4]]])
    return out
