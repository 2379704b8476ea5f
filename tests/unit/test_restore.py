"""A run recorded as a git commit of its own, and brought back with its DVC data, on real
git and DVC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stockcast.errors import StockcastError
from stockcast.restore import REF, record_run, restore

DVC = str(Path(sys.executable).parent / "dvc")


def sh(root: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "t@t")
    sh(root, "git", "config", "user.name", "t")
    sh(root, DVC, "init", "-q")
    (root / "data").mkdir()
    (root / "data/rows.csv").write_text("day,open\n1,10\n")
    (root / "models").mkdir()
    (root / "models/model.bin").write_text("weights of day 1")
    sh(root, DVC, "add", "-q", "models")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "day 1")
    return root


def test_a_run_is_a_commit_of_its_own_and_comes_back_with_its_models(project, tmp_path):
    head = sh(project, "git", "rev-parse", "HEAD")
    # the daily job's run: a new row, new weights (DVC), a new ledger file
    (project / "data/rows.csv").write_text("day,open\n1,10\n2,11\n")
    (project / "models/model.bin").write_text("weights of day 2")
    sh(project, DVC, "add", "-q", "models")
    (project / "ledger.csv").write_text("forecast\n11.5\n")
    status = sh(project, "git", "status", "--porcelain")
    sha = record_run(project, "day 2")
    assert sh(project, "git", "rev-parse", REF).strip() == sha
    assert sh(project, "git", "rev-parse", "HEAD") == head  # nothing checked out moved
    assert sh(project, "git", "status", "--porcelain") == status  # nor the work tree / index
    shown = sh(project, "git", "show", f"{sha}:data/rows.csv")
    assert shown == "day,open\n1,10\n2,11\n"
    assert sh(project, "git", "show", f"{sha}:ledger.csv") == "forecast\n11.5\n"
    parents = sh(project, "git", "rev-list", "--parents", "-n", "1", sha).split()
    assert parents[1:] == [head.strip()]

    # the next day moves on; the recorded run comes back whole
    (project / "models/model.bin").write_text("weights of day 3")
    sh(project, DVC, "add", "-q", "models")
    second = record_run(project, "day 3")
    parents = sh(project, "git", "rev-list", "--parents", "-n", "1", second).split()
    assert parents[1:] == [sha]  # one line of runs
    into = restore(project, sha, tmp_path / "back")
    assert (into / "models/model.bin").read_text() == "weights of day 2"
    assert (into / "data/rows.csv").read_text() == "day,open\n1,10\n2,11\n"
    assert (project / "models/model.bin").read_text() == "weights of day 3"


def test_restore_refuses_an_unknown_commit_and_a_full_folder(project, tmp_path):
    with pytest.raises(StockcastError, match=r"commit 0{40} is not in"):
        restore(project, "0" * 40, tmp_path / "x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "f").write_text("x")
    sha = sh(project, "git", "rev-parse", "HEAD").strip()
    with pytest.raises(StockcastError, match="exists and is not empty"):
        restore(project, sha, full)


def test_a_project_without_a_commit_gets_a_first_run_commit(tmp_path):
    sh(tmp_path, "git", "init", "-q")
    (tmp_path / "rows.csv").write_text("day\n1\n")
    sha = record_run(tmp_path, "first")
    assert sh(tmp_path, "git", "show", f"{sha}:rows.csv") == "day\n1\n"
    assert sh(tmp_path, "git", "rev-list", "--parents", "-n", "1", sha).split() == [sha]
    assert sh(tmp_path, "git", "status", "--porcelain") == "?? rows.csv\n"  # still untracked
