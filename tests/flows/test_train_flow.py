"""The train stage's flow in-process (a temporary Prefect server): the plan mapped onto
parallel tasks, every outcome recorded, one failing fit leaving the others alone."""

from __future__ import annotations

import json
from pathlib import Path

from stockcast.config import config_from_dict
from stockcast.paths import Paths
from stockcast.windows import make_windows, write_windows
from tests.conftest import synthetic_prices


def test_train_flow_runs_the_plan_and_records_a_failed_fit(tmp_path: Path):
    from prefect.task_runners import ThreadPoolTaskRunner

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
    blocked = paths.variant_dir("BBB", "lstm") / "fold1"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the fold's folder should be")
    flow = train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    trained = flow(cfg, paths)
    assert trained == {"AAA": ["gru", "lstm"], "BBB": ["gru", "lstm"]}
    backtest = json.loads(paths.backtest_summary.read_text())
    assert backtest["BBB"]["lstm"][0]["error"]  # recorded, not raised
    assert backtest["BBB"]["gru"][0]["error"] is None
    assert backtest["AAA"]["lstm"][0]["fold"] == 1
    main = json.loads(paths.train_summary.read_text())
    assert all(
        r["model_path"] and Path(r["model_path"]).exists()
        for t in main.values()
        for r in t.values()
    )


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
    paths = Paths(tmp_path)
    ws = make_windows(synthetic_prices(200, "AAA"), "open", 10, 30, 30, "log_return")
    write_windows([ws], paths.processed, {})
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "backtest": {"folds": 0},
            "train": {"variants": ["simple_rnn", "gru"], "units": [4], "epochs": 2, "patience": 1},
            "execution": {"timeout_seconds": 20},
        }
    )
    flow = train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    flow(cfg, paths)
    main = json.loads(paths.train_summary.read_text())["AAA"]
    assert "FitTimedOut" in main["gru"]["error"] and "timeout_seconds=20" in main["gru"]["error"]
    assert main["gru"]["model_path"] in (None, "")
    assert main["simple_rnn"]["error"] is None
    assert Path(main["simple_rnn"]["model_path"]).exists()
    assert main["simple_rnn"]["epochs_run"] == 2
