"""The front door: every command and option says what it does; run hands over to the
pipeline with its exit code; the exit-code table is in the help."""

from __future__ import annotations

import argparse
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
        "request",
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
