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


def _windows(root: Path, rows: int) -> None:
    """AAA's windows over ``rows`` days and one fold's over 30 fewer (a new day: rows + 1)."""
    processed = Paths(root).processed
    ws = make_windows(synthetic_prices(rows, "AAA"), "open", 10, 30, 30, "log_return")
    fold = make_windows(synthetic_prices(rows - 30, "AAA"), "open", 10, 30, 30, "log_return")
    write_windows([ws], processed, {"AAA": [fold]})


def _thread_pool(cfg):
    @contextmanager
    def pool(k: int, n: int) -> Iterator[train.Submit]:
        with ThreadPoolExecutor(max_workers=2) as executor:
            yield lambda job, sets, init: executor.submit(
                run_job, job, sets, cfg.train, cfg.seed, cfg.execution, None, init
            )

    return pool


def _weights(path: Path) -> list:
    from stockcast.models import network_from_bytes

    return network_from_bytes(path.read_bytes()).get_weights()


def test_a_new_day_continues_the_main_models_and_keeps_the_folds(tmp_path: Path, caplog):
    import shutil

    import numpy as np

    from stockcast import continuation

    paths = Paths(tmp_path)
    raw = {"data": {"sources": ["unused.csv"]}, "train": {"variants": ["gru"], "units": [4]}}
    raw["train"].update(epochs=2, patience=2, warm_patience=1, warm_epochs=1, cold_every=3)
    cfg = config_from_dict(raw)
    log = logging.getLogger("test-warm")
    pool = _thread_pool(cfg)

    def record() -> dict:
        return json.loads((paths.models / continuation.RECORD).read_text())

    _windows(tmp_path, 200)
    train.run(cfg, paths, pool, log)
    assert record()["warm"] is False and record()["reason"] == "no earlier run to continue"
    cold = json.loads(paths.train_summary.read_text())["AAA"]["gru"]
    assert cold["patience"] == 2 and cold["epochs_run"] == 2  # patience 2 waits out epochs: 2
    train.run(cfg, paths, pool, log)  # the same rows again: a rerun reproduces, cold
    assert record()["reason"].startswith("no new rows since the last run")
    fold_bytes = (paths.models / "AAA/gru/fold1/model.keras").read_bytes()
    main_before = _weights(paths.models / "AAA/gru/model.keras")
    twin = tmp_path.parent / f"{tmp_path.name}-twin"
    shutil.copytree(tmp_path, twin)

    _windows(tmp_path, 201)  # the new day
    with caplog.at_level(logging.INFO, logger=log.name):
        train.run(cfg, paths, pool, log)
    assert record()["warm"] is True and record()["warm_days"] == 1
    assert "train warm: continuing the last run's networks" in caplog.text
    assert "1 of 1 done, 0 remain" in caplog.text  # the main model only
    assert "AAA/gru fold 0: best val_loss" in caplog.text
    assert "AAA/gru fold 1: best" not in caplog.text  # a carried fold is no fit of this run
    main = json.loads(paths.train_summary.read_text())["AAA"]["gru"]
    assert main["warm_from"] == train.CONTINUED
    assert main["patience"] == 1  # train.warm_patience, where a cold fit waits train.patience
    assert main["epochs_run"] == 1  # train.warm_epochs, where a cold fit may run train.epochs
    # the fold's fit is carried: the same file, its record as it was
    assert (paths.models / "AAA/gru/fold1/model.keras").read_bytes() == fold_bytes
    (fold,) = json.loads(paths.backtest_summary.read_text())["AAA"]["gru"]
    assert fold["model_path"] == str(paths.models / "AAA/gru/fold1/model.keras")
    continued = _weights(paths.models / "AAA/gru/model.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(continued, main_before, strict=True))

    # the same state and seed continue to the same weights
    _windows(twin, 201)
    train.run(cfg, Paths(twin), pool, log)
    again = _weights(twin / "models/AAA/gru/model.keras")
    assert all(np.array_equal(a, b) for a, b in zip(continued, again, strict=True))

    _windows(tmp_path, 202)
    train.run(cfg, paths, pool, log)
    assert record()["warm"] is True and record()["warm_days"] == 2
    _windows(tmp_path, 203)  # cold_every: 3 -> the third in a row is cold
    train.run(cfg, paths, pool, log)
    assert record()["warm"] is False and record()["reason"].startswith("train.cold_every: 3")
    assert (paths.models / "AAA/gru/fold1/model.keras").read_bytes() != fold_bytes  # refitted


def test_drift_or_decay_or_a_param_change_starts_cold(tmp_path: Path, monkeypatch):
    from stockcast import continuation

    paths = Paths(tmp_path)
    raw = {"data": {"sources": ["unused.csv"]}, "train": {"variants": ["gru"], "units": [4]}}
    raw["train"].update(epochs=1, patience=1)
    cfg = config_from_dict(raw)
    log = logging.getLogger("test-cold")
    _windows(tmp_path, 200)
    train.run(cfg, paths, _thread_pool(cfg), log)

    def reason() -> str:
        return json.loads((paths.models / continuation.RECORD).read_text())["reason"]

    _windows(tmp_path, 201)
    monkeypatch.setenv(continuation.COLD_ENV, "drift in ['AAA']")
    train.run(cfg, paths, _thread_pool(cfg), log)
    assert reason() == "drift in ['AAA']"
    monkeypatch.delenv(continuation.COLD_ENV)
    _windows(tmp_path, 202)
    other = config_from_dict({**raw, "train": {**raw["train"], "dropout": 0.1}})
    train.run(other, paths, _thread_pool(other), log)
    assert reason() == "the train stage's code or a model-shaping param changed"
