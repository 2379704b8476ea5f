"""``flows.plan.run_stages`` on a real DVC project of three small stages (a -> b -> c), each
run by a plain function in place of its Prefect flow: what runs, what is committed, and
where a ``before`` check ends a run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import flows.stages
from flows.plan import run_stages
from flows.server import BIN

STAGES = {
    "a": {"cmd": "true", "deps": ["in.txt"], "outs": ["a.txt"]},
    "b": {"cmd": "true", "deps": ["a.txt"], "outs": ["b.txt"]},
    "c": {"cmd": "true", "deps": ["b.txt"], "outs": ["c.txt"]},
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A git + DVC project whose stages copy their input with a suffix; ``ran`` lists the
    stages run, in order."""
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": STAGES}))
    (tmp_path / "in.txt").write_text("x")
    monkeypatch.chdir(tmp_path)  # as every command runs: stages addressed from the root
    ran: list[str] = []

    def stage(name: str, source: str):  # noqa: ANN202 - a stage flow's stand-in
        def run(params: str) -> None:
            ran.append(name)
            text = (tmp_path / source).read_text()
            (tmp_path / f"{name}.txt").write_text(f"{text}{name}")

        return run

    flows_ = {name: stage(name, spec["deps"][0]) for name, spec in STAGES.items()}
    monkeypatch.setattr(flows.stages, "stage_flows", lambda: flows_)
    return tmp_path, ran


def test_a_before_check_returning_false_ends_the_run_at_its_stage(project):
    root, ran = project
    checked, beside = [], []

    def stop() -> bool:
        checked.append(sorted(p.name for p in root.glob("?.txt")))
        return False

    done = run_stages(root, before={"b": stop}, while_training=lambda: beside.append("done"))
    assert done == ran == ["a"]
    assert checked == [["a.txt"]]  # called once, after a ran, before b
    assert not (root / "b.txt").exists()
    assert beside == ["done"]  # train never ran: the background work runs after the stages
    assert "a:" in (root / "dvc.lock").read_text() and "b:" not in (root / "dvc.lock").read_text()


def test_a_before_check_returning_true_lets_the_run_go_on(project):
    root, ran = project
    assert run_stages(root, before={"b": lambda: True}) == ["a", "b", "c"]
    assert (root / "c.txt").read_text() == "xabc"


def test_the_check_is_made_when_its_stage_is_up_to_date_and_stale_stages_run_anyway(project):
    root, ran = project
    run_stages(root)
    ran.clear()
    checked = []
    # a is forced (stale) and writes the same output: b and c stay up to date
    done = run_stages(root, stale=frozenset({"a"}), before={"b": lambda: checked.append(1) or True})
    assert done == ran == ["a"]
    assert checked == [1]
