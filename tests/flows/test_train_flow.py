"""The train stage's flow in-process (a temporary Prefect server): the plan mapped onto
parallel tasks, every outcome recorded, one failing fit leaving the others alone, and
``models/`` swapped in whole or not at all."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stockcast.config import config_from_dict
from stockcast.paths import Paths
from stockcast.windows import make_windows, write_windows
from tests.conftest import one_ticker_with_a_fold, synthetic_prices

# trains networks (`make mutate` needs fast tests) and starts a Prefect server
pytestmark = [pytest.mark.fits, pytest.mark.e2e]


def test_train_flow_runs_the_plan_and_records_a_failed_fit(tmp_path: Path, monkeypatch):
    from prefect import tags
    from prefect.runtime import task_run
    from prefect.task_runners import ThreadPoolTaskRunner

    import stockcast.train as train
    from flows.stages.train import train_variants

    paths = Paths(tmp_path)
    sets = [
        make_windows(synthetic_prices(200, t, seed=i), "open", 10, 30, 30, "log_return")
        for i, t in enumerate(("AAA", "BBB"))
    ]
    folds = {
        ws.ticker: [make_windows(synthetic_prices(170, ws.ticker), "open", 10, 30, 30)]
        for ws in sets
    }
    write_windows(sets, paths.processed, folds)
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "train": {"variants": ["gru", "lstm"], "units": [4], "epochs": 2, "patience": 1},
        }
    )
    real_fit = train.fit
    fit_tags = []

    def task_dies_on_bbb_lstm_fold1(ws, variant, cfg, seed, execution, progress, name, init):
        fit_tags.append(sorted(task_run.tags))
        if name == "BBB/lstm/fold1":  # raised outside the fit's own guard: the task dies
            raise OSError("no space left on the worker's disk")
        return real_fit(ws, variant, cfg, seed, execution, progress, name, init)

    monkeypatch.setattr(train, "fit", task_dies_on_bbb_lstm_fold1)
    flow = train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    with tags("stockcast-project:test"):  # as make pipeline runs it
        trained = flow(cfg, paths)
    assert trained == {"AAA": ["gru", "lstm"], "BBB": ["gru", "lstm"]}
    # the fits carry no tags: a tagged task run first asks the server for the tags' slots
    assert fit_tags == [[]] * 8
    backtest = json.loads(paths.backtest_summary.read_text())
    died = backtest["BBB"]["lstm"][0]["error"]  # recorded, not raised
    assert died.startswith("task failed") and "no space left" in died, died
    assert backtest["BBB"]["gru"][0]["error"] is None
    assert backtest["AAA"]["lstm"][0]["fold"] == 1
    main = json.loads(paths.train_summary.read_text())
    assert all(
        r["model_path"] and Path(r["model_path"]).exists()
        for t in main.values()
        for r in t.values()
    )
    # warm starts: each main model began from its fold's model once that fit had ended;
    # BBB/lstm's fold died, so its main model started cold
    for ticker, variant in (("AAA", "gru"), ("AAA", "lstm"), ("BBB", "gru")):
        fold = backtest[ticker][variant][0]
        assert main[ticker][variant]["warm_from"] == f"{ticker}/{variant}/fold1"
        assert main[ticker][variant]["fit_started"] >= fold["fit_ended"]
    assert main["BBB"]["lstm"]["warm_from"] == "" and main["BBB"]["lstm"]["error"] is None


def test_a_fit_past_its_time_budget_fails_alone(tmp_path: Path, monkeypatch):
    """GRU's fit is made slow (5 s per batch); the real time budget stops it and fails it,
    while SimpleRNN, in the same flow run, finishes and keeps its model."""
    import time

    import keras
    from prefect.task_runners import ThreadPoolTaskRunner

    import stockcast.train as train
    from flows.stages.train import train_variants

    real_epoch_log = train.epoch_log

    def slow_for_gru(report, name, max_epochs):
        if "gru" not in name:
            return real_epoch_log(report, name, max_epochs)

        class Slow(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                time.sleep(5)

        return Slow()

    monkeypatch.setattr(train, "epoch_log", slow_for_gru)
    paths, cfg = _one_ticker(tmp_path, timeout=20, epochs=2, patience=1)
    flow = train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    flow(cfg, paths)
    main = json.loads(paths.train_summary.read_text())["AAA"]
    assert "FitTimedOut" in main["gru"]["error"] and "timeout_seconds=20" in main["gru"]["error"]
    assert main["gru"]["model_path"] in (None, "")
    assert main["simple_rnn"]["error"] is None
    assert Path(main["simple_rnn"]["model_path"]).exists()
    assert main["simple_rnn"]["epochs_run"] == 2


def _one_ticker(tmp_path: Path, timeout: int = 3600, **train) -> tuple[Paths, object]:
    """AAA's windows written (no folds) and a config training ``train`` on them."""
    paths = Paths(tmp_path)
    ws = make_windows(synthetic_prices(200, "AAA"), "open", 10, 30, 30, "log_return")
    write_windows([ws], paths.processed, {})
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "backtest": {"folds": 0},
            "train": {"variants": ["simple_rnn", "gru"], "units": [4], **train},
            "execution": {"timeout_seconds": timeout},
        }
    )
    return paths, cfg


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_models_are_swapped_in_whole_or_not_at_all(tmp_path: Path, monkeypatch):
    """A stage that dies after some fits were written leaves models/ byte for byte as the
    last good run left it; its fits go to models.failed/ to read; a leftover of a killed
    run's half-built folder is cleared by the next run, never mixed in."""
    import pytest
    from prefect.task_runners import ThreadPoolTaskRunner

    import stockcast.stages.train as stage
    from flows.stages import train as train_flow
    from stockcast.errors import StockcastError

    paths, cfg = _one_ticker(tmp_path, epochs=1)
    flow = train_flow.train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    flow(cfg, paths)
    good = _tree(paths.models)
    assert {"AAA/gru/model.keras", "AAA/simple_rnn/model.keras", "train.json"} <= set(good)

    real_keep, kept = stage.keep, []

    def dies_after_the_first_fit_is_written(*args, **kwargs):
        if kept:
            raise StockcastError("the disk filled up after one fit was written")
        kept.append(real_keep(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(stage, "keep", dies_after_the_first_fit_is_written)
    cfg = replace(cfg, seed=99)  # other weights: a mix of old and new would show
    with pytest.raises(StockcastError, match="disk filled up"):
        flow(cfg, paths)
    assert _tree(paths.models) == good
    failed = _tree(paths.failed_models)
    assert len([f for f in failed if f.endswith("model.keras")]) == 1
    assert not paths.models.with_name("models.tmp").exists()

    # a killed run leaves models.tmp/ behind: the next run starts it afresh
    monkeypatch.setattr(stage, "keep", real_keep)
    stale = paths.models.with_name("models.tmp") / "AAA/lstm"
    stale.mkdir(parents=True)
    (stale / "model.keras").write_bytes(b"half a model from a killed run")
    flow(cfg, paths)
    now = _tree(paths.models)
    assert set(now) == set(good) and now != good  # the new run's fits, all of them, only them
    assert not paths.failed_models.exists()  # a good run clears the last failure's leftovers


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_fits_per_worker_runs_each_chunk_on_fresh_processes(tmp_path: Path, runner: str):
    """2 workers, 1 fit each: 4 fits in 2 chunks, each chunk on worker processes of its own
    (the way memory stays flat over hundreds of fits): a new process pool, or a new local
    Dask cluster."""
    import os

    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.stages.train import train_variants

    paths = Paths(tmp_path)
    one_ticker_with_a_fold(tmp_path)
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "train": {"variants": ["simple_rnn", "gru"], "units": [4], "epochs": 1},
            "execution": {"runner": runner, "max_workers": 2, "fits_per_worker": 1},
        }
    )
    flow = train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    assert flow(cfg, paths) == {"AAA": ["gru", "simple_rnn"]}
    main = json.loads(paths.train_summary.read_text())["AAA"]
    folds = json.loads(paths.backtest_summary.read_text())["AAA"]
    # the plan's order: simple_rnn's fold then its main model (warm from the fold), then gru's
    records = [folds["simple_rnn"][0], main["simple_rnn"], folds["gru"][0], main["gru"]]
    assert all(r["error"] is None for r in records)
    assert [r["warm_from"] for r in records] == ["", "AAA/simple_rnn/fold1", "", "AAA/gru/fold1"]
    pids = [int(r["worker"].rsplit("pid ", 1)[-1]) for r in records]
    assert os.getpid() not in pids
    assert not set(pids[:2]) & set(pids[2:]), pids  # the second chunk had fresh processes
