"""``make pipeline``: run ``dvc repro`` with one Prefect API for every stage.

Without ``PREFECT_API_URL`` each stage process would start its own temporary Prefect server
(8-18 s each). Instead, when DVC has work to do, this starts one ``prefect server`` on
127.0.0.1 for the whole run (or reuses one already answering at ``PREFECT_API_URL``), and
stops it afterwards. Every stage then shows as a flow run in ``make prefect-ui``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import flows.env  # noqa: F401

BIN = Path(sys.executable).parent


def dvc(*args: str, env: dict[str, str] | None = None, quiet: bool = False) -> int:
    """Run the venv's ``dvc`` with its ``python`` first on PATH (stage commands use it)."""
    env = dict(env or os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run([str(BIN / "dvc"), *args], env=env, stdout=out, stderr=out).returncode


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_api(start_timeout: float = 90.0) -> Iterator[str]:
    """Yield a Prefect API URL: the configured one, or a server started for this run."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = Path(os.environ.get("PREFECT_HOME", ".prefect")) / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + start_timeout
        while not healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prefect server did not start; see {log}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__)
    parser.add_argument("targets", nargs="*", help="dvc.yaml stages to reproduce (default: all)")
    parser.add_argument("--force", action="store_true", help="rerun stages even if unchanged")
    parser.add_argument(
        "--single-item",
        action="store_true",
        help="reproduce only the named stages, not their upstream",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.force and dvc("status", "--quiet", *args.targets, quiet=True) == 0:
        print("pipeline is up to date: every stage skipped (dvc status)")
        return 0
    options = [
        flag for flag, on in (("--force", args.force), ("--single-item", args.single_item)) if on
    ]
    repro = ["repro", *options, *args.targets]
    with prefect_api() as url:
        code = dvc(*repro, env={**os.environ, "PREFECT_API_URL": url})
    print(
        f"pipeline {'finished' if code == 0 else 'FAILED'} in {time.perf_counter() - started:.1f} s"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
