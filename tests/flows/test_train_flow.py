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
