"""``params.yaml`` is kept in the form DVC writes back: ``dvc exp run -S key=value`` changes the
one line of that key, its comments where they were (a flow list, a ``null`` or a quoted string
would each be rewritten, and a comment after a list dropped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.project import run

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += _leaves(value, f"{name}.") if isinstance(value, dict) else [name]
    return out


@pytest.mark.parametrize("override", ["window.window=30", "train.epochs=7", "register.max_mase=2"])
def test_dvc_exp_run_set_param_changes_exactly_one_line(tmp_path: Path, override: str):
    """A real ``dvc exp run -S`` in a repository holding our params.yaml and a one-stage
    dvc.yaml that reads the key."""
    key = override.split("=")[0]
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  show:\n    cmd: python -c 'print(1)'\n    params:\n    - {key}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t")
    env.update(GIT_COMMITTER_EMAIL="t@t")
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        assert run(args, tmp_path, env).returncode == 0
    assert run(["git", "commit", "-qm", "params"], tmp_path, env).returncode == 0
    result = run(["dvc", "exp", "run", "-S", override], tmp_path, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    numstat = subprocess.run(
        ["git", "diff", "--numstat", "params.yaml"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.split()
    assert numstat[:2] == ["1", "1"], run(["git", "diff"], tmp_path, env).stdout
    diff = subprocess.run(
        ["git", "diff", "-U0", "params.yaml"], cwd=tmp_path, capture_output=True, text=True
    ).stdout
    (added,) = [line for line in diff.splitlines() if line.startswith("+ ")]
    assert f"{key.split('.')[-1]}: {override.split('=')[1]}" in added


def test_every_key_round_trips_through_dvc_s_writer_unchanged(tmp_path: Path):
    """DVC's own writer (the code ``-S`` runs) leaves the file byte for byte as it is when it
    sets a key to its own value, and changes one line when it sets any scalar key anew."""
    from dvc.utils.hydra import apply_overrides

    original = (ROOT / "params.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(original)
    copy = tmp_path / "params.yaml"
    for key in _leaves(values):
        value = values
        for part in key.split("."):
            value = value[part]
        if isinstance(value, list | dict) or value is None or isinstance(value, bool):
            continue
        copy.write_text(original, encoding="utf-8")
        apply_overrides(copy, [f"{key}={value}"])
        assert copy.read_text(encoding="utf-8") == original, key
