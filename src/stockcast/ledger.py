"""The forecast ledger: every forecast served, kept as made, scored when the truth arrives.

Two append-only CSV files under ``data/ledger/`` (kept in git, not DVC: a ``dvc checkout``
of an old version must not rewind the record of what was served, and a fresh MLflow store
must not lose it):

- ``forecasts.csv``: one row per (ticker, target_date, model_version). A second forecast for
  the same target by the same version is not a new row, and a row is never edited: new
  rows are appended after the file's bytes, which stay as they were.
- ``actuals.csv``: per forecast day (ticker, made_on), the first trading day after it
  (``actual_date``) and its realised value, recorded by the first ingest that brings it.
  A provider's later revision of that value is reported, never applied.

The ``last_close`` rule's forecast for the same day (the day's close, known when the
forecast is made) is recorded beside every forecast, so the live score of a champion always
stands beside the strongest simple rule on the same days.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stockcast.paths import atomic_write

KEY = ("ticker", "target_date", "model_version")
FORECAST_BASE = ("ticker", "made_on", "target_date", "model_version", "variant", "forecast")
ACTUAL_COLUMNS = ("ticker", "made_on", "actual_date", "actual", "recorded_at")
WINDOWS = (20, 60)  # rolling RMSE spans, in scored days
REVISION_TOLERANCE = 1e-9  # relative: a realised value that moved more than this is a revision


def forecast_columns(levels: Iterable[str]) -> list[str]:
    """The ledger's columns: the base, a band per interval level, the rule beside it."""
    bands = [f"{side}_{level}" for level in levels for side in ("lower", "upper")]
    return [*FORECAST_BASE, *bands, "baseline_forecast", "recorded_at"]


def levels_of(columns: Iterable[str]) -> list[str]:
    """The interval levels a ledger carries (``lower_80`` -> ``"80"``), in its order."""
    return [c.removeprefix("lower_") for c in columns if c.startswith("lower_")]


@dataclass(frozen=True)
class Appended:
    """What an append did: rows written, and rows already in the ledger (kept as they were)."""

    added: int
    kept: int


@dataclass(frozen=True)
class Recorded:
    """What recording realised values did: rows added, and revisions seen (not applied)."""

    added: int
    revisions: list[str] = field(default_factory=list)


def read(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A ledger file as strings (as written); an empty frame when it does not exist yet."""
    if not path.exists():
        return pd.DataFrame(columns=list(columns if columns is not None else []), dtype="object")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _keys(frame: pd.DataFrame, key: Sequence[str]) -> set[tuple[str, ...]]:
    if frame.empty:
        return set()
    return set(frame[list(key)].astype(str).itertuples(index=False, name=None))


def _append(path: Path, rows: pd.DataFrame, key: Sequence[str]) -> Appended:
    """Append the rows whose key is new, after the file's bytes; the others are kept."""
    old = read(path, rows.columns)
    if not old.empty and list(old.columns) != list(rows.columns):
        missing = sorted(set(old.columns) - set(rows.columns))
        extra = sorted(set(rows.columns) - set(old.columns))
        raise ValueError(
            f"{path} has columns {list(old.columns)}; these rows have {list(rows.columns)}"
            f" (missing {missing}, extra {extra}): move the old ledger aside to change them"
        )
    rows = rows.astype(str)
    seen = _keys(old, key)
    fresh = rows[[tuple(r) not in seen for r in rows[list(key)].itertuples(index=False)]]
    fresh = fresh.drop_duplicates(subset=list(key), keep="first")
    if fresh.empty:
        return Appended(0, len(rows))
    before = path.read_bytes() if path.exists() else b""
    text = io.StringIO()
    fresh.to_csv(text, index=False, header=not before, lineterminator="\n")
    added = text.getvalue().encode("utf-8")
    atomic_write(path, lambda tmp: tmp.write_bytes(before + added))
    return Appended(len(fresh), len(rows) - len(fresh))


def _number(value: float) -> str:
    return repr(float(value))


def forecast_row(
    ticker: str,
    made_on: pd.Timestamp,
    target_date: pd.Timestamp,
    model_version: str,
    variant: str,
    values: dict[str, float],
    baseline_forecast: float,
    recorded_at: pd.Timestamp,
) -> dict[str, str]:
    """One ledger row from a model's forecast ``values`` (``forecast``, ``lower_<l>``...)."""
    return {
        "ticker": ticker,
        "made_on": f"{made_on:%Y-%m-%d}",
        "target_date": f"{target_date:%Y-%m-%d}",
        "model_version": str(model_version),
        "variant": variant,
        **{k: _number(v) for k, v in values.items()},
        "baseline_forecast": _number(baseline_forecast),
        "recorded_at": f"{recorded_at:%Y-%m-%dT%H:%M:%SZ}",
    }


def append_forecasts(path: Path, rows: list[dict[str, str]], levels: Iterable[str]) -> Appended:
    """Append forecasts; one already made for the same target by the same version is kept."""
    columns = forecast_columns(levels)
    frame = pd.DataFrame(rows, columns=columns)
    if frame[columns].isna().any().any():
        missing = [c for c in columns if frame[c].isna().any()]
        raise ValueError(f"forecast rows without {missing}: every column is needed")
    return _append(path, frame, KEY)


def record_actuals(
    actuals_path: Path,
    forecasts: pd.DataFrame,
    prices: pd.DataFrame,
    target: str,
    now: pd.Timestamp,
) -> Recorded:
    """Record, for every forecast day with no realised value yet, the first trading day after
    it in ``prices`` (the validated table: ticker, date, the target column) and its value.

    A day already recorded is not rewritten; if ``prices`` now holds another value for it,
    the difference is reported in :attr:`Recorded.revisions`.
    """
    old = read(actuals_path, ACTUAL_COLUMNS)
    done = {(r.ticker, r.made_on): r for r in old.itertuples(index=False)}
    rows, revisions = [], []
    by_ticker = {str(t): g.sort_values("date") for t, g in prices.groupby("ticker", sort=False)}
    days = forecasts[["ticker", "made_on"]].drop_duplicates()
    for ticker, made_on in days.itertuples(index=False, name=None):
        group = by_ticker.get(ticker)
        if group is None:
            continue
        later = group[group["date"] > pd.Timestamp(made_on)]
        if later.empty:
            continue  # still open: the truth has not arrived
        first = later.iloc[0]
        value, day = float(first[target]), f"{pd.Timestamp(first['date']):%Y-%m-%d}"
        if (ticker, made_on) in done:
            kept = done[(ticker, made_on)]
            revision = _revision(ticker, kept, day, value, group, target)
            if revision:
                revisions.append(revision)
            continue
        rows.append(
            {
                "ticker": ticker,
                "made_on": made_on,
                "actual_date": day,
                "actual": _number(value),
                "recorded_at": f"{now:%Y-%m-%dT%H:%M:%SZ}",
            }
        )
    if not rows:
        return Recorded(0, revisions)
    appended = _append(
        actuals_path, pd.DataFrame(rows, columns=ACTUAL_COLUMNS), ("ticker", "made_on")
    )
    return Recorded(appended.added, revisions)


def _revision(
    ticker: str, kept: object, day: str, value: float, group: pd.DataFrame, target: str
) -> str | None:
    """A message when the recorded realised value is no longer what the data says."""
    recorded = float(kept.actual)  # type: ignore[attr-defined]
    kept_day = kept.actual_date  # type: ignore[attr-defined]
    if kept_day != day:
        now_there = group[group["date"] == pd.Timestamp(kept_day)]
        if now_there.empty:
            return (
                f"{ticker} {kept_day}: recorded {target} {recorded!r} is no longer in the data"
                f" (the next day after {kept.made_on} is now {day}); the recorded value is kept"  # type: ignore[attr-defined]
            )
        value = float(now_there.iloc[0][target])
    if abs(value - recorded) > REVISION_TOLERANCE * max(abs(recorded), 1.0):
        return (
            f"{ticker} {kept_day}: {target} revised from {recorded!r} to {value!r} by the"
            " provider; the ledger keeps the value first recorded"
        )
    return None


def table(forecasts: pd.DataFrame, actuals: pd.DataFrame) -> pd.DataFrame:
    """Every forecast with its realised value: ``actual``, ``error`` (actual - forecast),
    ``baseline_forecast``, ``hit_<level>`` (inside the band), blank while still open."""
    if forecasts.empty:
        return pd.DataFrame()
    levels = levels_of(forecasts.columns)
    merged = forecasts.merge(
        actuals[["ticker", "made_on", "actual_date", "actual"]]
        if len(actuals)
        else pd.DataFrame(columns=["ticker", "made_on", "actual_date", "actual"], dtype=str),
        on=["ticker", "made_on"],
        how="left",
    )
    numeric = ["forecast", "baseline_forecast", "actual"]
    numeric += [f"{s}_{lv}" for lv in levels for s in ("lower", "upper")]
    for column in numeric:
        merged[column] = pd.to_numeric(merged[column].replace("", np.nan), errors="coerce")
    merged["error"] = merged["actual"] - merged["forecast"]
    scored = merged["actual"].notna()
    for level in levels:
        inside = (merged["actual"] >= merged[f"lower_{level}"]) & (
            merged["actual"] <= merged[f"upper_{level}"]
        )
        merged[f"hit_{level}"] = inside.where(scored).astype("boolean")
    return merged


def served(scored_table: pd.DataFrame) -> pd.DataFrame:
    """One forecast per (ticker, target): the last recorded (the champion of the day)."""
    order = scored_table.sort_values(["ticker", "made_on", "recorded_at"])
    return order.drop_duplicates(["ticker", "made_on"], keep="last")


def rmse(errors: np.ndarray) -> float:
    return float(math.sqrt(np.mean(np.square(errors)))) if len(errors) else float("nan")


def live_metrics(rows: pd.DataFrame, min_dm_days: int = 20) -> dict[str, float]:
    """Live skill over scored ``rows`` (oldest first): RMSE over the last 20 and 60 scored
    days beside the ``last_close`` rule's on the same days, their ratio, coverage per level
    and, with at least ``min_dm_days`` rows, the Diebold-Mariano p-value against the rule."""
    from stockcast.evaluate import diebold_mariano, ratio

    done = rows[rows["actual"].notna()]
    errors = (done["actual"] - done["forecast"]).to_numpy(dtype="float64")
    rule = (done["actual"] - done["baseline_forecast"]).to_numpy(dtype="float64")
    out: dict[str, float] = {"scored_days": float(len(done))}
    for span in WINDOWS:
        mine, theirs = rmse(errors[-span:]), rmse(rule[-span:])
        out[f"live_rmse_{span}"] = mine
        out[f"live_last_close_rmse_{span}"] = theirs
        out[f"live_rmse_{span}_vs_last_close"] = ratio(mine, theirs) if len(errors) else math.nan
    for level in levels_of(rows.columns):
        hits = done[f"hit_{level}"].astype("float64").to_numpy()
        out[f"live_coverage_{level}"] = float(hits.mean()) if len(hits) else float("nan")
    if len(done) >= min_dm_days:
        _, out["live_dm_p_value"] = diebold_mariano(errors, rule)
    return out


def summary(scored_table: pd.DataFrame, min_dm_days: int = 20) -> pd.DataFrame:
    """Live metrics per ticker and model version, plus per ticker over what was served."""
    out = []
    for (ticker, version), rows in scored_table.groupby(["ticker", "model_version"], sort=True):
        rows = rows.sort_values("made_on")
        variant = rows["variant"].iloc[-1]
        out.append(
            {
                "ticker": ticker,
                "model_version": version,
                "variant": variant,
                "forecasts": len(rows),
                **live_metrics(rows, min_dm_days),
            }
        )
    for ticker, rows in served(scored_table).groupby("ticker", sort=True):
        out.append(
            {
                "ticker": ticker,
                "model_version": "served",
                "variant": "",
                "forecasts": len(rows),
                **live_metrics(rows, min_dm_days),
            }
        )
    return pd.DataFrame(out)


def history(
    rows: pd.DataFrame, min_dm_days: int = 20, since: pd.Timestamp | None = None
) -> list[tuple[pd.Timestamp, dict[str, float]]]:
    """The live metrics as they stood on each scored day after ``since`` (for MLflow metric
    history: one point per trading day, that day as its timestamp), oldest first."""
    done = rows[rows["actual"].notna()].sort_values("made_on")
    days = pd.to_datetime(done["actual_date"])
    points = []
    for k in range(1, len(done) + 1):
        day = pd.Timestamp(days.iloc[k - 1])
        if since is None or day > since:
            points.append((day, live_metrics(done.iloc[:k], min_dm_days)))
    return points
