"""Restorable versions: each daily run is recorded as a git commit of its own, and any
registered version brought back with the exact code, params, data and models it was made by.

The daily job's run leaves new rows, ``dvc.lock``, the ledger and the reports in the work
tree. :func:`record_run` snapshots the work tree as git sees it (tracked and untracked files
that ``.gitignore`` does not exclude) into a commit on ``refs/stockcast/runs``, through a
temporary index: the work tree, the index and the checked-out branch are left as they were.
The commit's ``dvc.lock`` names the data and models in DVC's cache (and remote, after
``dvc push``); each version the run registered gets the commit as its ``restore_commit`` tag.

:func:`restore` checks that commit out into a folder of its own (``git worktree``) and runs
``dvc checkout`` there against the project's cache:
``stockcast restore --ticker SH600519 --version 3``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from stockcast.errors import StockcastError

REF = "refs/stockcast/runs"
TAG = "restore_commit"


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, env=env or dict(os.environ)
    )
    if proc.returncode != 0:
        raise StockcastError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _rev(root: Path, name: str) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _is_ancestor(root: Path, older: str, newer: str) -> bool:
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=root)
    return proc.returncode == 0


def record_run(root: Path, message: str) -> str:
    """Commit the work tree as it is onto :data:`REF` (parents: the ref's last commit, and
    ``HEAD`` when the code moved on since); returns the commit's sha. Nothing checked out
    changes."""
    head = _rev(root, "HEAD")  # None: a repository without a commit yet
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(root, "read-tree", *([head] if head else ["--empty"]), env=env)
        _git(root, "add", "-A", ".", env=env)
        tree = _git(root, "write-tree", env=env)
    parents = []
    if (last := _rev(root, REF)) is not None:
        parents += ["-p", last]
    if head and (last is None or not _is_ancestor(root, head, last)):  # the code moved on
        parents += ["-p", head]
    ident = {
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "stockcast"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "stockcast@localhost"),
    }
    ident |= {
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", ident["GIT_AUTHOR_NAME"]),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", ident["GIT_AUTHOR_EMAIL"]),
    }
    sha = _git(root, "commit-tree", tree, *parents, "-m", message, env={**os.environ, **ident})
    _git(root, "update-ref", REF, sha)
    return sha


def restore(root: Path, commit: str, into: Path) -> Path:
    """Check ``commit`` out into ``into`` (a new git worktree) and its DVC data and models
    from the project's cache; returns ``into``."""
    import sys

    if _rev(root, commit) is None:
        raise StockcastError(f"commit {commit} is not in {root}'s git history")
    if into.exists() and any(into.iterdir()):
        raise StockcastError(f"{into} exists and is not empty: choose another --into")
    _git(root, "worktree", "add", "--detach", str(into), commit)
    cache = root / ".dvc" / "cache"
    dvc = str(Path(sys.executable).parent / "dvc")
    config = subprocess.run(
        [dvc, "cache", "dir", "--local", str(cache.resolve())],
        cwd=into,
        capture_output=True,
        text=True,
    )
    checkout = subprocess.run([dvc, "checkout"], cwd=into, capture_output=True, text=True)
    if config.returncode or checkout.returncode:
        out = (config.stderr + checkout.stdout + checkout.stderr).strip()
        raise StockcastError(
            f"dvc checkout in {into} failed ({out[-1500:]}): the data may be only in the "
            "DVC remote (`dvc pull` there)"
        )
    return into
