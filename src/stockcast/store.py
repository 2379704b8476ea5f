"""The tracking store's faults: bounded retries of what is transient, one plain message for
what did not recover, and the MLflow runs a dead run left RUNNING.

A tracking server that restarts, or a network blip, is the textbook transient fault: every
HTTP request MLflow makes is retried with exponential back-off on a refused or broken
connection, a timeout and a 408/429/5xx answer (MLflow's own retry, bounded here by
``execution.store_retries``, ``store_backoff_seconds`` and ``store_timeout_seconds``), and
each retry is one plain log line. A 4xx answer or a bad request is not retried. What still
fails becomes :class:`~stockcast.errors.StoreUnavailable`: which store, what was being done,
what was (not) changed and how to rerun, with no traceback.

A register attempt keeps a journal (``.stockcast.mlflow-runs.json``) while it has MLflow runs
open. A process that dies mid-write (SIGKILL, the OOM killer) leaves it behind, and the
project's next run ends the runs it left RUNNING, as Prefect's side does for flow runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stockcast.errors import StockcastError, StoreUnavailable

JOURNAL = ".stockcast.mlflow-runs.json"
PROJECT_TAG = "stockcast.project"  # on every MLflow run of the project: whose runs to tidy
ENDED_BY_TAG = "stockcast.ended_by"  # the run that ended a dead run's MLflow runs
RERUN = "stockcast run register --single-item --force"


def tracking_uri(project_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root.resolve()}/mlflow.db"


def project_id(root: Path) -> str:
    """A short id of the project's folder: one store (or Prefect server) may serve many."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


MLFLOW_RETRY_SETTINGS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)
_SET_BY_USER = frozenset(k for k in MLFLOW_RETRY_SETTINGS if k in os.environ)


@dataclass(frozen=True)
class RetryPolicy:
    """How MLflow's HTTP requests retry a transient fault: ``retries`` more tries, waiting
    about ``backoff_seconds`` x 2^(n-1) before the n-th (none before the first), each try
    given ``timeout_seconds``."""

    retries: int = 4
    backoff_seconds: int = 1
    timeout_seconds: int = 30

    def apply(self) -> None:
        """Set MLflow's retry settings (it reads them at every request), except those the
        user's environment set."""
        for key, value in zip(MLFLOW_RETRY_SETTINGS, self.astuple(), strict=True):
            if key not in _SET_BY_USER:
                os.environ[key] = str(value)
        log_retries_plainly()

    @classmethod
    def of(cls, execution: Any) -> RetryPolicy:
        """The policy in ``params.yaml``'s ``execution`` section."""
        return cls(
            execution.store_retries,
            execution.store_backoff_seconds,
            execution.store_timeout_seconds,
        )

    def effective(self) -> RetryPolicy:
        """The retries MLflow makes: the environment's settings where they are set."""
        values = [
            int(os.environ.get(k, v))
            for k, v in zip(MLFLOW_RETRY_SETTINGS, self.astuple(), strict=True)
        ]
        return RetryPolicy(*values)

    def astuple(self) -> tuple[int, int, int]:
        return self.retries, self.backoff_seconds, self.timeout_seconds

    def budget_seconds(self) -> float:
        """The longest the back-off waits in all (jitter aside)."""
        return float(sum(self.backoff_seconds * 2 ** (n - 1) for n in range(2, self.retries + 1)))


class PlainRetryLines(logging.Filter):
    """One plain line per retried HTTP request, from urllib3's own records: its
    "Incremented Retry" debug record (made for a connection error and for a retried status
    alike) becomes a warning naming the host, the path, what went wrong and the tries left;
    its long "Retrying (Retry(total=...))" warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("urllib3.connectionpool"):
            return not str(record.msg).startswith("Retrying (")
        if not str(record.msg).startswith("Incremented Retry"):
            return False
        retry = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else None
        history = getattr(retry, "history", ()) or ()
        if not history:
            return False
        last = history[-1]
        why = f"HTTP {last.status}" if last.status else fault_reason(last.error) or "no answer"
        left = getattr(retry, "total", None)
        record.msg = "HTTP %s %s failed (%s): retrying, %s tries left"
        record.args = (last.method, last.url, why, left if left is not None else "?")
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_PLAIN = PlainRetryLines()


def log_retries_plainly() -> None:
    """Install :class:`PlainRetryLines` on urllib3's loggers (once)."""
    retry_log = logging.getLogger("urllib3.util.retry")
    if _PLAIN not in retry_log.filters:
        retry_log.addFilter(_PLAIN)
        retry_log.setLevel(logging.DEBUG)  # only its increments pass the filter
        logging.getLogger("urllib3.connectionpool").addFilter(_PLAIN)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)


def fault_reason(exc: BaseException | None) -> str | None:
    """Why a store call failed, in a few words, when the fault is transient (a connection
    refused, reset or timed out; a 5xx, 408 or 429 answer; a database that cannot be
    reached); None for any other error."""
    if exc is None:
        return None
    for e in _chain(exc):
        name = type(e).__name__
        text = str(e)
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in text:
            return "connection refused"
        if isinstance(e, TimeoutError) or "Timeout" in name or "timed out" in text:
            return "no answer in time"
        if isinstance(e, ConnectionError) or name in ("RemoteDisconnected", "ProtocolError"):
            return "connection broken"
        if many := re.search(r"too many (\S+) error responses", text):  # urllib3's words
            return f"repeated {many[1]} answers"
        if (code := re.search(r"failed with error code (\d{3})", text)) and transient(int(code[1])):
            return f"HTTP {code[1]}"
        if name == "OperationalError":  # SQLAlchemy: the database did not answer
            return "database error: " + text.splitlines()[0][:160]
    return None


def transient(status: int) -> bool:
    """An HTTP status worth another try: a 5xx, a request timeout or a rate limit."""
    return status >= 500 or status in (408, 429)


class Step:
    """What a stage is doing with the store now, for the message if it fails."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, what: str) -> None:
        self.what = what


@contextmanager
def store_faults(
    uri: str, policy: RetryPolicy, changed: Callable[[Step], str], rerun: str = RERUN
) -> Iterator[Step]:
    """Turn a transient store fault that outlived the retries into one plain
    :class:`StoreUnavailable`; any other error passes as it is.

    Args:
        uri: the tracking store.
        policy: the retries that were made.
        changed: says, from the step, what was changed before the fault.
        rerun: the command that redoes the work.
    """
    step = Step("opening the store")
    started = time.monotonic()
    try:
        yield step
    except StockcastError:
        raise
    except Exception as exc:
        reason = fault_reason(exc)
        if reason is None:
            raise
        raise StoreUnavailable(
            f"the MLflow tracking store at {shown_uri(uri)} did not answer while "
            f"{step.what} ({reason}; {policy.effective().retries + 1} tries per request, "
            f"{time.monotonic() - started:.0f} s in all).\n{changed(step)}\n"
            f"When the store answers again, rerun this stage alone: {rerun}"
        ) from exc


def shown_uri(uri: str) -> str:
    """The URI without any password in it."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return uri


def client_for(root: Path, policy: RetryPolicy | None = None) -> Any:
    """An MLflow client on the project's store (and MLflow's own calls pointed at it), its
    requests retried on transient faults by ``policy`` (default: the params' defaults)."""
    return client_at(tracking_uri(root), policy)


def client_at(uri: str, policy: RetryPolicy | None = None) -> Any:
    """An MLflow client on the store at ``uri`` (see :func:`client_for`)."""
    import mlflow
    from mlflow import MlflowClient

    (policy or RetryPolicy()).apply()
    mlflow.set_tracking_uri(uri)
    return MlflowClient()


# -- runs left RUNNING ----------------------------------------------------------------------


def open_journal(root: Path, uri: str, experiment_id: str) -> str:
    """Record that this process is about to open MLflow runs; returns the attempt's id."""
    attempt = uuid.uuid4().hex[:12]
    record = {
        "uri": uri,
        "experiment_id": experiment_id,
        "project": project_id(root),
        "attempt": attempt,
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "failed": None,
    }
    _write_journal(root, record)
    return attempt


def journal_failure(root: Path, reason: str) -> None:
    """Keep, for the run that ends them, why this attempt's runs could not be ended."""
    path = root / JOURNAL
    if path.exists():
        record = json.loads(path.read_text(encoding="utf-8"))
        _write_journal(root, {**record, "failed": reason[:2000]})


def close_journal(root: Path) -> None:
    """Every run this attempt opened is ended."""
    (root / JOURNAL).unlink(missing_ok=True)


def _write_journal(root: Path, record: dict[str, Any]) -> None:
    tmp = root / f"{JOURNAL}.tmp"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.replace(root / JOURNAL)


def end_dead_runs(client_for: Callable[[str], Any], root: Path, ended_by: str) -> list[str]:
    """End the MLflow runs a dead register attempt left RUNNING: KILLED when its process
    died, FAILED with the reason when it failed and could not end them itself; each tagged
    with the run that ended it. Called under the project's run lock, so no attempt of the
    project is alive. A store that does not answer keeps the journal for the next run.

    Args:
        client_for: makes an MLflow client for a tracking URI.
        root: the project root.
        ended_by: names the run doing this.

    Returns:
        The ids of the runs ended.
    """
    path = root / JOURNAL
    if not path.exists():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    client = client_for(record["uri"])
    status = "FAILED" if record.get("failed") else "KILLED"
    why = record.get("failed") or "its process died mid-run"
    query = f"attributes.status = 'RUNNING' and tags.`{PROJECT_TAG}` = '{record['project']}'"
    ended = []
    for run in client.search_runs([record["experiment_id"]], query, max_results=5000):
        run_id = run.info.run_id
        client.set_tag(run_id, ENDED_BY_TAG, ended_by)
        client.set_tag(run_id, "error", f"{why}; ended {status} by {ended_by}"[:5000])
        client.set_terminated(run_id, status)
        ended.append(run_id)
    close_journal(root)
    return ended
