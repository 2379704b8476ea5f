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
def prefect_api(port: int | None = None, start_timeout: float = 90.0) -> Iterator[str]:
    """Yield a Prefect API URL: the configured one, one already answering on ``port``, or a
    server started for the duration (on ``port``, or a free one)."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    if port and healthy(f"http://127.0.0.1:{port}/api"):  # e.g. `make prefect-ui`
        yield f"http://127.0.0.1:{port}/api"
        return
    port = port or free_port()
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
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run as a DVC experiment (`dvc exp run -S KEY=VALUE`); repeatable",
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    from stockcast.config import load_config
    from stockcast.errors import StockcastError
    from stockcast.ops import RunLocked, run_lock

    started = time.perf_counter()
    root = Path.cwd()
    try:
        schedule = load_config(root / args.params).schedule
        with run_lock(root, "make pipeline", schedule.lock_wait_seconds):
            code = _run(args)
    except RunLocked as exc:
        print(f"stockcast pipeline did not start: {exc}", file=sys.stderr)
        return 3
    except StockcastError as exc:
        print(f"stockcast pipeline stopped: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(f"pipeline {'finished' if code == 0 else 'FAILED'} in {elapsed:.1f} s")
    if code != 0 and schedule.webhook:
        _notify(schedule.webhook, code, elapsed)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.set_param:  # a DVC experiment: dvc decides what reruns
        repro = ["exp", "run", *(f"-S{kv}" for kv in args.set_param), *args.targets]
    else:
        if not args.force and dvc("status", "--quiet", *args.targets, quiet=True) == 0:
            print("pipeline is up to date: every stage skipped (dvc status)")
            return 0
        flags = (("--force", args.force), ("--single-item", args.single_item))
        repro = ["repro", *(flag for flag, on in flags if on), *args.targets]
    with prefect_api() as url:
        return dvc(*repro, env={**os.environ, "PREFECT_API_URL": url})


def _notify(url: str, code: int, elapsed: float) -> None:
    from stockcast.ops import post_webhook

    payload = {"flow": "make pipeline", "state": "FAILED", "exit_code": code, "seconds": elapsed}
    payload["project"] = str(Path.cwd())
    try:
        print(f"failure posted to the webhook (HTTP {post_webhook(url, payload)})")
    except Exception as exc:  # noqa: BLE001 - the hook must never hide the failure
        print(f"could not post to the webhook {url}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
