"""The front door: every command and option says what it does; run hands over to the
pipeline with its exit code; the exit-code table is in the help."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

from stockcast.cli import build_parser
from tests.conftest import PROJECT

STOCKCAST = str(Path(sys.executable).parent / "stockcast")


def test_every_command_and_option_has_help():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {
        "run", "retrain", "schedule", "ui", "compare", "validate", "predict", "rollback", "serve",
        "request", "ledger", "restore", "fetch",
    }  # fmt: skip
    helped = {c.dest for c in commands._choices_actions if c.help}
    assert helped == set(commands.choices)
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"stockcast {name} {action.option_strings or action.dest}"


def test_help_shows_the_exit_codes_and_no_markup():
    out = subprocess.run([STOCKCAST, "--help"], capture_output=True, text=True).stdout
    assert "``" not in out
    for line in ("0  done", "2  usage", "3  another stockcast run holds the project's lock"):
        assert line in out
    version = subprocess.run([STOCKCAST, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("stockcast 0.")


def test_run_is_the_pipeline_and_refuses_outside_a_project(tmp_path):
    dry = subprocess.run(
        [STOCKCAST, "run", "--dry", "--force"], cwd=PROJECT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == [
        "ingest", "validate", "drift", "window", "train", "evaluate", "register"
    ]  # fmt: skip
    outside = subprocess.run(
        [STOCKCAST, "run", "--dry"], cwd=tmp_path, capture_output=True, text=True
    )
    assert outside.returncode == 2
    assert "is not a stockcast project: run from its root" in outside.stderr
    usage = subprocess.run([STOCKCAST, "predict", "--nope"], capture_output=True, text=True)
    assert usage.returncode == 2 and "unrecognized arguments: --nope" in usage.stderr


def test_ledger_prints_every_forecast_scored_and_the_summary(tmp_path):
    import shutil

    import pandas as pd

    from stockcast import ledger
    from tests.conftest import PROJECT

    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    empty = subprocess.run([STOCKCAST, "ledger"], cwd=tmp_path, capture_output=True, text=True)
    assert empty.returncode == 0 and empty.stdout == ""
    assert "the ledger is empty (" in empty.stderr
    now = pd.Timestamp("2026-01-05 10:00")
    rows = [
        ledger.forecast_row(
            "AAA", pd.Timestamp(m), pd.Timestamp(t), "3", "last_close",
            {"forecast": 10.0, "lower_80": 9.0, "upper_80": 11.0, "lower_95": 8.0,
             "upper_95": 12.0},
            10.0, now,
        )
        for m, t in (("2026-01-05", "2026-01-06"), ("2026-01-06", "2026-01-07"))
    ]  # fmt: skip
    ledger.append_forecasts(tmp_path / "data/ledger/forecasts.csv", rows, ["80", "95"])
    prices = pd.DataFrame(
        {"ticker": "AAA", "date": pd.to_datetime(["2026-01-05", "2026-01-06"]), "open": [9, 11.5]}
    )
    forecasts = ledger.read(tmp_path / "data/ledger/forecasts.csv")
    ledger.record_actuals(tmp_path / "data/ledger/actuals.csv", forecasts, prices, "open", now)
    out = subprocess.run([STOCKCAST, "ledger"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (
        "ticker,made_on,target_date,model_version,variant,forecast,lower_80,upper_80,lower_95,"
        "upper_95,baseline_forecast,actual_date,actual,error,hit_80,hit_95,recorded_at"
    )
    assert lines[1].startswith("AAA,2026-01-05,2026-01-06,3,last_close,10.0,9.0,11.0,8.0,12.0,")
    assert ",2026-01-06,11.5,1.5,False,True," in lines[1]
    assert ",,,,,," in lines[2]  # still open
    summary = subprocess.run(
        [STOCKCAST, "ledger", "--summary"], cwd=tmp_path, capture_output=True, text=True
    )
    table = pd.read_csv(io.StringIO(summary.stdout))
    assert list(table["model_version"].astype(str)) == ["3", "served"]
    assert table["live_rmse_20"].tolist() == [1.5, 1.5]
    assert table["live_last_close_rmse_20"].tolist() == [1.5, 1.5]
