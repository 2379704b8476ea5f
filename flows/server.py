"""A Prefect API for a whole run: the configured one, one already answering, or a server
started for the run's duration (one server instead of a temporary one per process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def venv_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (this process's environment by default) with the venv's folder first on
    ``PATH``: its ``dvc`` and ``python`` are the ones a stage command finds."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


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


def _die_with_parent() -> None:
    """In the server's process, before it starts: ask Linux for SIGTERM when the process
    that started it dies, however it dies (``prctl(PR_SET_PDEATHSIG)``). Elsewhere a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextmanager
def prefect_api(
    port: int | None = None,
    start_timeout: float = 90.0,
    while_starting: Callable[[str], None] | None = None,
    links: bool = False,
) -> Iterator[str]:
    """Yield a Prefect API URL: the configured one, one already answering on ``port``, or a
    server started for the duration (on ``port``, or a free one).

    ``while_starting(url)`` runs once the URL is known, while a started server boots (a few
    seconds), e.g. to import what the run needs in the meantime. A server started here is
    gone when the block ends, so the flow runs print no "View at" link to it (an empty
    ``PREFECT_UI_URL``), unless ``links`` (a server that serves as long as its runs do) or
    the user set ``PREFECT_UI_URL``.
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
    if not links:
        os.environ.setdefault("PREFECT_UI_URL", "")  # before Prefect reads its settings
    log = Path(os.environ.get("PREFECT_HOME", ".prefect")) / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the run, not the server
            preexec_fn=_die_with_parent,  # but a SIGKILLed run takes its server with it
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


def flush_prefect_logs() -> None:
    """Send the flows' queued log lines while the API still answers."""
    if "prefect" in sys.modules:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
