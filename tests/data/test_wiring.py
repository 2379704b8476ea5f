"""The code that connects the rules to the disk, the lock and the daily job: each test here
fails on a one-line break that the maths tests let through (issue 30's table)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockcast import ops
from stockcast.config import config_from_dict
from stockcast.errors import DataError, RunLocked
from stockcast.paths import Paths, atomic_write, write_parquet
from stockcast.stages import window as window_stage
from stockcast.validate import validate_prices
from stockcast.validation_report import MAX_ROWS_SHOWN
from tests.conftest import synthetic_prices

TODAY = pd.Timestamp("2026-11-22")


# -- the disk: a failed write never replaces what was there ----------------------------


def test_a_writer_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}')

    def half(tmp: Path) -> None:
        tmp.write_text('{"ne')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == '{"old": true}'


def test_the_window_stage_builds_data_processed_aside(tmp_path: Path, monkeypatch):
    paths = Paths(tmp_path)
    cfg = config_from_dict(
        {
            "data": {"sources": ["x.csv"]},
            "window": {"window": 10, "val_days": 40, "test_days": 40},
            "backtest": {"folds": 0},
            "features": {"target_transform": "level", "inputs": [], "anchor": "target"},
        }
    )
    frame = pd.concat([synthetic_prices(200, "AAA"), synthetic_prices(200, "BBB", seed=1)])
    write_parquet(frame, paths.validated)
    window_stage.run(cfg, paths)
    before = {p.name: p.read_bytes() for p in paths.processed.iterdir()}
    assert len(before) >= 3  # two tickers and the manifest

    def crash(sets, out_dir, folds):  # the first file lands, then the machine dies
        (out_dir / "AAA.npz").write_bytes(b"half a file")
        raise OSError("killed mid-write")

    monkeypatch.setattr(window_stage, "write_windows", crash)
    with pytest.raises(OSError, match="killed mid-write"):
        window_stage.run(cfg, paths)
    assert {p.name: p.read_bytes() for p in paths.processed.iterdir()} == before


# -- one run at a time ---------------------------------------------------------------


def test_a_run_that_may_wait_gets_the_lock_once_the_holder_lets_go(tmp_path: Path):
    held, released = threading.Event(), threading.Event()

    def holder() -> None:
        with ops.run_lock(tmp_path, "the first run"):
            held.set()
            time.sleep(0.6)
        released.set()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    started = time.monotonic()
    with ops.run_lock(tmp_path, "the second run", wait_seconds=20):
        waited = time.monotonic() - started
        assert released.wait(1)  # it got the lock only after the first let go
    thread.join()
    assert 0.3 < waited < 15


def test_a_run_that_may_not_wait_is_refused_at_once(tmp_path: Path):
    with ops.run_lock(tmp_path, "the first run"):
        started = time.monotonic()
        with pytest.raises(RunLocked, match="the first run"):
            with ops.run_lock(tmp_path, "the second run", wait_seconds=0):
                pass
        assert time.monotonic() - started < 0.5


# -- the daily job's drift rule ------------------------------------------------------


@pytest.mark.parametrize(
    ("on_drift", "drifted", "force", "retrains"),
    [
        ("retrain", True, False, True),  # the point of on_drift: retrain
        ("retrain", False, False, False),
        ("retrain", False, True, True),
        ("warn", False, False, True),
        ("warn", True, False, True),
    ],
)
def test_on_drift_retrain_retrains_on_drift_only(on_drift, drifted, force, retrains):
    decision, why = ops.retrain_decision(on_drift, drifted, force)
    assert decision is retrains
    if not retrains:
        assert why.startswith("no drift: data refreshed and validated, models kept")


# -- the validation gate: what stops a run, and how much of it is shown --------------


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_a_missing_price_stops_the_run_it_is_no_warning(tmp_path: Path, column):
    frame = synthetic_prices(200)
    frame.loc[[20, 40], column] = np.nan
    report = validate_prices(frame, 100, tmp_path, today=TODAY)
    assert not report.success
    (result,) = report.results
    nulls = [f for f in result.failures if f.expectation == "expect_column_values_to_not_be_null"]
    assert [f.column for f in nulls] == [column]
    assert not [f for f in result.warnings if f.column == column and "null" in f.expectation]


def test_a_failure_shows_five_rows_and_counts_the_rest(tmp_path: Path):
    frame = synthetic_prices(200)
    frame.loc[10:29, "close"] = -1.0  # 20 rows with a price below zero
    report = validate_prices(frame, 100, tmp_path, today=TODAY)
    (result,) = report.results
    (below,) = [f for f in result.failures if f.column == "close" and "between" in f.expectation]
    assert MAX_ROWS_SHOWN == 5
    assert len(below.rows) == 5 and below.detail.startswith("20 of 200 rows fail")
    assert below.rows[0].startswith(f"{frame.loc[10, 'date']:%Y-%m-%d}: close=-1")
    lines = report.summary().splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if "[" + below.expectation in line and "column close" in line
    )
    block = []
    for line in lines[start + 1 :]:  # the rows printed under this failure, up to the next
        if not line.startswith("      "):
            break
        block.append(line)
    assert len(block) == 5


def test_a_data_error_shows_five_example_rows_not_every_one():
    error = DataError(
        "prices.csv", "dates that do not parse", "date", [f"row {i}" for i in range(50)]
    )
    text = str(error)
    assert text.count("\n    row ") == 5 and "row 4" in text and "row 5\n" not in text
    assert text.startswith("prices.csv: dates that do not parse\n  column: date\n  rows:\n")


def test_a_series_error_names_ticker_problem_column_and_what_would_work():
    from stockcast.errors import SeriesError

    error = SeriesError("SH600519", "has 12 rows", "open", "at least 600 rows")
    assert str(error) == (
        "ticker SH600519: has 12 rows\n  column: open\n  expected: at least 600 rows"
    )
    assert error.args == (str(error),)
    assert str(SeriesError("X", "is constant")) == "ticker X: is constant"
