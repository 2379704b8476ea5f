"""The train stage's plan is pure: which fits run, where they write, and how a task that
died is still recorded."""

from __future__ import annotations

from pathlib import Path

from stockcast.train import GLOBAL_MODEL, MAIN_MODEL, FitJob, TrainResult, collect, plan_fits

MANIFEST = {
    "AAA": {"file": "AAA.npz", "folds": ["AAA.fold1.npz", "AAA.fold2.npz"]},
    "BBB": {"file": "BBB.npz", "folds": ["BBB.fold1.npz", "BBB.fold2.npz"]},
}


def test_per_ticker_plans_the_main_model_and_every_fold_of_every_variant():
    jobs = plan_fits(MANIFEST, ("gru", "lstm"), "per_ticker", Path("p"), Path("m"))
    assert len(jobs) == 2 * 2 * 3
    main = [j for j in jobs if j.fold == MAIN_MODEL]
    assert {(j.ticker, j.variant) for j in main} == {
        ("AAA", "gru"),
        ("AAA", "lstm"),
        ("BBB", "gru"),
        ("BBB", "lstm"),
    }
    fold2 = next(j for j in jobs if (j.ticker, j.variant, j.fold) == ("BBB", "lstm", 2))
    assert fold2.files == (str(Path("p/BBB.fold2.npz")),)
    assert fold2.out_dir == str(Path("m/BBB/lstm/fold2"))
    assert next(j for j in main if j.ticker == "AAA").out_dir == str(Path("m/AAA/gru"))


def test_global_scope_plans_one_fit_per_variant_and_fold_over_every_ticker():
    jobs = plan_fits(MANIFEST, ("gru",), "global", Path("p"), Path("m"))
    assert [(j.ticker, j.fold) for j in jobs] == [
        (GLOBAL_MODEL, 0),
        (GLOBAL_MODEL, 1),
        (GLOBAL_MODEL, 2),
    ]
    assert jobs[1].files == (str(Path("p/AAA.fold1.npz")), str(Path("p/BBB.fold1.npz")))
    assert jobs[0].out_dir == str(Path(f"m/{GLOBAL_MODEL}/gru"))


def test_a_task_that_died_is_recorded_as_a_failed_fit_of_its_own_job():
    jobs = [FitJob("AAA", "gru", 0, ("a",), "o"), FitJob("AAA", "lstm", 2, ("b",), "o2")]
    ok = TrainResult("AAA", "gru", best_val_loss=0.1)
    results = collect(jobs, [ok, "worker died"])
    assert results[0] is ok
    assert (results[1].ticker, results[1].variant, results[1].fold) == ("AAA", "lstm", 2)
    assert results[1].error == "task failed: worker died" and not results[1].ok
