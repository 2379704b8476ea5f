"""A temporary copy of the project, for tests that run the real chain (DVC, Prefect, MLflow)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import PROJECT


def make_project(root: Path, rows: int = 520, **overrides: Any) -> dict[str, str]:
    """Copy code, Makefile and SH600519's last ``rows`` rows into ``root``; init git and DVC.

    ``overrides`` replace whole sections of ``params.yaml`` (``train={...}`` and
    ``execution={...}`` update keys).
    Returns the environment to run commands in (the project's venv first on PATH, no
    inherited tracking or Prefect URLs).
    """
    for name in ("src", "flows"):
        shutil.copytree(
            PROJECT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    for name in ("dvc.yaml", "Makefile", "prefect.yaml", "pyproject.toml", "requirements.lock"):
        shutil.copy2(PROJECT / name, root / name)  # copy2 keeps mtimes: make sees setup done
    (root / ".venv").symlink_to(PROJECT / ".venv")
    (root / "data/raw").mkdir(parents=True)
    raw = (PROJECT / "data/raw/SH600519.csv").read_text().splitlines()
    (root / "data/raw/SH600519.csv").write_text("\n".join([raw[0], *raw[-rows:]]) + "\n")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["data"]["sources"] = [{"path": "data/raw/SH600519.csv", "ticker": "SH600519"}]
    params["window"] = {"window": 10, "val_days": 50, "test_days": 60}
    params["backtest"] = {"folds": 0, "fold_days": 30}
    params["train"].update(units=[8, 8], epochs=1, patience=1, batch_size=32)
    params["register"].update(max_rmse_vs_naive=None, max_mase=None)
    params["drift"]["recent_days"] = 20
    for section, values in overrides.items():
        if section in ("train", "execution"):
            params[section].update(values)
        else:
            params[section] = values
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text(
        "mlflow.db\nmlruns/\n.prefect/\n.venv\n.stockcast.lock\n.stockcast.mlflow-runs.json\nserver/\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "STOCKCAST_"))
    }
    env.update(PREFECT_HOME=str(root / ".prefect"), DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@stockcast.invalid"],
        ["git", "config", "user.name", "stockcast tests"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    return env


def run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run ``args`` in its own process group; on timeout kill the whole group.

    ``subprocess.run(timeout=...)`` kills only the child, then waits for its output pipes:
    a grandchild that outlived it (a server, a pool worker) would keep them open for ever.
    """
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(args, timeout, out, err) from None
    finally:
        try:  # nothing the command started may outlive it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def pipeline(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``make pipeline`` in ``cwd`` (``python -m flows.repro``)."""
    return run([sys.executable, "-m", "flows.repro", *args], cwd, env)


def commit(root: Path, env: dict[str, str], message: str) -> None:
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200, failing early if ``proc`` (its server) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen) -> None:
    """End a process started in a session of its own, and all it started."""
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass


@contextmanager
def mlflow_server(backend: str, artifacts: Path, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with ``backend`` as its store and the models in
    ``artifacts``; yields its tracking URI."""
    from flows.server import free_port

    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],  # fmt: skip
        cwd=cwd,
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", server)
        yield uri
    finally:
        stop(server)


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (host:port) that resets the first
    ``drop`` connections it accepts, answers the next ``unavailable`` with HTTP 503, then
    forwards; each forwarded request waits ``delay`` seconds first (a slow store)."""

    def __init__(self, target: str, drop: int = 0, unavailable: int = 0, delay: float = 0.0):
        import socket

        self.target = target.removeprefix("http://")
        self.drop, self.unavailable, self.delay = drop, unavailable, delay
        self.dropped = self.refused = self.forwarded = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def reset(self, drop: int = 0, unavailable: int = 0, delay: float = 0.0) -> FlakyProxy:
        """New faults from now on (the address stays: a store records the address it was
        reached at in what it logs, and a later run reads those records back)."""
        self.drop, self.unavailable, self.delay = drop, unavailable, delay
        self.dropped = self.refused = self.forwarded = 0
        return self

    def __enter__(self) -> FlakyProxy:
        import threading

        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()

    def _accept(self) -> None:
        import socket
        import struct
        import threading

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.dropped < self.drop:
                self.dropped += 1  # a reset, as a server that went away gives
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.refused < self.unavailable:
                self.refused += 1
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")  # fmt: skip
                conn.close()
            else:
                self.forwarded += 1
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn: Any) -> None:
        import socket
        import threading

        host, port = self.target.split(":")
        upstream = socket.create_connection((host, int(port)))

        def pump(src: Any, dst: Any, wait: float) -> None:
            try:
                while data := src.recv(65536):
                    time.sleep(wait)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(upstream, conn, 0.0), daemon=True).start()
        pump(conn, upstream, self.delay)
