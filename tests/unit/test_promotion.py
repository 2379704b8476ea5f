"""Choice and promotion: the best forecaster of the backtest, network or baseline, then gates
relative to baselines on the same span, then the champion on the same test span."""

from __future__ import annotations

import pytest

from stockcast.config import config_from_dict
from stockcast.promotion import (
    Gate,
    choose_candidate,
    decide_promotion,
    gates,
    leaders,
)
from stockcast.scores import CandidateScores, SpanScores, selection_span

LIMITS = (Gate("rmse_vs_best_baseline", 1.0), Gate("rmse_vs_naive", 1.0))
GOOD = {"rmse_vs_best_baseline": 0.98, "rmse_vs_naive": 0.7, "mase": 4.5}


def test_first_candidate_that_passes_the_gates_is_promoted():
    d = decide_promotion(9.0, None, GOOD, LIMITS)
    assert d.promote and "no champion yet" in d.reason
    assert "backtest rmse_vs_best_baseline 0.9800" in d.reason


def test_a_gate_at_its_limit_passes_and_just_above_it_rejects():
    at = {**GOOD, "rmse_vs_best_baseline": 1.0}
    assert decide_promotion(9.0, None, at, LIMITS).promote  # the baseline itself: ratio 1
    above = {**GOOD, "rmse_vs_best_baseline": 1.0001}
    d = decide_promotion(9.0, None, above, LIMITS)
    assert not d.promote and "backtest rmse_vs_best_baseline 1.0001 > 1.0" in d.reason
    assert decide_promotion(9.0, None, {**GOOD, "rmse_vs_naive": 1.0}, LIMITS).promote
    d = decide_promotion(9.0, None, {**GOOD, "rmse_vs_naive": 1.01}, LIMITS)
    assert not d.promote and "rmse_vs_naive 1.0100 > 1.0" in d.reason


def test_a_strict_gate_rejects_at_its_limit():
    limits = (Gate("mase", 1.0, strict=True),)
    assert not decide_promotion(9.0, None, {"mase": 1.0}, limits).promote
    assert decide_promotion(9.0, None, {"mase": 0.999}, limits).promote


def test_a_missing_fold_rejects():
    d = decide_promotion(9.0, None, {**GOOD, "rmse_vs_best_baseline": float("nan")}, LIMITS)
    assert not d.promote and "missing" in d.reason


def test_gates_can_be_turned_off():
    bad = {"rmse_vs_best_baseline": 3.0, "rmse_vs_naive": 3.0, "mase": 9.0}
    off = (Gate("rmse_vs_best_baseline", None), Gate("mase", None, strict=True))
    assert decide_promotion(12.0, None, bad, off).promote


def test_must_beat_the_champion_on_the_same_span():
    better = decide_promotion(8.0, 9.0, GOOD, LIMITS, previous_version="3")
    assert better.promote and better.previous_version == "3" and "champion v3" in better.reason
    worse = decide_promotion(9.5, 9.0, GOOD, LIMITS, previous_version="3")
    assert not worse.promote and ">= champion v3" in worse.reason
    assert not decide_promotion(9.0, 9.0, GOOD, LIMITS, previous_version="3").promote


def test_validation_is_the_gate_without_folds():
    d = decide_promotion(9.0, None, {**GOOD, "rmse_vs_naive": 1.1}, LIMITS, gate_span="val")
    assert not d.promote and d.reason.startswith("val rmse_vs_naive")


def test_default_gates_are_relative_to_baselines_and_mase_is_off():
    cfg = config_from_dict({"data": {"sources": ["x.csv"]}})
    by_metric = {g.metric: g for g in gates(cfg.register)}
    assert by_metric["rmse_vs_best_baseline"].limit == 1.0
    assert by_metric["mase"].limit is None  # scaled by another span: reported, never a gate


def _scores(**rmse: float) -> dict[str, CandidateScores]:
    kinds = {"naive": "baseline", "last_close": "baseline", "drift": "baseline"}
    out = {}
    for name, value in rmse.items():
        span = SpanScores.missing()
        span = SpanScores(**{**span.__dict__, "rmse": value, "dm_p_value": 0.01})
        out[name] = CandidateScores(name, kinds.get(name, "network"), span, span, span)
    return out


def test_the_best_baseline_is_chosen_when_no_network_beats_it():
    scores = _scores(naive=19.6, last_close=11.9, drift=19.7, gru=12.0, lstm=12.3)
    name, why = choose_candidate(scores, "backtest")
    assert name == "last_close" and "does not beat the best baseline" in why


def test_a_network_that_beats_the_best_baseline_is_chosen():
    scores = _scores(naive=19.6, last_close=11.9, gru=11.5, lstm=11.7)
    name, why = choose_candidate(scores, "backtest")
    assert name == "gru" and "beats the best baseline" in why


def test_a_tie_keeps_the_baseline():
    assert choose_candidate(_scores(last_close=11.9, gru=11.9), "backtest")[0] == "last_close"


def test_min_improvement_and_the_p_value_are_enforced():
    scores = _scores(last_close=10.0, gru=9.8)  # 2% better, p = 0.01
    assert choose_candidate(scores, "backtest", min_improvement=0.01)[0] == "gru"
    assert choose_candidate(scores, "backtest", min_improvement=0.03)[0] == "last_close"
    assert choose_candidate(scores, "backtest", max_p_value=0.05)[0] == "gru"
    name, why = choose_candidate(scores, "backtest", max_p_value=0.01)
    assert name == "last_close" and "not significant" in why


def test_a_network_without_a_backtest_score_cannot_be_chosen():
    scores = _scores(last_close=10.0, gru=float("nan"), lstm=10.5)
    assert choose_candidate(scores, "backtest")[0] == "last_close"
    scores = _scores(last_close=10.0, gru=float("nan"))
    name, why = choose_candidate(scores, "backtest")
    assert name == "last_close" and "no network" in why


def test_the_leaders_are_the_best_network_and_the_best_baseline_of_the_span():
    scores = _scores(naive=19.6, last_close=11.9, drift=19.7, gru=12.0, lstm=11.8)
    assert leaders(scores, "backtest") == ("lstm", "last_close")
    no_network = _scores(naive=2.0, drift=1.0, gru=float("nan"))
    assert leaders(no_network, "val") == (None, "drift")
    with pytest.raises(ValueError, match="no baseline scored on val"):
        leaders(_scores(gru=1.0), "val")


def test_the_backtest_chooses_when_there_is_one():
    assert selection_span(3) == "backtest"
    assert selection_span(0) == "val"


def test_without_baselines_there_is_no_choice():
    with pytest.raises(ValueError, match="no baseline"):
        choose_candidate(_scores(gru=1.0), "val")


def test_every_branch_returns_the_whole_decision():
    """Each outcome as a whole value: the flag, the exact reason and every figure carried."""
    from stockcast.promotion import Decision

    strict = (*LIMITS, Gate("mase", 5.0, strict=True))
    passed = "; val rmse_vs_best_baseline 0.9800; val rmse_vs_naive 0.7000; val mase 4.5000"
    assert decide_promotion(9.0, None, GOOD, strict, None, "val") == Decision(
        True, f"no champion yet{passed}", 9.0, None, None
    )
    assert decide_promotion(9.0, 9.5, GOOD, strict, "3", "val") == Decision(
        True, f"test rmse 9.0000 < champion v3 9.5000{passed}", 9.0, 9.5, "3"
    )
    assert decide_promotion(9.5, 9.5, GOOD, strict, "3") == Decision(
        False, "test rmse 9.5000 >= champion v3 9.5000 on the same span", 9.5, 9.5, "3"
    )
    assert decide_promotion(9.0, 9.5, {**GOOD, "mase": 5.0}, strict, "3") == Decision(
        False, "backtest mase 5.0000 >= 5.0", 9.0, 9.5, "3"
    )
    assert decide_promotion(9.0, 9.5, {"rmse_vs_naive": 0.5}, LIMITS, "3") == Decision(
        False,
        "backtest rmse_vs_best_baseline missing (a fold failed?): cannot judge it",
        9.0,
        9.5,
        "3",
    )
    # a gate switched off is never consulted, even when its value is missing
    off = (Gate("rmse_vs_best_baseline", None), Gate("rmse_vs_naive", 1.0))
    assert decide_promotion(9.0, None, {"rmse_vs_naive": 0.5}, off) == Decision(
        True, "no champion yet; backtest rmse_vs_naive 0.5000", 9.0, None, None
    )


def test_gates_read_every_limit_from_params():
    cfg = config_from_dict(
        {
            "data": {"sources": ["x.csv"]},
            "register": {"max_rmse_vs_best_baseline": 0.9, "max_rmse_vs_naive": 0.8, "max_mase": 2},
        }
    )
    assert gates(cfg.register) == (
        Gate("rmse_vs_best_baseline", 0.9),
        Gate("rmse_vs_naive", 0.8),
        Gate("mase", 2, strict=True),
    )
