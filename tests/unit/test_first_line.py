"""``stockcast run``'s first line says what it is about to bring up to date, from one ``dvc
status`` before Prefect and the libraries load (issue 29)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from flows.plan import out_of_date
from flows.repro import _what_runs
from flows.server import BIN


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"force": False, "params": "params.yaml", **kw})


def test_out_of_date_names_the_stages_dvc_status_finds_stale(tmp_path: Path):
    def sh(*cmd: str) -> None:
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)

    sh("git", "init", "-q")
    sh(str(BIN / "dvc"), "init", "-q")
    (tmp_path / "a.txt").write_text("1\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  copy:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
        "  again:\n    cmd: cp b.txt c.txt\n    deps: [b.txt]\n    outs: [c.txt]\n"
    )
    assert out_of_date(tmp_path) == ["copy", "again"]
    sh(str(BIN / "dvc"), "repro", "-q")
    assert out_of_date(tmp_path) == []
    (tmp_path / "a.txt").write_text("2\n")
    assert out_of_date(tmp_path) == ["copy"]  # what follows is judged as it comes
    assert out_of_date(tmp_path, ["again"]) == []
    (tmp_path / "dvc.yaml").write_text("stages: [")  # dvc cannot read it: cannot tell
    assert out_of_date(tmp_path) is None


def test_the_first_line_says_what_runs_and_why():
    assert _what_runs(_args(), ["ingest"], ["ingest", "register"]) == (
        "out of date: ingest, register (dvc status), and what follows from them"
    )
    assert _what_runs(_args(force=True), [], []) == "--force: every selected stage runs"
    assert _what_runs(_args(params="other.yaml"), [], []) == (
        "parameters from other.yaml: every selected stage runs"
    )
    assert "could not tell" in _what_runs(_args(), [], None)
