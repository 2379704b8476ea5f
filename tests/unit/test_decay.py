"""The decay rule on a synthetic series whose champion goes bad, and the summary's ledger
part."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockcast import ledger, live
from stockcast.config import MonitorConfig


def served(bias_from: int, n: int = 60, bias: float = 3.0, seed: int = 0) -> pd.DataFrame:
    """A random walk's open; the champion forecasts last close + noise, off by ``bias``
    (in daily moves) from day ``bias_from``."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, n + 1))
    actual = close[1:] + rng.normal(0, 0.2, n)
    forecast = close[:-1] + rng.normal(0, 0.1, n)
    forecast[bias_from:] += bias
    days = pd.bdate_range("2026-01-05", periods=n + 1)
    return pd.DataFrame(
        {
            "ticker": "AAA",
            "made_on": [f"{d:%Y-%m-%d}" for d in days[:-1]],
            "actual_date": [f"{d:%Y-%m-%d}" for d in days[1:]],
            "actual": actual,
            "forecast": forecast,
            "baseline_forecast": close[:-1],
        }
    )


def test_a_champion_that_goes_bad_is_decayed_and_a_sound_one_holds():
    cfg = MonitorConfig(days=20, max_rmse_vs_last_close=1.1, max_p_value=0.1)
    sound = live.decay("AAA", served(bias_from=60), cfg)
    bad = live.decay("AAA", served(bias_from=35), cfg)
    assert sound is not None and not sound.decayed and sound.ratio < 1.1
    assert bad is not None and bad.decayed and bad.ratio > 2 and bad.p_value < 0.01
    assert bad.days == 20
    assert bad.message(cfg).startswith("AAA: live RMSE over the last 20 scored day(s) is ")
    assert "decayed (decay past 1.1 with p < 0.1)" in bad.message(cfg)


def test_decay_reads_only_the_last_days():
    cfg = MonitorConfig(days=20)
    # bad for 30 days, then sound again for the last 20: holding
    frame = served(bias_from=10)
    frame.loc[40:, "forecast"] -= 3.0
    reading = live.decay("AAA", frame, cfg)
    assert reading is not None and not reading.decayed


def test_no_reading_until_enough_days_are_scored():
    cfg = MonitorConfig(days=20)
    frame = served(bias_from=0, n=25)
    frame.loc[10:, "actual"] = np.nan  # 10 scored, 15 open
    assert live.decay("AAA", frame, cfg) is None


def test_a_worse_ratio_that_chance_explains_is_not_decay():
    # slightly worse, noisy: over the ratio bound, but the DM p-value is large
    frame = served(bias_from=60, seed=3)
    frame["forecast"] = frame["baseline_forecast"] + 0.3  # a small bias beside daily moves of 1
    strict = MonitorConfig(days=20, max_rmse_vs_last_close=1.0, max_p_value=0.01)
    reading = live.decay("AAA", frame, strict)
    assert reading is not None and reading.ratio > 1.0 and reading.p_value > 0.01
    assert not reading.decayed
    ratio_only = MonitorConfig(days=20, max_rmse_vs_last_close=1.0, max_p_value=None)
    reading = live.decay("AAA", frame, ratio_only)
    assert reading is not None and reading.decayed and reading.p_value is None


def test_the_summary_shows_the_forecasts_and_live_skill():
    row = ledger.forecast_row(
        "AAA",
        pd.Timestamp("2026-01-05"),
        pd.Timestamp("2026-01-06"),
        "3",
        "gru",
        {"forecast": 10.0, "lower_80": 9.5, "upper_80": 10.5},
        9.9,
        pd.Timestamp("2026-01-05 10:00"),
    )
    frame = served(bias_from=60).assign(model_version="3", variant="gru", recorded_at="x")
    frame["lower_80"], frame["upper_80"] = frame["forecast"] - 1, frame["forecast"] + 1
    frame["hit_80"] = (frame["actual"] >= frame["lower_80"]) & (
        frame["actual"] <= frame["upper_80"]
    )
    summary = ledger.summary(frame)
    text = live.markdown([row], summary, ["**Decay:** none."])
    assert "| AAA | 2026-01-06 | v3 | gru | 10.00 | 9.50 – 10.50 | 9.90 |" in text
    line = next(x for x in text.splitlines() if x.startswith("| AAA | 3 gru | 60 |"))
    s = summary.set_index("model_version").loc["3"]
    assert f"| {s['live_rmse_20']:.3f} | {s['live_rmse_20_vs_last_close']:.3f} |" in line
    assert text.rstrip().endswith("**Decay:** none.")
    assert "No forecast scored yet" in live.markdown([], pd.DataFrame(), [])
