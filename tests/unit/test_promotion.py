"""The promotion rule: beat naive on the gate span, then the champion on the same test span."""

from __future__ import annotations

from stockcast.tracking import decide_promotion, select_variant

GOOD = {"mase": 0.95, "rmse_vs_naive": 0.98}


def test_first_model_that_beats_naive_is_promoted():
    d = decide_promotion(9.0, None, GOOD, 1.0, 1.0)
    assert d.promote and "no champion yet" in d.reason and "backtest mase 0.9500" in d.reason


def test_losing_to_naive_on_the_backtest_is_rejected_even_without_a_champion():
    d = decide_promotion(9.0, None, {"mase": 1.2, "rmse_vs_naive": 0.9}, 1.0, 1.0)
    assert not d.promote and "backtest mase 1.2000 >= 1.0" in d.reason
    d = decide_promotion(9.0, None, {"mase": 0.9, "rmse_vs_naive": 1.01}, 1.0, 1.0)
    assert not d.promote and "backtest rmse_vs_naive 1.0100 > 1.0" in d.reason


def test_mase_must_be_strictly_below_its_threshold():
    assert not decide_promotion(9.0, None, {"mase": 1.0, "rmse_vs_naive": 0.9}, 1.0, 1.0).promote


def test_a_missing_fold_rejects():
    d = decide_promotion(9.0, None, {"mase": float("nan"), "rmse_vs_naive": 0.9}, 1.0, 1.0)
    assert not d.promote and "missing" in d.reason


def test_gates_can_be_turned_off():
    bad = {"mase": 3.0, "rmse_vs_naive": 3.0}
    assert decide_promotion(12.0, None, bad, None, None).promote


def test_must_beat_the_champion_on_the_same_span():
    better = decide_promotion(8.0, 9.0, GOOD, 1.0, 1.0, previous_version="3")
    assert better.promote and better.previous_version == "3" and "champion v3" in better.reason
    worse = decide_promotion(9.5, 9.0, GOOD, 1.0, 1.0, previous_version="3")
    assert not worse.promote and ">= champion v3" in worse.reason
    assert not decide_promotion(9.0, 9.0, GOOD, 1.0, 1.0, previous_version="3").promote


def test_validation_is_the_gate_without_folds():
    d = decide_promotion(
        9.0, None, {"mase": 1.3, "rmse_vs_naive": 1.1}, 1.0, 1.0, gate_source="validation"
    )
    assert not d.promote and d.reason.startswith("validation mase")


def test_selection_ranks_by_rmse_vs_naive_in_prices_not_by_scaled_loss():
    # simple_rnn has the lowest scaled loss, gru the lowest RMSE/naive: gru is registered
    scores = {"simple_rnn": 1.0066, "lstm": 1.0077, "gru": 0.9964}
    losses = {"simple_rnn": 0.010, "lstm": 0.012, "gru": 0.011}
    assert select_variant(scores, losses) == "gru"


def test_selection_puts_unscored_variants_last_and_breaks_ties_by_loss():
    losses = {"simple_rnn": 0.010, "lstm": 0.012, "gru": 0.011}
    nan = float("nan")
    assert select_variant({"simple_rnn": nan, "lstm": 1.2, "gru": nan}, losses) == "lstm"
    assert select_variant({"simple_rnn": 1.0, "lstm": 1.0, "gru": 1.0}, losses) == "simple_rnn"
    assert select_variant({}, losses) == "simple_rnn"
