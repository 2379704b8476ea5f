"""The drift stage's logic: the newest daily returns against the training span, per ticker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from stockcast.config import Config
from stockcast.errors import StockcastError


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
    drift: bool


def detect_drift(frame: pd.DataFrame, target: str, cfg: Config) -> list[Drift]:
    """Per ticker, the last ``drift.recent_days`` daily log returns against the training span.

    The training span is what the models learn from: every row before the validation and
    test spans (``window.val_days`` + ``window.test_days``, and the backtest folds). Two
    tests, each flagging drift below ``drift.p_value``: two-sample Kolmogorov-Smirnov on the
    return distribution and Levene's test on their spread (volatility).

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
                bool(min(ks.pvalue, levene.pvalue) < cfg.drift.p_value),
            )
        )
    return out


def drift_report(results: list[Drift]) -> dict[str, Any]:
    return {"drift": any(r.drift for r in results), "tickers": [asdict(r) for r in results]}
