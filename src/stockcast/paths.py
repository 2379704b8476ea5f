"""Where every stage reads and writes, and the one way an output is written: aside, then
renamed over the old one, so a crash leaves the last good output in place."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MODEL_FILE = "model.keras"  # a trained network's file, in its fit's folder


@dataclass(frozen=True)
class Paths:
    """Every stage's inputs and outputs, relative to the project root."""

    root: Path

    @property
    def ingested(self) -> Path:
        return self.root / "data/interim/ingested.parquet"

    @property
    def ingest_report(self) -> Path:
        return self.root / "data/interim/ingest.json"

    @property
    def validated(self) -> Path:
        return self.root / "data/interim/validated.parquet"

    @property
    def validation_reports(self) -> Path:
        return self.root / "reports/validation"

    @property
    def drift(self) -> Path:
        return self.root / "reports/drift.json"

    @property
    def processed(self) -> Path:
        return self.root / "data/processed"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def failed_models(self) -> Path:
        """A failed train stage's fits, kept for reading; ``models/`` keeps the last good."""
        return self.root / "models.failed"

    @property
    def metrics(self) -> Path:
        return self.root / "reports/metrics.json"

    @property
    def calibration(self) -> Path:
        """Every candidate's interval calibration (scores, method, miscoverage levels)."""
        return self.root / "reports/calibration.json"

    @property
    def plots(self) -> Path:
        return self.root / "reports/plots"

    @property
    def predictions(self) -> Path:
        return self.root / "reports/predictions"

    @property
    def forecast_ledger(self) -> Path:
        """Every forecast served (append-only; in git, not DVC: see :mod:`stockcast.ledger`)."""
        return self.root / "data/ledger/forecasts.csv"

    @property
    def actuals_ledger(self) -> Path:
        """The realised value of every forecast day, as first recorded (append-only)."""
        return self.root / "data/ledger/actuals.csv"

    def live_plot(self, ticker: str) -> Path:
        """A ticker's served forecasts, bands and realised values (not a DVC output: the
        daily job draws it from the ledger)."""
        return self.root / "reports/live" / f"{ticker}.png"

    @property
    def registry(self) -> Path:
        return self.root / "reports/registry.json"

    @property
    def leaderboard(self) -> Path:
        return self.root / "reports/leaderboard.csv"

    @property
    def train_summary(self) -> Path:
        return self.models / "train.json"

    @property
    def backtest_summary(self) -> Path:
        return self.models / "backtest.json"

    @property
    def backtest_reports(self) -> Path:
        return self.root / "reports/backtest"

    def forecast_plot(self, ticker: str) -> Path:
        """A ticker's chart of its candidates over the test span."""
        return self.plots / f"{ticker}_forecast.png"

    def backtest_plot(self, ticker: str) -> Path:
        """A ticker's walk-forward chart (with backtest folds only)."""
        return self.plots / f"{ticker}_backtest.png"

    def variant_dir(self, ticker: str, variant: str) -> Path:
        return self.models / ticker / variant


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a sibling temporary name, then rename it to ``path``.

    The temporary name keeps the suffix (``model.tmp.keras``, ``x.tmp.npz``): Keras and
    NumPy choose the format from it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)
    return path


def write_json(path: Path, payload: Any) -> Path:
    """``payload`` as indented JSON, written atomically."""
    text = json.dumps(payload, indent=2, default=str)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as Parquet (no index), written atomically."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


@contextmanager
def staged_dir(target: Path, keep_failed: Path | None = None) -> Iterator[Path]:
    """Build a folder aside and swap it in whole when the block succeeds; on failure the
    old folder stays and the half-built one is removed (or, with ``keep_failed``, moved
    there for a person to read). A leftover from a killed run is cleared first."""
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        if keep_failed is None:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            shutil.rmtree(keep_failed, ignore_errors=True)
            staging.rename(keep_failed)
        raise
    if keep_failed is not None:
        shutil.rmtree(keep_failed, ignore_errors=True)
    swap_dir(staging, target)


def swap_dir(new: Path, target: Path) -> None:
    """Replace ``target`` by ``new`` with renames only, keeping ``target`` until the last step."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
