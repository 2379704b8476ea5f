"""The daily job's bands: an adaptive champion's miscoverage nudged by the days it served
(the ledger's hits), so a run of misses widens tomorrow's band (issue 31)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockcast.intervals import Calibration
from stockcast.registry import Champion
from stockcast.stages.forecast import nudged

LEVELS = (0.8, 0.95)
CAL = Calibration("adaptive", tuple(np.linspace(0.1, 3.0, 200)), days=20, gamma=0.05)


def _ledger(hits_80: list[bool], version: str = "3", ticker: str = "AAA") -> pd.DataFrame:
    days = pd.bdate_range("2026-01-05", periods=len(hits_80))
    return pd.DataFrame(
        {
            "ticker": ticker,
            "made_on": [f"{d:%Y-%m-%d}" for d in days],
            "model_version": version,
            "actual": 1.0,
            "hit_80": pd.array(hits_80, dtype="boolean"),
            "hit_95": pd.array([True] * len(hits_80), dtype="boolean"),
        }
    )


def test_misses_served_widen_the_next_band_and_hits_narrow_it():
    champion = Champion("3", None, {"80": 0.01, "95": 0.02}, CAL)
    missed = nudged(champion, "AAA", _ledger([False] * 10), LEVELS).calibration
    hit = nudged(champion, "AAA", _ledger([True] * 10), LEVELS).calibration
    assert missed.multiplier(0.8) > CAL.multiplier(0.8) > hit.multiplier(0.8)
    assert missed.alpha(0.8) == pytest.approx(CAL.after(0.8, [False] * 10).alpha(0.8))
    assert missed.alpha(0.95) > CAL.alpha(0.95)  # 10 hits at 95 %: a little narrower


def test_only_this_versions_scored_days_of_this_ticker_count():
    champion = Champion("3", None, {"80": 0.01}, CAL)
    others = pd.concat(
        [_ledger([False] * 5, version="2"), _ledger([False] * 5, ticker="BBB")], ignore_index=True
    )
    open_row = _ledger([False]).assign(actual=np.nan, hit_80=pd.NA)
    table = pd.concat([others, open_row], ignore_index=True)
    assert nudged(champion, "AAA", table, LEVELS).calibration.alpha(0.8) == pytest.approx(0.2)


def test_fixed_and_static_bands_are_served_as_they_are():
    fixed = Champion("3", None, {"80": 0.01}, None)
    assert nudged(fixed, "AAA", _ledger([False] * 5), LEVELS) is fixed
    assert fixed.bands == {"80": 0.01}
    static = Champion("3", None, {"80": 0.01}, Calibration("static", CAL.scores))
    assert nudged(static, "AAA", _ledger([False] * 5), LEVELS) is static
