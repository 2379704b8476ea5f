"""The drift stage's logic: the newest daily returns against the training span, per ticker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from stockcast.config import Config
from stockcast.errors import StockcastError
from stockcast.fdr import benjamini_hochberg


@dataclass
class Drift:
    """One ticker's newest returns against its training span's."""

    ticker: str
    reference_days: int
    recent_days: int
    ks_statistic: float
    ks_p_value: float
    levene_p_value: float
    volatility_ratio: float  # std of recent returns / std of training returns
    # Both set once every ticker is tested: min(KS, Levene) adjusted by Benjamini-Hochberg
    # across the run's tickers (one ticker: its own p-value), and whether it is below
    # ``drift.p_value``
    adjusted_p_value: float = float("nan")
    drift: bool = False


def detect_drift(frame: pd.DataFrame, target: str, cfg: Config) -> list[Drift]:
    """Per ticker, the last ``drift.recent_days`` daily log returns against the training span.

    The training span is what the models learn from: every row before the validation and
    test spans (``window.val_days`` + ``window.test_days``, and the backtest folds). Two
    tests: two-sample Kolmogorov-Smirnov on the return distribution and Levene's test on
    their spread (volatility). A ticker drifted when the smaller p-value of the two, adjusted
    by Benjamini-Hochberg across the run's tickers, is below ``drift.p_value``: with 500
    tickers of unchanged random walks, unadjusted tests at 0.01 flag about ten a day by
    chance, and one flagged ticker makes a global model's day cold.

    Args:
        frame: the validated canonical table (``ticker``, ``date``, price columns).
        target: the forecast column.
        cfg: the configuration.
    """
    from scipy import stats

    held_out = (
        cfg.window.val_days + cfg.window.test_days + cfg.backtest.folds * cfg.backtest.fold_days
    )
    out = []
    for ticker, rows in frame.sort_values(["ticker", "date"]).groupby("ticker", sort=True):
        prices = rows[target].to_numpy(dtype="float64")
        returns = np.diff(np.log(prices))
        reference = returns[: max(0, len(prices) - held_out - 1)]
        recent = returns[-cfg.drift.recent_days :]
        if len(reference) < 2 or len(recent) < 2:
            raise StockcastError(
                f"{ticker}: drift needs returns in both spans; training span has "
                f"{len(reference)}, recent span {len(recent)}"
            )
        ks = stats.ks_2samp(reference, recent)
        levene = stats.levene(reference, recent)
        out.append(
            Drift(
                str(ticker),
                len(reference),
                len(recent),
                float(ks.statistic),
                float(ks.pvalue),
                float(levene.pvalue),
                float(np.std(recent) / np.std(reference)),
            )
        )
    adjusted = benjamini_hochberg({d.ticker: min(d.ks_p_value, d.levene_p_value) for d in out})
    for d in out:
        d.adjusted_p_value = adjusted[d.ticker]
        d.drift = bool(d.adjusted_p_value < cfg.drift.p_value)
    return out


SHOWN = 20  # tickers listed one by one; beyond, only the drifted ones and a count


def log_lines(report: dict[str, Any], p_value: float) -> list[tuple[str, bool]]:
    """The drift stage's log: (line, drifted). Every ticker up to :data:`SHOWN` of them,
    else the drifted ones only; with several tickers, a line that counts them against
    what the unadjusted tests would have flagged."""
    tickers = report["tickers"]
    shown = tickers if len(tickers) <= SHOWN else [d for d in tickers if d["drift"]]
    lines = [
        (
            f"{d['ticker']} drift={d['drift']}: KS p={d['ks_p_value']:.4g}, Levene p="
            f"{d['levene_p_value']:.4g}, adjusted p={d['adjusted_p_value']:.4g}, volatility "
            f"x{d['volatility_ratio']:.2f} (last {d['recent_days']} vs "
            f"{d['reference_days']} returns)",
            bool(d["drift"]),
        )
        for d in shown
    ]
    if len(tickers) > 1:
        flagged = sum(1 for d in tickers if d["drift"])
        raw = sum(1 for d in tickers if min(d["ks_p_value"], d["levene_p_value"]) < p_value)
        lines.append(
            (
                f"drift in {flagged} of {len(tickers)} tickers: Benjamini-Hochberg at "
                f"{p_value:g} across them ({raw} below {p_value:g} before adjusting, where "
                f"chance alone gives about {len(tickers) * (1 - (1 - p_value) ** 2):.1f}: "
                "two tests a ticker)",
                flagged > 0,
            )
        )
    return lines


def drift_report(results: list[Drift]) -> dict[str, Any]:
    return {"drift": any(r.drift for r in results), "tickers": [asdict(r) for r in results]}
