"""Prediction intervals that keep their coverage when volatility moves.

Daily prices cluster their volatility: a band of fixed width calibrated on calm months is too
narrow in a storm and too wide after it. Three methods, each a half-width in log price per
target row (the band is ``forecast * exp(-+w)``), each using only what was known when the
forecast was made:

- ``static``: split conformal on the calibration residuals ``|log(actual / forecast)|``, one
  width for every day (the project's first bands).
- ``scaled``: normalised conformal: the residual divided by the series' recent realised
  volatility (the root mean square of its last ``k`` daily log changes before the target), so
  the width is ``q * sigma_t`` and follows the volatility of the days before each forecast.
- ``adaptive``: adaptive conformal inference (Gibbs and Candes 2021) on top of ``scaled``: the
  miscoverage level is nudged after every scored day (:func:`nudge`), so a run of misses widens
  the band and a run of hits narrows it.

The interval score (Winkler) ranks methods at a level: the width plus ``2 / alpha`` times the
distance by which the actual falls outside; lower is better, and a band that covers by being
needlessly wide pays for its width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stockcast.config import INTERVAL_METHODS
from stockcast.evaluate import level_name

METHODS = INTERVAL_METHODS
FLOOR = 1e-6  # the smallest volatility a scale takes (a constant stretch of prices)


def log_residuals(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``|log(actual / forecast)|``, the conformal score of every row."""
    return np.abs(np.log(np.asarray(actual, "float64") / np.asarray(predicted, "float64")))


def realised_volatility(prices: np.ndarray, idx: np.ndarray, days: int) -> np.ndarray:
    """Per target row ``t`` of ``idx``, the root mean square of the series' daily log changes
    over the ``days`` changes before it (``log(p[s] / p[s-1])`` for ``s`` in ``t-days .. t-1``):
    what is known the evening before the forecast. Rows with fewer changes before them use the
    ones there are; a flat stretch gets :data:`FLOOR`."""
    prices = np.asarray(prices, "float64")
    changes = np.diff(np.log(prices), prepend=np.nan)  # changes[s] = log(p[s] / p[s-1])
    squared = np.nan_to_num(changes**2, nan=0.0)
    known = np.concatenate([[0], np.cumsum(~np.isnan(changes))])
    total = np.concatenate([[0.0], np.cumsum(squared)])
    idx = np.asarray(idx)
    start = np.maximum(idx - days, 0)
    count = known[idx] - known[start]
    mean = (total[idx] - total[start]) / np.maximum(count, 1)
    return np.maximum(np.sqrt(mean), FLOOR)


def window_volatility(prices: np.ndarray, days: int) -> np.ndarray:
    """Per window of ``prices`` (n, context), oldest first, the realised volatility of the
    day after it: :func:`realised_volatility` at the row past its end, over the window's last
    ``days`` daily log changes (all it has when shorter)."""
    prices = np.atleast_2d(np.asarray(prices, "float64"))
    end = np.array([prices.shape[1]])
    return np.array([realised_volatility(row, end, days)[0] for row in prices])


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) level)-th smallest score; infinite when
    ``n`` is too small for ``level``, unknown (NaN) without a score."""
    ranked = np.sort(np.asarray(scores, "float64")[np.isfinite(scores)])
    n = len(ranked)
    if n == 0:
        return math.nan
    k = math.ceil((n + 1) * level)
    return float(ranked[k - 1]) if 0 < k <= n else math.inf


@dataclass(frozen=True)
class Calibration:
    """What a method needs to draw tomorrow's band: its calibration scores (residuals, divided
    by their volatility for ``scaled`` and ``adaptive``), the volatility window, and for
    ``adaptive`` its step and each level's current miscoverage."""

    method: str
    scores: tuple[float, ...]
    days: int = 20
    gamma: float = 0.005
    alphas: tuple[tuple[str, float], ...] = ()  # level name -> its current miscoverage

    def alpha(self, level: float) -> float:
        """The miscoverage the band of ``level`` uses now (``1 - level`` until nudged)."""
        return dict(self.alphas).get(level_name(level), 1.0 - level)

    def multiplier(self, level: float) -> float:
        """The band's width per unit of volatility (or the width itself for ``static``)."""
        alpha = self.alpha(level)
        if self.method == "adaptive":
            return _adaptive_quantile(np.sort(np.asarray(self.scores)), alpha)
        return conformal_quantile(np.asarray(self.scores), 1.0 - alpha)

    def half_widths(self, level: float, scale: np.ndarray) -> np.ndarray:
        """Each row's half-width at ``level`` for its volatility ``scale``."""
        q = self.multiplier(level)
        if self.method == "static":
            return np.full(len(scale), q)
        return q * np.asarray(scale, "float64")

    def widths(self, levels: tuple[float, ...], scale: np.ndarray) -> dict[str, np.ndarray]:
        """Each row's half-width per level name, for its volatility ``scale``."""
        return {level_name(level): self.half_widths(level, scale) for level in levels}

    def after(self, level: float, hits: list[bool]) -> Calibration:
        """The calibration once the scored days ``hits`` of the band of ``level`` (oldest
        first; True: the actual fell inside) have nudged its miscoverage; ``static`` and
        ``scaled`` keep theirs."""
        if self.method != "adaptive" or not hits:
            return self
        alpha = self.alpha(level)
        for hit in hits:
            alpha = nudge(alpha, level, not hit, self.gamma)
        alphas = {**dict(self.alphas), level_name(level): alpha}
        return replace(self, alphas=tuple(sorted(alphas.items())))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a model's spec, a version tag); scores to 6 significant digits."""
        return {
            "method": self.method,
            "days": self.days,
            "gamma": self.gamma,
            "alphas": dict(self.alphas),
            "scores": [float(f"{s:.6g}") for s in self.scores],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        alphas = tuple(sorted((str(k), float(v)) for k, v in raw.get("alphas", {}).items()))
        scores = tuple(float(s) for s in raw.get("scores", ()))
        method = str(raw["method"])
        if method not in METHODS:
            raise ValueError(f"interval method {method!r}: expected one of {', '.join(METHODS)}")
        return cls(method, scores, int(raw.get("days", 20)), float(raw.get("gamma", 0.005)), alphas)


def calibrate(
    method: str,
    actual: np.ndarray,
    predicted: np.ndarray,
    scale: np.ndarray,
    days: int = 20,
    gamma: float = 0.005,
) -> Calibration:
    """A method calibrated on rows with forecasts ``predicted``, outcomes ``actual`` and the
    volatility each row's forecast knew (``scale``, from :func:`realised_volatility`)."""
    if method not in METHODS:
        raise ValueError(f"interval method {method!r}: expected one of {', '.join(METHODS)}")
    residuals = log_residuals(actual, predicted)
    scores = residuals if method == "static" else residuals / np.asarray(scale, "float64")
    keep = np.isfinite(scores)
    return Calibration(method, tuple(float(s) for s in scores[keep]), days, gamma)


def run_online(
    cal: Calibration,
    levels: tuple[float, ...],
    actual: np.ndarray,
    predicted: np.ndarray,
    scale: np.ndarray,
) -> tuple[dict[str, np.ndarray], Calibration]:
    """Draw the band of each row in turn, as a daily job would: the half-widths per level (by
    level name) for every row, and the calibration after the last row. ``adaptive`` nudges
    each level's miscoverage after every row's outcome; ``static`` and ``scaled`` keep theirs
    (their calibration set is the one they were given)."""
    if cal.method != "adaptive":
        return {level_name(level): cal.half_widths(level, scale) for level in levels}, cal
    widths = {level_name(level): np.empty(len(actual)) for level in levels}
    residuals = log_residuals(actual, predicted)
    ranked = np.sort(np.asarray(cal.scores))
    alphas = {level_name(level): cal.alpha(level) for level in levels}
    for t in range(len(actual)):
        for level in levels:
            name = level_name(level)
            alpha = alphas[name]
            q = _adaptive_quantile(ranked, alpha)
            width = q * scale[t]
            widths[name][t] = width
            alphas[name] = nudge(alpha, level, bool(residuals[t] > width), cal.gamma)
    after = Calibration(cal.method, cal.scores, cal.days, cal.gamma, tuple(sorted(alphas.items())))
    return widths, after


def nudge(alpha: float, level: float, missed: bool, gamma: float) -> float:
    """The miscoverage after one scored day: Gibbs and Candes' step ``gamma (a - err)`` taken
    on ``log alpha`` and relative to the target ``a = 1 - level``, so the 95 % band moves as
    much, in its own terms, as the 80 % band (an additive step of one size would throw a 95 %
    band to the widest score after a single miss) and the level never leaves (0, 1). The
    miss rate still settles at ``a``: the drift is zero exactly when misses come at rate
    ``a``."""
    target = 1.0 - level
    return min(alpha * math.exp(gamma * (target - float(missed)) / target), 1.0 - 1e-9)


def _adaptive_quantile(ranked: np.ndarray, alpha: float) -> float:
    """The calibration quantile at miscoverage ``alpha`` for the adaptive method: a level
    nudged past what ``n`` scores can resolve takes the largest score (Gibbs and Candes make
    that band infinite; a finite band the size of the worst calibration day serves better and
    moves back as soon as the hits return), one nudged to 1 or more takes zero width; unknown
    (NaN) without a score."""
    n = len(ranked)
    if n == 0:
        return math.nan
    if alpha >= 1:
        return 0.0
    k = math.ceil((n + 1) * (1.0 - alpha))
    return float(ranked[min(max(k, 1), n) - 1])


def covered(actual: np.ndarray, predicted: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Whether each actual lies inside its band."""
    return log_residuals(actual, predicted) <= np.asarray(half_width, "float64")


def winkler(
    actual: np.ndarray, predicted: np.ndarray, half_width: np.ndarray, level: float
) -> float:
    """The mean interval score at ``level``, in price: the band's width, plus ``2 / alpha``
    times how far each actual falls outside it (Gneiting and Raftery 2007)."""
    actual = np.asarray(actual, "float64")
    predicted = np.asarray(predicted, "float64")
    width = np.asarray(half_width, "float64")
    lower, upper = predicted * np.exp(-width), predicted * np.exp(width)
    alpha = 1.0 - level
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return float(np.mean((upper - lower) + (2.0 / alpha) * (below + above)))
