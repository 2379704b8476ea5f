"""Daily operation: one run at a time, new-data check, drift, lineage, run summary, webhook.

Pure logic for the ``retrain`` flow and ``make pipeline``; nothing here imports Prefect.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from stockcast.config import Config
from stockcast.errors import StockcastError

LOCK_FILE = ".stockcast.lock"


class RunLocked(StockcastError):
    """Another stockcast run holds the project: this one did nothing."""


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


def new_data(sources_frame: pd.DataFrame, ingested: Path) -> NewData:
    """Compare the sources' newest day per ticker with the last ingested table's."""

    def newest(frame: pd.DataFrame) -> dict[str, str]:
        days = frame.groupby("ticker")["date"].max()
        return {str(t): pd.Timestamp(d).date().isoformat() for t, d in days.items()}

    before = (
        newest(pd.read_parquet(ingested, columns=["ticker", "date"])) if ingested.exists() else {}
    )
    return NewData(newest(sources_frame), before)


@dataclass
class Drift:
    """One ticker's newest returns against its training span's."""

    ticker: str
    reference_days: int
    recent_days: int
    ks_statistic: float
    ks_p_value: float
    levene_p_value: float
    volatility_ratio: float  # std of recent returns / std of training returns
    drift: bool


def detect_drift(frame: pd.DataFrame, target: str, cfg: Config) -> list[Drift]:
    """Per ticker, the last ``drift.recent_days`` daily log returns against the training span.

    The training span is what the models learn from: every row before the validation and
    test spans (``window.val_days`` + ``window.test_days``, and the backtest folds). Two
    tests, each flagging drift below ``drift.p_value``: two-sample Kolmogorov-Smirnov on the
    return distribution and Levene's test on their spread (volatility).

    Args:
        frame: the validated canonical table (``ticker``, ``date``, price columns).
        target: the forecast column.
        cfg: the configuration.
    """
    from scipy import stats

    held_out = (
        cfg.window.val_days + cfg.window.test_days + cfg.backtest.folds * cfg.backtest.fold_days
    )
    out = []
    for ticker, rows in frame.sort_values(["ticker", "date"]).groupby("ticker", sort=True):
        prices = rows[target].to_numpy(dtype="float64")
        returns = np.diff(np.log(prices))
        reference = returns[: max(0, len(prices) - held_out - 1)]
        recent = returns[-cfg.drift.recent_days :]
        if len(reference) < 2 or len(recent) < 2:
            raise StockcastError(
                f"{ticker}: drift needs returns in both spans; training span has "
                f"{len(reference)}, recent span {len(recent)}"
            )
        ks = stats.ks_2samp(reference, recent)
        levene = stats.levene(reference, recent)
        out.append(
            Drift(
                str(ticker),
                len(reference),
                len(recent),
                float(ks.statistic),
                float(ks.pvalue),
                float(levene.pvalue),
                float(np.std(recent) / np.std(reference)),
                bool(min(ks.pvalue, levene.pvalue) < cfg.drift.p_value),
            )
        )
    return out


def drift_report(results: list[Drift]) -> dict[str, Any]:
    return {"drift": any(r.drift for r in results), "tickers": [asdict(r) for r in results]}


def dvc_lineage(root: Path) -> dict[str, str]:
    """The DVC hashes of the datasets a run trained on, from ``dvc.lock``.

    ``dvc_dataset_md5`` is the windowed dataset the models were fitted on (``data/processed``);
    ``dvc_ingested_md5`` the canonical table it came from. ``dvc checkout`` of a commit whose
    ``dvc.lock`` holds these hashes restores exactly that data.
    """
    lock = root / "dvc.lock"
    if not lock.exists():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    wanted = {
        "dvc_dataset_md5": ("window", "data/processed"),
        "dvc_ingested_md5": ("ingest", "data/interim/ingested.parquet"),
    }
    tags = {}
    for tag, (stage, path) in wanted.items():
        for out in stages.get(stage, {}).get("outs", []):
            if out.get("path") == path and out.get("md5"):
                tags[tag] = out["md5"]
    return tags


def summary_markdown(
    metrics: dict[str, Any], registry: dict[str, Any], drift: dict[str, Any] | None = None
) -> str:
    """A run's summary: per ticker and variant the test metrics, the baselines, the decision."""
    lines = ["# stockcast retrain", ""]
    for ticker in sorted(metrics):
        scores = metrics[ticker]
        base = scores.get("baselines", {})
        decision = registry.get(ticker, {})
        lines += [f"## {ticker}", ""]
        verdict = "promoted to @champion" if decision.get("promote") else "not promoted"
        lines.append(
            f"**v{decision.get('version', '?')} ({decision.get('variant', '?')}): {verdict}** "
            f"— {decision.get('reason', 'no decision recorded')}"
        )
        lines += [
            "",
            "| candidate | kind | test RMSE | × best baseline (DM p) | × naive | MAE | dir. acc. "
            "| backtest × best baseline | 80% / 95% coverage |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for variant, s in sorted(scores.items()):
            if variant == "baselines" or not isinstance(s, dict):
                continue
            if "test_rmse" not in s:
                lines.append(f"| {variant} | failed | | | | | | | |")
                continue
            nan = float("nan")
            bt = s.get("backtest_rmse_vs_best_baseline")
            bt_text = f"{bt:.4f} ({s.get('backtest_best_baseline')})" if bt else "—"
            versus = (
                f"{s.get('test_rmse_vs_best_baseline', nan):.4f} "
                f"{s.get('test_best_baseline', '?')} (p={s.get('test_dm_p_value', nan):.3g})"
            )
            lines.append(
                f"| {variant} | {s.get('kind', 'network')} | {s['test_rmse']:.3f} | {versus} | "
                f"{s['rmse_vs_naive']:.4f} | {s.get('test_mae', nan):.3f} | "
                f"{s.get('test_directional_accuracy', nan):.3f} | {bt_text} | "
                f"{s.get('test_coverage_80', nan):.2f} / {s.get('test_coverage_95', nan):.2f} |"
            )
        if base:
            rmse = {
                k.removesuffix("_rmse"): v for k, v in sorted(base.items()) if k.endswith("_rmse")
            }
            lines += ["", "Baseline RMSE: " + ", ".join(f"{k} {v:.3f}" for k, v in rmse.items())]
        lines.append("")
    if drift:
        lines += [
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
    return "\n".join(lines) + "\n"


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON; returns the HTTP status. A failing hook must not hide the
    failure it reports, so callers log and swallow this function's errors."""
    import requests

    response = requests.post(url, json=payload, timeout=timeout)
    return response.status_code


def dvc_remote_configured(root: Path) -> bool:
    """Whether the repo names a DVC remote (``dvc remote add``), so a push has a target."""
    for name in (".dvc/config", ".dvc/config.local"):
        config = root / name
        if config.exists() and "['remote " in config.read_text(encoding="utf-8"):
            return True
    return False


def write_report(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(path)
