"""Target transforms: what the network sees instead of raw price levels, and the way back.

``level`` is the seed's choice. ``diff`` (p_t - p_{t-1}) and ``log_return`` (log p_t/p_{t-1})
let a scaler fitted on the training span still cover prices far above that span.
"""

from __future__ import annotations

import numpy as np

from stockcast.config import TRANSFORMS


def forward(prices: np.ndarray, transform: str) -> np.ndarray:
    """The transformed series, same length as ``prices``; element 0 of a change is 0."""
    prices = np.asarray(prices, dtype="float64")
    if transform == "level":
        return prices.copy()
    out = np.zeros_like(prices)
    if transform == "diff":
        out[1:] = np.diff(prices)
    elif transform == "log_return":
        out[1:] = np.diff(np.log(prices))
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


def context(window: int, transform: str) -> int:
    """Raw prices needed to form one input window: a change needs one price more."""
    return window if transform == "level" else window + 1
