"""A real Dask cluster that shares no disk with the project: ``dask scheduler`` and two
``dask worker`` processes started from the command line on 127.0.0.1, in a working folder
of their own, shut out of the project's folder, and the train stage run through
``execution.dask_address``. The models must come from those workers and match the threads
runner's (same seed, same weights)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.server import free_port
from tests.conftest import PROJECT
from tests.flows.project import make_project, pipeline

pytestmark = pytest.mark.e2e

DASK = Path(sys.executable).parent / "dask"
# Root without any capability: file permissions apply to it as to any user, so a folder
# owned by another user with mode 700 is closed to it (as another machine's disk would be).
NO_CAPABILITIES = [
    "setpriv",
    "--bounding-set",
    "-all",
    "--inh-caps",
    "-all",
    "--securebits",
    "+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
    "--",
]


def _can_shut_out() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def _wait_for_workers(address: str, count: int, timeout: float = 120) -> dict[str, int]:
    """The cluster's workers (address -> the pid of the process that runs its tasks) once
    ``count`` have joined."""
    from distributed import Client

    deadline = time.monotonic() + timeout
    with Client(address, timeout=30) as client:
        while time.monotonic() < deadline:
            if len(client.scheduler_info(n_workers=-1)["workers"]) >= count:
                return client.run(os.getpid)
            time.sleep(0.5)
    raise AssertionError(f"fewer than {count} workers joined {address}")


def _weights(path: str) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def test_the_train_stage_on_a_cluster_that_cannot_read_the_project(tmp_path):
    if not _can_shut_out():
        if os.environ.get("STOCKCAST_REQUIRE_CLUSTER"):
            pytest.fail("the cluster test needs root and setpriv (util-linux) to shut workers out")
        pytest.skip("needs root and setpriv to run workers shut out of the project folder")
    project, home = tmp_path / "project", tmp_path / "workers"
    project.mkdir()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = make_project(
        project,
        execution={"runner": "dask", "dask_address": address, "timeout_seconds": 600},
        train={"variants": ["simple_rnn", "gru"], "epochs": 3, "patience": 3},
    )
    # The workers' own folder holds what a worker machine would have installed: the
    # project's code (the packages come from the shared virtualenv, read-only).
    (home / "code").mkdir(parents=True)
    shutil.copytree(
        PROJECT / "flows", home / "code/flows", ignore=shutil.ignore_patterns("__pycache__")
    )
    worker_env = {
        k: v for k, v in env.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PYTHONPATH"))
    }
    worker_env.update(PYTHONPATH=str(home / "code"), HOME=str(home))
    # the project folder: another owner, mode 700
    shutil.chown(project, "nobody", "nogroup")
    project.chmod(0o700)
    probe = subprocess.run(
        [*NO_CAPABILITIES, sys.executable, "-c", f"open({str(project / 'params.yaml')!r})"],
        cwd=home,
        env=worker_env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr

    procs = [
        subprocess.Popen(
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],  # fmt: skip
            cwd=home,
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        for name in ("worker-a", "worker-b"):
            (home / name).mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        *NO_CAPABILITIES,
                        str(DASK),
                        "worker",
                        address,
                        "--name",
                        name,
                        "--nthreads",
                        "1",
                        "--local-directory",
                        str(home / name),
                        "--no-dashboard",
                    ],  # fmt: skip
                    cwd=home / name,
                    env=worker_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        workers = _wait_for_workers(address, 2)

        result = pipeline(project, env)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        summary = json.loads((project / "models/train.json").read_text())["SH600519"]
        assert set(summary) == {"simple_rnn", "gru"}
        # every fit ran in one of the cluster's worker processes, none in the pipeline's
        pids = {int(r["worker"].rsplit("pid ", 1)[-1]) for r in summary.values()}
        assert pids <= set(workers.values()), (pids, workers)
        on_cluster = {v: r["model_path"] for v, r in summary.items()}
        kept = {v: _weights(path) for v, path in on_cluster.items()}

        # the same fits on the threads runner, in the pipeline's own process
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["execution"].update(runner="threads", dask_address=None)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        again = pipeline(project, env, "--force", "--single-item", "train")
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        local = json.loads((project / "models/train.json").read_text())["SH600519"]
        assert all("Dask" not in r["worker"] for r in local.values())
        for variant, weights in kept.items():
            for a, b in zip(weights, _weights(local[variant]["model_path"]), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=variant)
            assert local[variant]["best_val_loss"] == pytest.approx(
                summary[variant]["best_val_loss"], rel=1e-5
            )

        # The same workers, another run with its own temporary Prefect server: workers that
        # reported to the first run's server (stopped) are restarted before any fit, or
        # Prefect's clients in them would still call it. And fits_per_worker on the cluster:
        # one fit per chunk here, and before every chunk but the first the workers' nannies
        # replace their processes (memory stays flat).
        params["execution"].update(
            runner="dask", dask_address=address, max_workers=1, fits_per_worker=1
        )
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        chunked = pipeline(project, env, "--force", "--single-item", "train")
        assert chunked.returncode == 0, chunked.stdout[-4000:] + chunked.stderr[-4000:]
        fits = json.loads((project / "models/train.json").read_text())["SH600519"]
        first, second = (
            int(fits[v]["worker"].rsplit("pid ", 1)[-1]) for v in ("simple_rnn", "gru")
        )  # the plan's order
        old = set(workers.values())
        assert first not in old and second not in old | {first}, (fits, workers)
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
