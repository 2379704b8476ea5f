"""The train stage's plan is pure: which fits run, on which window sets, where their models
go, and how a task that died is still recorded."""

from __future__ import annotations

from stockcast.train import (
    GLOBAL_MODEL,
    MAIN_MODEL,
    FitJob,
    Fitted,
    TrainResult,
    collect,
    plan_fits,
    warm_starts,
)

MANIFEST = {
    "AAA": {"file": "AAA.npz", "folds": ["AAA.fold1.npz", "AAA.fold2.npz"]},
    "BBB": {"file": "BBB.npz", "folds": ["BBB.fold1.npz", "BBB.fold2.npz"]},
}


def test_per_ticker_plans_the_main_model_and_every_fold_of_every_variant():
    jobs = plan_fits(MANIFEST, ("gru", "lstm"), "per_ticker")
    assert len(jobs) == 2 * 2 * 3
    main = [j for j in jobs if j.fold == MAIN_MODEL]
    assert {(j.ticker, j.variant) for j in main} == {
        ("AAA", "gru"),
        ("AAA", "lstm"),
        ("BBB", "gru"),
        ("BBB", "lstm"),
    }
    fold2 = next(j for j in jobs if (j.ticker, j.variant, j.fold) == ("BBB", "lstm", 2))
    assert fold2.files == ("BBB.fold2.npz",)
    assert fold2.out == "BBB/lstm/fold2"
    assert next(j for j in main if j.ticker == "AAA").out == "AAA/gru"


def test_global_scope_plans_one_fit_per_variant_and_fold_over_every_ticker():
    jobs = plan_fits(MANIFEST, ("gru",), "global")
    assert [(j.ticker, j.fold) for j in jobs] == [  # walk-forward order: the main model last
        (GLOBAL_MODEL, 1),
        (GLOBAL_MODEL, 2),
        (GLOBAL_MODEL, 0),
    ]
    assert jobs[0].files == ("AAA.fold1.npz", "BBB.fold1.npz")
    assert jobs[2].files == ("AAA.npz", "BBB.npz")
    assert jobs[2].out == f"{GLOBAL_MODEL}/gru" and jobs[1].out == f"{GLOBAL_MODEL}/gru/fold2"
    assert warm_starts(jobs) == {
        f"{GLOBAL_MODEL}/gru/fold2": f"{GLOBAL_MODEL}/gru/fold1",
        f"{GLOBAL_MODEL}/gru/main": f"{GLOBAL_MODEL}/gru/fold2",
    }


def test_warm_starts_chain_each_ticker_and_variant_through_its_folds_to_the_main_model():
    jobs = plan_fits(MANIFEST, ("gru", "lstm"), "per_ticker")
    sources = warm_starts(jobs)
    assert sources == {
        f"{t}/{v}/{later}": f"{t}/{v}/{earlier}"
        for t in ("AAA", "BBB")
        for v in ("gru", "lstm")
        for earlier, later in (("fold1", "fold2"), ("fold2", "main"))
    }
    order = [j.name for j in jobs]  # each fit comes after the one it starts from
    assert all(order.index(src) < order.index(fit) for fit, src in sources.items())
    # no folds: every main model starts cold
    bare = {"AAA": {"file": "AAA.npz"}, "BBB": {"file": "BBB.npz", "folds": []}}
    assert warm_starts(plan_fits(bare, ("gru",), "per_ticker")) == {}


def test_a_task_that_died_is_recorded_as_a_failed_fit_of_its_own_job():
    jobs = [FitJob("AAA", "gru", 0, ("a",), "o"), FitJob("AAA", "lstm", 2, ("b",), "o2")]
    ok = Fitted(TrainResult("AAA", "gru", best_val_loss=0.1), b"model")
    fits = collect(jobs, [ok, "worker died"])
    assert fits[0] is ok
    died = fits[1].result
    assert (died.ticker, died.variant, died.fold) == ("AAA", "lstm", 2)
    assert died.error == "task failed: worker died" and not died.ok and fits[1].model is None


def test_fits_per_worker_cuts_the_plan_into_chunks_for_the_processes_and_dask_runners():
    from stockcast.config import ExecutionConfig
    from stockcast.train import chunks

    jobs = plan_fits(MANIFEST, ("gru", "lstm"), "per_ticker")  # 12 fits
    recycled = ExecutionConfig(runner="processes", max_workers=2, fits_per_worker=2)
    cut = chunks(jobs, recycled)
    assert [len(c) for c in cut] == [4, 4, 4] and [j for c in cut for j in c] == jobs
    # a fit's warm start comes from its own chunk or an earlier one
    where = {j.name: k for k, c in enumerate(cut) for j in c}
    assert all(where[src] <= where[fit] for fit, src in warm_starts(jobs).items())
    assert chunks(jobs, ExecutionConfig(runner="processes", max_workers=2)) == [jobs]
    assert chunks(jobs, ExecutionConfig(runner="threads", fits_per_worker=2)) == [jobs]
    on_dask = ExecutionConfig(runner="dask", max_workers=2, fits_per_worker=2)
    assert chunks(jobs, on_dask) == cut
    assert [len(c) for c in chunks(jobs, ExecutionConfig("processes", 5, fits_per_worker=1))] == [
        5,
        5,
        2,
    ]
