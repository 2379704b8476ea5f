"""Target transforms: what the network sees instead of raw price levels, and the way back.

``level`` is the seed's choice. ``diff`` (p_t - p_{t-1}) and ``log_return`` (log p_t/p_{t-1})
let a scaler fitted on the training span still cover prices far above that span.
"""

from __future__ import annotations

import numpy as np

from stockcast.columns import OHLCV
from stockcast.config import INPUTS, TRANSFORMS


def forward(prices: np.ndarray, transform: str, anchor: np.ndarray | None = None) -> np.ndarray:
    """The transformed series, same length as ``prices``; element 0 of a change is 0.

    Args:
        prices: the series.
        transform: ``level`` | ``diff`` | ``log_return``.
        anchor: the series a change is measured from (day t against ``anchor[t-1]``, e.g.
            today's open against yesterday's close); default ``prices`` itself.
    """
    prices = np.asarray(prices, dtype="float64")
    if transform == "level":
        return prices.copy()
    base = prices if anchor is None else np.asarray(anchor, dtype="float64")
    out = np.zeros_like(prices)
    if transform == "diff":
        out[1:] = prices[1:] - base[:-1]
    elif transform == "log_return":
        out[1:] = np.log(prices[1:]) - np.log(base[:-1])
    else:
        raise ValueError(f"unknown transform {transform!r}; choose one of {list(TRANSFORMS)}")
    return out


def inverse(values: np.ndarray, previous: np.ndarray, transform: str) -> np.ndarray:
    """Prices from transformed forecasts, given each forecast's previous price."""
    values = np.asarray(values, dtype="float64")
    if transform == "level":
        return values
    if transform == "diff":
        return np.asarray(previous, dtype="float64") + values
    if transform == "log_return":
        return np.asarray(previous, dtype="float64") * np.exp(values)
    raise ValueError(f"unknown transform {transform!r}; choose one of {list(TRANSFORMS)}")


def context(window: int, transform: str, inputs: tuple[str, ...] = ()) -> int:
    """Raw rows needed to form one input window: a change needs one row more."""
    return window if transform == "level" and not inputs else window + 1


def anchor_column(target: str, anchor: str) -> str:
    """The OHLCV column a forecast change is measured from (``anchor``: target | close)."""
    return target if anchor == "target" else anchor


def needed_columns(target: str, inputs: tuple[str, ...], anchor: str) -> dict[str, list[str]]:
    """The raw columns a feature set reads, each with the settings that need it."""
    needs: dict[str, list[str]] = {target: ["data.target"]}
    needs.setdefault(anchor_column(target, anchor), []).append(f"features.anchor: {anchor}")
    uses = {"volume_change": ("volume",), "range": ("high", "low"), "intraday": ("close", "open")}
    for name in inputs:
        for column in uses.get(name, (name,)):
            needs.setdefault(column, []).append(f"features.inputs: {name}")
    return needs


def feature_matrix(
    ohlcv: np.ndarray,
    target: str,
    transform: str,
    inputs: tuple[str, ...] = (),
    anchor: str = "target",
) -> np.ndarray:
    """Per-day model inputs from raw (rows, 5) OHLCV: the transformed target, then extras.

    Column 0 is the target on day t against the anchor on day t-1 (``anchor: close``: today's
    open against yesterday's close). Extras: ``open|high|low|close`` (transformed like the
    target), ``volume_change`` (change of log(1 + volume)), ``range`` (log(high / low)) and
    ``intraday`` (log(close / open), the same day's move). Row 0 of a change is 0.

    Returns:
        (rows, 1 + len(inputs)) float64.
    """
    ohlcv = np.asarray(ohlcv, dtype="float64")
    column = {name: ohlcv[:, i] for i, name in enumerate(OHLCV)}
    features = [forward(column[target], transform, column[anchor_column(target, anchor)])]
    for name in inputs:
        if name in ("open", "high", "low", "close"):
            features.append(forward(column[name], transform))
        elif name == "volume_change":
            features.append(forward(np.log1p(np.maximum(column["volume"], 0)), "diff"))
        elif name == "range":
            features.append(np.log(column["high"] / column["low"]))
        elif name == "intraday":
            features.append(np.log(column["close"] / column["open"]))
        else:
            raise ValueError(f"unknown input {name!r}; choose from {list(INPUTS)}")
    return np.stack(features, axis=1)
