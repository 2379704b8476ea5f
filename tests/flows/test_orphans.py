"""A killed run leaves nothing behind: its Prefect server dies with it, and the flow runs it
left Running are marked Crashed by the next run of the project."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.server import healthy, prefect_api
from tests.conftest import PROJECT
from tests.flows.project import make_project, pipeline

pytestmark = pytest.mark.e2e


def _wait(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_sigkilled_run_takes_its_prefect_server_with_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / ".prefect")
    code = (
        "import os, time\n"
        "from flows.server import prefect_api\n"
        "with prefect_api() as url:\n"
        "    print(url, flush=True); time.sleep(600)\n"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", code], cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True
    )
    url = run.stdout.readline().strip()
    assert healthy(url, timeout=5), url
    children = [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == run.pid
    ]
    assert children, "the run started no server process"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert _wait(lambda: not any(_alive(pid) for pid in children)), "the server outlived the run"
    assert not healthy(url)


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().split(")")[-1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return -1


def test_the_next_run_marks_a_killed_runs_flow_runs_crashed(tmp_path, tmp_path_factory):
    from prefect.client.orchestration import get_client

    from flows.orphans import project_tag

    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_API_URL")}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    try:
        with prefect_api() as url:
            env = {**make_project(tmp_path), "PREFECT_API_URL": url}
            # a run of this project that dies mid-flow: its flow run and subflow stay Running
            code = (
                "import sys, time\n"
                "from pathlib import Path\n"
                "from prefect import flow, tags\n"
                "from flows.orphans import project_tag\n"
                "@flow(name='train-variants')\n"
                "def inner():\n"
                "    print('running', flush=True); time.sleep(600)\n"
                "@flow(name='train')\n"
                "def outer():\n"
                "    inner()\n"
                "with tags(project_tag(Path.cwd())):\n"
                "    outer()\n"
            )
            doomed = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert doomed.stdout.readline().strip() == "running"
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            # another project's Running flow run on the same server is left alone
            other = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=tmp_path.parent,
                env={**env, "PYTHONPATH": str(tmp_path)},
                stdout=subprocess.PIPE,
                text=True,
            )
            assert other.stdout.readline().strip() == "running"
            try:
                result = pipeline(tmp_path, env, "--single-item", "ingest")
                assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
                from prefect.settings import PREFECT_API_URL, temporary_settings

                with temporary_settings(updates={PREFECT_API_URL: url}):
                    with get_client(sync_client=True) as client:
                        runs = client.read_flow_runs()
            finally:
                other.kill()
                other.wait(timeout=10)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    mine = [r for r in runs if project_tag(tmp_path) in r.tags]
    killed = {r.name: r for r in mine if r.flow_id and r.state and r.state.name == "Crashed"}
    assert len(killed) == 2, [(r.name, r.state.name) for r in mine]
    (pipeline_run,) = [
        r for r in mine if r.state.name == "Completed" and r.parent_task_run_id is None
    ]
    for run in killed.values():
        assert f"marked Crashed by flow run {pipeline_run.name!r}" in run.state.message
    assert "marked 2 orphaned flow run(s) Crashed" in result.stdout + result.stderr
    theirs = [r for r in runs if project_tag(tmp_path.parent) in r.tags]
    assert theirs and all(r.state.name == "Running" for r in theirs)


TRAIN = """
import os
import sys
from pathlib import Path

from flows.server import prefect_api

server = prefect_api()
# before Prefect is imported, as flows.repro does: the server is this run's own, and dies
# with it
os.environ["PREFECT_API_URL"] = server.__enter__()

from prefect.task_runners import ThreadPoolTaskRunner

from flows.stages.train import train_variants
from stockcast.config import config_from_dict
from stockcast.paths import Paths
from stockcast.windows import make_windows, write_windows
from tests.conftest import synthetic_prices

paths = Paths(Path.cwd())
if not paths.processed.exists():
    ws = make_windows(synthetic_prices(300, "AAA"), "open", 10, 40, 40, "log_return")
    write_windows([ws], paths.processed, {})
epochs = int(sys.argv[1])
cfg = config_from_dict(
    {
        "data": {"sources": ["unused.csv"]},
        "backtest": {"folds": 0},
        "base": {"seed": epochs},
        "train": {
            "variants": ["simple_rnn", "gru"], "units": [16], "epochs": epochs, "patience": epochs
        },
    }
)
train_variants.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(cfg, paths)
server.__exit__(None, None, None)
print("trained", flush=True)
"""


def test_a_train_stage_killed_mid_way_leaves_the_last_good_models_whole(tmp_path):
    """SIGKILL after one of two fits ended: models/ is still, byte for byte, the last good
    run's (never three of one run and nine of another), and the next run builds it anew."""
    (tmp_path / "train_stage.py").write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / ".prefect"), PYTHONPATH=str(PROJECT))
    first = subprocess.run(
        [sys.executable, "train_stage.py", "1"], cwd=tmp_path, env=env, capture_output=True
    )
    assert first.returncode == 0, first.stderr[-3000:]
    models = tmp_path / "models"
    good = {p: p.read_bytes() for p in sorted(models.rglob("*")) if p.is_file()}
    assert len([p for p in good if p.name == "model.keras"]) == 2

    doomed = subprocess.Popen(
        [sys.executable, "train_stage.py", "60"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in doomed.stdout:
        seen.append(line)
        if "ended (" in line and "1 remain" in line:  # one fit done, the other mid-way
            break
    children = [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == doomed.pid
    ]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert any("1 remain" in line for line in seen), "".join(seen)[-3000:]
    assert children and _wait(lambda: not any(_alive(pid) for pid in children)), children
    assert {p: p.read_bytes() for p in sorted(models.rglob("*")) if p.is_file()} == good

    again = subprocess.run(
        [sys.executable, "train_stage.py", "2"], cwd=tmp_path, env=env, capture_output=True
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rebuilt = {p: p.read_bytes() for p in sorted(models.rglob("*")) if p.is_file()}
    assert set(rebuilt) == set(good) and rebuilt != good
    assert not (tmp_path / "models.tmp").exists()
