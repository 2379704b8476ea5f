"""Daily operation: one run at a time, the new-data check, the run summary, notifications.

Pure logic for the ``retrain`` flow and ``make pipeline``; nothing here imports Prefect.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockcast.errors import RunLocked

if TYPE_CHECKING:  # pandas is imported where it is used: `make pipeline` takes the run lock
    import pandas as pd  # before the Prefect server starts, and pandas takes 1.7 s to import

LOCK_FILE = ".stockcast.lock"


@contextmanager
def run_lock(root: Path, what: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the project's run lock for the duration; one run (scheduled or manual) at a time.

    An OS file lock (``flock``): it is released when the holder exits, even by a crash or
    ``kill -9``, so a dead run never leaves a stale lock behind.

    Args:
        root: the project root (the lock file lives there).
        what: who is asking, shown to a run that has to wait or give up.
        wait_seconds: how long to wait for the holder; 0 gives up at once.

    Raises:
        RunLocked: the lock is still held after ``wait_seconds``; names the holder.
    """
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(encoding="utf-8").strip() or "unknown"
                    raise RunLocked(
                        f"another stockcast run is in progress ({holder}); this {what} did "
                        f"nothing after waiting {wait_seconds:g} s. Let it finish, or set "
                        "schedule.lock_wait_seconds to wait longer."
                    ) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"{what}, pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0
        )
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class NewData:
    """Per ticker: the newest trading day in the sources and in the last ingested table."""

    newest_source: dict[str, str]
    newest_ingested: dict[str, str]

    @property
    def tickers(self) -> list[str]:
        """Tickers with at least one trading day the last ingest did not have."""
        return sorted(
            t for t, day in self.newest_source.items() if day > self.newest_ingested.get(t, "")
        )

    def message(self) -> str:
        if not self.tickers:
            days = ", ".join(f"{t} {d}" for t, d in sorted(self.newest_ingested.items()))
            return f"no source has a new trading day (newest already ingested: {days})"
        return "new trading days: " + ", ".join(
            f"{t} {self.newest_ingested.get(t, 'none')} -> {self.newest_source[t]}"
            for t in self.tickers
        )


@contextmanager
def env_set(name: str, value: str | None) -> Iterator[None]:
    """Environment variable ``name`` set to ``value`` (unset for None) inside, restored after."""
    old = os.environ.get(name)
    try:
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def retrain_decision(on_drift: str, drifted: bool, force: bool) -> tuple[bool, str]:
    """Whether the daily run retrains after refreshing the data, and why.

    ``drift.on_drift: warn`` retrains every run (drift is recorded); ``retrain`` retrains
    only when some ticker drifted, or when forced.
    """
    if on_drift == "retrain" and not drifted and not force:
        return (
            False,
            "no drift: data refreshed and validated, models kept (drift.on_drift: retrain)",
        )
    if drifted:
        return True, f"drift: retraining (drift.on_drift: {on_drift})"
    return True, "forced: retraining" if force and on_drift == "retrain" else "retraining"


def new_data(sources_frame: pd.DataFrame, ingested: Path) -> NewData:
    """Compare the sources' newest day per ticker with the last ingested table's."""
    import pandas as pd

    def newest(frame: pd.DataFrame) -> dict[str, str]:
        days = frame.groupby("ticker")["date"].max()
        return {str(t): pd.Timestamp(d).date().isoformat() for t, d in days.items()}

    before = (
        newest(pd.read_parquet(ingested, columns=["ticker", "date"])) if ingested.exists() else {}
    )
    return NewData(newest(sources_frame), before)


def summary_markdown(
    metrics: dict[str, Any], registry: dict[str, Any], drift: dict[str, Any] | None = None
) -> str:
    """A run's summary: per ticker each candidate's test metrics against the best baseline,
    the registry's decision, and the drift table."""
    lines = ["# stockcast retrain", ""]
    for ticker in sorted(metrics):
        lines += _ticker_section(ticker, metrics[ticker], registry.get(ticker, {}))
    if drift:
        lines += _drift_section(drift)
    return "\n".join(lines) + "\n"


def _ticker_section(ticker: str, scores: dict[str, Any], decision: dict[str, Any]) -> list[str]:
    verdict = "promoted to @champion" if decision.get("promote") else "not promoted"
    lines = [
        f"## {ticker}",
        "",
        f"**v{decision.get('version', '?')} ({decision.get('variant', '?')}): {verdict}** "
        f"— {decision.get('reason', 'no decision recorded')}",
        "",
        "| candidate | kind | test RMSE | × best baseline (DM p) | × naive | MAE | dir. acc. "
        "| backtest × best baseline | 80% / 95% coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in sorted(scores.items()):
        if name != "baselines" and isinstance(s, dict):
            lines.append(_candidate_row(name, s))
    rmse = {
        k.removesuffix("_rmse"): v
        for k, v in sorted(scores.get("baselines", {}).items())
        if k.endswith("_rmse")
    }
    if rmse:
        lines += ["", "Baseline RMSE: " + ", ".join(f"{k} {v:.3f}" for k, v in rmse.items())]
    return [*lines, ""]


def _candidate_row(name: str, s: dict[str, Any]) -> str:
    if "test_rmse" not in s:
        return f"| {name} | failed | | | | | | | |"
    nan = float("nan")
    bt = s.get("backtest_rmse_vs_best_baseline")
    bt_text = f"{bt:.4f} ({s.get('backtest_best_baseline')})" if bt else "—"
    versus = (
        f"{s.get('test_rmse_vs_best_baseline', nan):.4f} "
        f"{s.get('test_best_baseline', '?')} (p={s.get('test_dm_p_value', nan):.3g})"
    )
    return (
        f"| {name} | {s.get('kind', 'network')} | {s['test_rmse']:.3f} | {versus} | "
        f"{s['rmse_vs_naive']:.4f} | {s.get('test_mae', nan):.3f} | "
        f"{s.get('test_directional_accuracy', nan):.3f} | {bt_text} | "
        f"{s.get('test_coverage_80', nan):.2f} / {s.get('test_coverage_95', nan):.2f} |"
    )


def _drift_section(drift: dict[str, Any]) -> list[str]:
    lines = [
        "## Drift",
        "",
        "| ticker | KS p | Levene p | vol. ratio | drift |",
        "|---|---|---|---|---|",
    ]
    for d in drift.get("tickers", []):
        lines.append(
            f"| {d['ticker']} | {d['ks_p_value']:.4f} | {d['levene_p_value']:.4f} | "
            f"{d['volatility_ratio']:.3f} | {'**yes**' if d['drift'] else 'no'} |"
        )
    return lines


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON; returns the HTTP status. A failing hook must not hide the
    failure it reports, so callers log and swallow this function's errors."""
    import requests

    response = requests.post(url, json=payload, timeout=timeout)
    return response.status_code


def notify(env_name: str | None, title: str, body: str, kind: str = "FAILURE") -> int | None:
    """Send a notice (``kind``: Apprise's FAILURE, WARNING, INFO or SUCCESS) to the Apprise
    URL(s) in environment variable ``env_name``
    (Slack, Teams, e-mail, ... : https://github.com/caronc/apprise/wiki), so no secret sits
    in ``params.yaml``. Returns how many URLs were notified, or None when none is set.

    Raises:
        RuntimeError: a URL is not a valid Apprise URL or the service refused the notice
            (callers log it: a failing notice must not hide the failure it reports).
    """
    import os

    urls = os.environ.get(env_name, "").split() if env_name else []
    if not urls:
        return None
    import apprise

    sender = apprise.Apprise()
    for url in urls:
        if not sender.add(url):
            raise RuntimeError(
                f"${env_name} holds an URL Apprise cannot use: {url.split(':')[0]}://..."
            )
    if not sender.notify(title=title, body=body, notify_type=apprise.NotifyType[kind]):
        raise RuntimeError(f"the notice to ${env_name} was not delivered")
    return len(urls)


def dvc_remote_configured(root: Path) -> bool:
    """Whether the repo names a DVC remote (``dvc remote add``), so a push has a target."""
    for name in (".dvc/config", ".dvc/config.local"):
        config = root / name
        if config.exists() and "['remote " in config.read_text(encoding="utf-8"):
            return True
    return False


def progress_points(total: int, parts: int = 10) -> set[int]:
    """Which of ``1..total`` items to report as done: every one up to ``parts`` items, else
    about every ``total / parts``th and the last, so a long step says where it is in a few
    lines."""
    step = max(1, total // parts)
    return {k for k in range(1, total + 1) if k % step == 0} | ({total} if total else set())
