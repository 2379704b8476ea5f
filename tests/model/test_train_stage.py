"""The train stage's whole procedure without Prefect: :func:`stockcast.stages.train.run` with
a plain thread pool as its executor (the style's "delete the decorators and it still runs")."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from stockcast.config import config_from_dict
from stockcast.paths import Paths
from stockcast.stages import train
from stockcast.train import run_job
from stockcast.windows import make_windows, write_windows
from tests.conftest import one_ticker_with_a_fold, synthetic_prices

pytestmark = pytest.mark.fits


def test_the_stage_runs_on_a_plain_executor_warm_chains_and_all(tmp_path: Path, caplog):
    paths = Paths(tmp_path)
    one_ticker_with_a_fold(tmp_path)
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "train": {"variants": ["gru", "lstm"], "units": [4], "epochs": 1},
        }
    )
    opened = []

    @contextmanager
    def pool(k: int, n: int) -> Iterator[train.Submit]:
        opened.append((k, n))
        with ThreadPoolExecutor(max_workers=2) as executor:
            yield lambda job, sets, init: executor.submit(
                run_job, job, sets, cfg.train, cfg.seed, cfg.execution, None, init
            )

    log = logging.getLogger("test-train-stage")
    with caplog.at_level(logging.INFO, logger=log.name):
        trained = train.run(cfg, paths, pool, log)
    assert trained == {"AAA": ["gru", "lstm"]}
    assert opened == [(0, 1)]
    main = json.loads(paths.train_summary.read_text())["AAA"]
    folds = json.loads(paths.backtest_summary.read_text())["AAA"]
    assert [main[v]["warm_from"] for v in ("gru", "lstm")] == ["AAA/gru/fold1", "AAA/lstm/fold1"]
    assert [folds[v][0]["warm_from"] for v in ("gru", "lstm")] == ["", ""]
    for variant in ("gru", "lstm"):  # each fit written once, where it ends up
        record = main[variant]
        assert record["model_path"] == str(paths.models / "AAA" / variant / "model.keras")
        assert Path(record["model_path"]).stat().st_size > 0
        assert (paths.models / "AAA" / variant / "fold1" / "model.keras").exists()
    assert "4 of 4 done, 0 remain" in caplog.text


def test_a_task_that_fails_outside_the_fit_is_recorded_and_the_rest_train(tmp_path: Path):
    """The executor's own failure (a future raising) is a failed fit on record; a ticker
    whose every main variant failed stops the stage, models/ untouched."""
    from stockcast.errors import StockcastError

    paths = Paths(tmp_path)
    ws = make_windows(synthetic_prices(200, "AAA"), "open", 10, 30, 30, "log_return")
    write_windows([ws], paths.processed, {"AAA": []})
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "train": {"variants": ["gru", "lstm"], "units": [4], "epochs": 1},
        }
    )

    def fit_or_die(job, sets, init):
        if job.variant == "lstm":
            raise OSError("the worker lost its disk")
        return run_job(job, sets, cfg.train, cfg.seed, cfg.execution, None, init)

    @contextmanager
    def pool(k: int, n: int) -> Iterator[train.Submit]:
        with ThreadPoolExecutor(max_workers=2) as executor:
            yield lambda job, sets, init: executor.submit(fit_or_die, job, sets, init)

    log = logging.getLogger("test-train-stage")
    assert train.run(cfg, paths, pool, log) == {"AAA": ["gru"]}
    lstm = json.loads(paths.train_summary.read_text())["AAA"]["lstm"]
    assert lstm["error"] == "task failed: OSError: the worker lost its disk"
    before = sorted(p.relative_to(paths.models) for p in paths.models.rglob("*"))

    def always_dies(job, sets, init):
        raise OSError("no worker at all")

    @contextmanager
    def dead(k: int, n: int) -> Iterator[train.Submit]:
        with ThreadPoolExecutor(max_workers=1) as executor:
            yield lambda job, sets, init: executor.submit(always_dies, job, sets, init)

    with pytest.raises(StockcastError, match="every variant failed for"):
        train.run(cfg, paths, dead, log)
    assert sorted(p.relative_to(paths.models) for p in paths.models.rglob("*")) == before
