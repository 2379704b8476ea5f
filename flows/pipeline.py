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
from collections.abc import Callable, Iterator
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
def prefect_api(
    port: int | None = None,
    start_timeout: float = 90.0,
    while_starting: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Yield a Prefect API URL: the configured one, one already answering on ``port``, or a
    server started for the duration (on ``port``, or a free one).

    ``while_starting(url)`` runs once the URL is known, while a started server boots (a few
    seconds), e.g. to import what the run needs in the meantime.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if not configured and port and healthy(f"http://127.0.0.1:{port}/api"):
        configured = f"http://127.0.0.1:{port}/api"  # e.g. `make prefect-ui`
    if configured:
        if while_starting:
            while_starting(configured)
        yield configured
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
        if while_starting:
            while_starting(url)
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
    if args.set_param:  # a DVC experiment: dvc runs each stage's cmd as its own process
        repro = ["exp", "run", *(f"-S{kv}" for kv in args.set_param), *args.targets]
        with prefect_api() as url:
            return dvc(*repro, env={**os.environ, "PREFECT_API_URL": url})
    if not args.force and dvc("status", "--quiet", *args.targets, quiet=True) == 0:
        print("pipeline is up to date: every stage skipped (dvc status)")
        return 0
    from stockcast.errors import StockcastError

    with prefect_api(while_starting=_import_stages):
        try:
            run_stages(Path.cwd(), args.targets, args.force, args.single_item)
        except StockcastError as exc:
            print(f"\n{exc}", file=sys.stderr)
            return 1
        finally:
            flush_prefect_logs()
    return 0


def _import_stages(url: str) -> None:
    """Point Prefect at ``url``, then import the stage flows (Prefect, pandas: seconds)."""
    # Before Prefect is first imported in this process: its settings (and the context it
    # hands to training worker processes) must carry the URL, or each worker would start a
    # temporary server of its own.
    os.environ["PREFECT_API_URL"] = url
    import flows.stages  # noqa: F401


def flush_prefect_logs() -> None:
    """Send the flows' queued log lines while the API still answers."""
    if "prefect" in sys.modules:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()


def run_stages(
    root: Path, targets: list[str] | None = None, force: bool = False, single_item: bool = False
) -> list[str]:
    """Run the stale ``dvc.yaml`` stages in this process, as Prefect flows, in file order.

    The same stages ``dvc repro`` runs (each stage's ``cmd`` is ``python -m flows.stages
    STAGE``, so a plain ``dvc repro`` still works), but without a new interpreter per stage:
    the libraries are imported once. DVC stays the judge of what is stale (``dvc status`` per
    stage, after its upstream has run) and the record keeper: after a stage succeeds,
    ``dvc commit`` writes its deps, params and outs to ``dvc.lock`` and caches the outs,
    exactly as ``dvc repro`` does. A stage that fails is not committed.

    Args:
        root: the project root.
        targets: stages to bring up to date (default: all); their upstream too unless
            ``single_item``.
        force: run the selected stages even when DVC finds nothing changed.
        single_item: only the named stages.

    Returns:
        The stages that ran.

    Raises:
        StockcastError: a stage failed (its own message, e.g. the validation report).
    """
    import yaml
    from dvc.repo import Repo

    import flows.stages as stages
    from stockcast.errors import StockcastError

    order = list(yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"])
    targets = list(targets or [])
    if unknown := sorted(set(targets) - set(order)):
        raise StockcastError(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    if single_item and targets:
        selected = [s for s in order if s in targets]
    elif targets:
        selected = order[: max(order.index(t) for t in targets) + 1]
    else:
        selected = order
    ran = []
    repo = Repo(str(root))
    try:
        for name in selected:
            if not force and not repo.status(targets=[name]):
                print(f"Stage '{name}' didn't change, skipping", flush=True)
                continue
            print(f"Running stage '{name}':\n> python -m flows.stages {name}", flush=True)
            try:
                stages.STAGES[name](params="params.yaml")
            except StockcastError as exc:
                raise StockcastError(f"stockcast {name} stopped:\n{exc}") from exc
            repo.commit(target=name, force=True)  # DVC prints "Updating lock file"
            ran.append(name)
    finally:
        repo.close()
    return ran


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
