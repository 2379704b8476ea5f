"""The promotion rule: beat the naive baseline (when gated) and the current champion."""

from __future__ import annotations

from stockcast.tracking import decide_promotion


def test_first_model_that_beats_naive_is_promoted():
    d = decide_promotion(9.0, 10.0, None, 1.0)
    assert d.promote and "no champion yet" in d.reason


def test_losing_to_naive_is_rejected_even_without_a_champion():
    d = decide_promotion(12.0, 10.0, None, 1.0)
    assert not d.promote and "rmse_vs_naive 1.2000 > 1.0" in d.reason


def test_naive_gate_can_be_turned_off():
    assert decide_promotion(12.0, 10.0, None, None).promote


def test_must_beat_the_champion_on_the_same_span():
    better = decide_promotion(8.0, 10.0, 9.0, 1.0, previous_version="3")
    assert better.promote and better.previous_version == "3" and "champion v3" in better.reason
    worse = decide_promotion(9.5, 10.0, 9.0, 1.0, previous_version="3")
    assert not worse.promote and ">= champion v3" in worse.reason
    tie = decide_promotion(9.0, 10.0, 9.0, 1.0, previous_version="3")
    assert not tie.promote
