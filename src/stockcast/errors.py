"""Exception types that say which file, which column, which rows and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class _Fields:
    """An exception whose fields are a dataclass's: it pickles by its fields (a process
    pool, Dask and Prefect's results send exceptions so), not by ``args``, which hold the
    message a dataclass's ``__init__`` cannot take back."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]


class StockcastError(Exception):
    """Base class: every error the pipeline raises on purpose is one of these."""


class ConfigError(StockcastError):
    """``params.yaml`` holds a missing, unknown or out-of-range value."""


@dataclass
class DataError(_Fields, StockcastError):
    """A data file cannot be read or holds values the pipeline cannot use.

    Attributes:
        file: the offending file (or URL).
        problem: what is wrong, in one sentence.
        column: the column concerned, when there is one.
        rows: up to five example rows, already formatted for humans.
        expected: what a good file has instead.
    """

    file: Path | str
    problem: str
    column: str | None = None
    rows: Sequence[str] = field(default_factory=list)
    expected: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{self.file}: {self.problem}"]
        if self.column is not None:
            lines.append(f"  column: {self.column}")
        if self.rows:
            lines.append("  rows:")
            lines.extend(f"    {row}" for row in self.rows[:5])
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        return "\n".join(lines)


@dataclass
class SeriesError(_Fields, StockcastError):
    """One ticker's series cannot be used as configured (too few rows, constant, no name).

    Attributes:
        ticker: the ticker (or the raw name that could not become one).
        problem: what is wrong, in one sentence.
        column: the column concerned, when there is one.
        expected: what would work instead.
    """

    ticker: str
    problem: str
    column: str | None = None
    expected: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"ticker {self.ticker}: {self.problem}"]
        if self.column is not None:
            lines.append(f"  column: {self.column}")
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        return "\n".join(lines)


class ValidationFailed(StockcastError):
    """The Great Expectations gate failed; ``report`` is the readable summary."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


class FetchFailed(DataError):
    """A source URL did not answer, or answered with a server-side (5xx/429) error, after the
    client's own retries: worth trying again later (the retrain flow does, with back-off)."""


class RunLocked(StockcastError):
    """Another stockcast run holds the project: this one did nothing."""


class TrainingDiverged(StockcastError):
    """The loss became NaN or infinite: not transient, never retried."""


class FitTimedOut(StockcastError):
    """A fit ran past ``execution.timeout_seconds``; its partial model is not kept."""


class DvcFailed(StockcastError):
    """A DVC command failed (its own output says why)."""


class TransientIOError(OSError):
    """A store or remote did not answer: worth trying again (the retrain flow does)."""


class StoreUnavailable(StockcastError):
    """The MLflow tracking store did not answer, after the retries: which store, what was
    being done, what was (not) changed and how to rerun."""
