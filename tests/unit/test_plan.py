"""``flows.plan.run_stages`` on a real DVC project of three small stages (a -> b -> c), each
run by a plain function in place of its Prefect flow: what runs, what is committed, and
where a ``before`` check ends a run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import flows.stages
from flows.plan import StageAhead, run_stages
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


# A stage's process started ahead, as the protocol of ``python -m flows.stages STAGE
# --when-told FILE`` has it: wait for a line; none: exit; else take its variables and run
# (here: write b.txt from a.txt, with the process id), or fail with a message in FILE.
CHILD = """
import json, os, sys
from pathlib import Path
error_file = sys.argv[-1]
Path("b.started").write_text(str(os.getpid()))
told = sys.stdin.readline().strip()
if not told:
    Path("b.untold").write_text("exited")
    sys.exit(0)
env = json.loads(told)
if env.get("STOCKCAST_FAIL_B"):
    Path(error_file).write_text("b could not: " + env["STOCKCAST_FAIL_B"])
    sys.exit(1)
Path("b.txt").write_text(Path("a.txt").read_text() + "b")
Path("b.pid").write_text(str(os.getpid()) + " " + env.get("STOCKCAST_TRAIN_COLD", "-"))
"""


def _child(root: Path, command: str = CHILD) -> StageAhead:
    import sys

    return StageAhead(root, "b", "params.yaml", [sys.executable, "-c", command])


def test_a_stage_run_ahead_runs_in_its_own_process_with_the_run_s_variables_then(
    project, monkeypatch: pytest.MonkeyPatch
):
    import os

    root, ran = project

    def decide() -> bool:  # set after the process started, as the day's cold reason is
        monkeypatch.setenv("STOCKCAST_TRAIN_COLD", "drift")
        return True

    with _child(root) as b:
        done = run_stages(root, ahead={"b": b}, before={"b": decide})
    assert done == ["a", "b", "c"] and ran == ["a", "c"]  # b ran there, not here
    pid, cold = (root / "b.pid").read_text().split()
    assert int(pid) != os.getpid() and cold == "drift"
    assert (root / "c.txt").read_text() == "xabc"
    assert "b:" in (root / "dvc.lock").read_text()  # committed here, as any stage


def test_a_stage_run_ahead_that_fails_stops_the_run_with_its_message(
    project, monkeypatch: pytest.MonkeyPatch
):
    root, ran = project
    monkeypatch.setenv("STOCKCAST_FAIL_B", "no windows")
    with pytest.raises(Exception, match="stockcast b stopped:\nb could not: no windows"):
        with _child(root) as b:
            run_stages(root, ahead={"b": b})
    assert ran == ["a"] and not (root / "c.txt").exists()
    lock = (root / "dvc.lock").read_text()
    assert "a:" in lock and "b:" not in lock  # what ran before the failure is recorded


def test_a_stage_run_ahead_but_never_reached_is_ended_and_one_gone_runs_here(project):
    import time

    root, ran = project
    with _child(root) as b:
        assert run_stages(root, ahead={"b": b}, before={"b": lambda: False}) == ["a"]
    assert b.code is not None  # ended with the block
    assert not (root / "b.txt").exists()  # untold: it ran nothing

    def wait() -> bool:
        time.sleep(1)  # it has died by now
        return True

    (root / "in.txt").write_text("y")
    with _child(root, "import sys; sys.exit(3)") as gone:  # dies while getting ready
        assert run_stages(root, ahead={"b": gone}, before={"b": wait}) == ["a", "b", "c"]
    assert ran[-3:] == ["a", "b", "c"]  # b ran in this process instead
    assert (root / "c.txt").read_text() == "yabc"


def test_the_stage_process_started_ahead_runs_only_when_told_with_the_variables_it_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import io
    import json
    import os

    import flows.stages.__main__ as stage_main
    from stockcast.errors import StockcastError

    calls: list[tuple[str, str | None]] = []

    def flow(params: str) -> None:
        calls.append((params, os.environ.get("STOCKCAST_TRAIN_COLD")))
        if os.environ.get("STOCKCAST_FAIL"):
            raise StockcastError("the windows are gone")

    monkeypatch.setattr(stage_main, "stage_flow", lambda stage: flow)
    monkeypatch.delenv(stage_main.PIPELINE_RUN, raising=False)
    monkeypatch.setenv("STOCKCAST_TRAIN_COLD", "stale reason from the start")
    error_file = tmp_path / "error.txt"
    argv = ["drift", "--params", "p.yaml", "--when-told", str(error_file)]

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # never told: the run ended before
    assert stage_main.main(argv) == 0 and calls == []

    told = json.dumps({"STOCKCAST_TRAIN_COLD": "drift in ['AAA']"})
    monkeypatch.setattr("sys.stdin", io.StringIO(told + "\n"))
    assert stage_main.main(argv) == 0
    assert calls == [("p.yaml", "drift in ['AAA']")]

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"STOCKCAST_FAIL": "1"}) + "\n"))
    assert stage_main.main(argv) == 1
    assert "STOCKCAST_TRAIN_COLD" not in os.environ  # the run no longer had it: dropped
    assert error_file.read_text() == "the windows are gone"


def test_network_specs_come_from_the_windows_on_disk_and_are_none_without(tmp_path: Path):
    from stockcast.config import load_config
    from stockcast.paths import Paths
    from stockcast.stages.train import network_specs
    from stockcast.windows import make_windows, write_windows
    from tests.conftest import synthetic_prices

    cfg, paths = load_config(Path(__file__).parents[2] / "params.yaml"), Paths(tmp_path)
    assert network_specs(cfg, paths) == []
    ws = make_windows(synthetic_prices(400), "open", 20, 50, 50)
    write_windows([ws], paths.processed)
    specs = network_specs(cfg, paths)
    t = cfg.train
    assert [s[0] for s in specs] == list(t.variants)
    assert specs[0][1:] == (
        20,
        ws.scaled.shape[1],
        t.units,
        t.dropout,
        t.learning_rate,
        cfg.seed,
        t.unroll,
    )


FORKED = """
import json, os, sys
from pathlib import Path

import flows.stages.__main__ as stage_main
from flows.plan import started_ahead, take_ahead


def told(stage, params, told, error_file):  # in place of the stage, in the fork only
    line = told.readline()
    said = {"parent": os.getppid(), "stage": stage, "line": line}
    Path("forked.json").write_text(json.dumps(said))
    return 0


stage_main.when_told = told
os.environ["STOCKCAST_TRAIN_COLD"] = "decay"
with started_ahead(Path.cwd(), "train", "params.yaml") as started:
    assert take_ahead(Path.cwd(), "train", "params.yaml") is started
    assert started.run()
print(os.getpid())
"""


def test_a_stage_started_before_any_thread_is_a_fork_with_this_process_s_imports(
    tmp_path: Path,
):
    """Forked, it runs this process's code as it is (here a stand-in for the stage, set
    before the fork), not a new interpreter's."""
    import json
    import sys

    root = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", FORKED],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": f"{root}:{root / 'src'}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    forked = json.loads((tmp_path / "forked.json").read_text())
    assert forked["parent"] == int(proc.stdout.split()[-1]) and forked["stage"] == "train"
    assert json.loads(forked["line"])["STOCKCAST_TRAIN_COLD"] == "decay"


def test_dvc_lock_is_written_once_the_stages_end_and_each_stage_sees_the_hashes_before_it(
    project, monkeypatch: pytest.MonkeyPatch
):
    """A stage's run meanwhile finds the DVC hashes of the datasets made before it in the
    run's environment (validate and register tag their MLflow runs with them), as
    ``dvc.lock`` records them once the stages end; after the run the variable is as it was."""
    import json
    import os

    import stockcast.lineage
    from stockcast.lineage import FRESH_OUTS

    root, ran = project
    datasets = {"a_md5": ("a", "a.txt"), "b_md5": ("b", "b.txt")}  # c.txt: not a dataset
    monkeypatch.setattr(stockcast.lineage, "DATASETS", datasets)
    stages = flows.stages.stage_flows()
    seen: list[tuple[dict, dict]] = []

    def c(params: str) -> None:
        lock = (
            yaml.safe_load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {}
        )
        seen.append((lock, json.loads(os.environ[FRESH_OUTS])))
        stages["c"](params)

    monkeypatch.setattr(flows.stages, "stage_flows", lambda: {**stages, "c": c})
    monkeypatch.setenv(FRESH_OUTS, json.dumps({"b.txt": "from another run"}))
    assert run_stages(root) == ["a", "b", "c"]
    ((lock, fresh),) = seen
    assert lock == {}  # not written yet
    assert fresh == {"a.txt": _md5(root / "a.txt"), "b.txt": _md5(root / "b.txt")}
    recorded = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {n: recorded[n]["outs"][0]["md5"] for n in "ab"} == {
        "a": fresh["a.txt"],
        "b": fresh["b.txt"],
    }
    assert os.environ[FRESH_OUTS] == json.dumps({"b.txt": "from another run"})  # as it was


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()
