"""The Great Expectations gate on the canonical table, judged per ticker.

Every ticker is checked in one batch: the row checks run once over the whole table (the
offending rows name their ticker and date), the series checks (length, a price that moves)
once over a table with a row per ticker. GX's cost is per expectation and per run, not per
row, so a thousand tickers cost about what one does; tickers that need another suite (absent
columns, a weekly or monthly step) get their own batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast.columns import CANONICAL, PRICES
from stockcast.validation_report import (
    DATA_DOCS,
    MAX_ROWS_SHOWN,
    Failure,
    TickerResult,
    ValidationReport,
    batch_line,
    format_row,
    gate_context,
    plain_english,
    publish,
)

SERIES = ("rows", "price_stdev")  # the per-ticker table's checked columns


def build_suite(
    min_rows: int,
    today: pd.Timestamp,
    max_daily_move: float = 0.25,
    max_gap_days: int = 14,
    absent: frozenset[str] = frozenset(),
    step_days: int = 1,
    level: str = "rows",
) -> Any:
    """The expectations every ticker must meet (critical) or is warned about (warning).

    Args:
        min_rows: fewest rows for window, validation and test spans.
        today: the last date a row may carry (no prices from the future).
        max_daily_move: warn when a price's move from one row to the next exceeds this.
        max_gap_days: warn when two consecutive rows are this many calendar days beyond the
            series' usual step apart (daily: more than 14 days; weekly: 20; monthly: 44).
        absent: columns the ticker's sources lack (a single-price series): the
            expectations on them are left out (see :func:`skipped_expectations`).
        step_days: the series' usual step between rows in calendar days (1 for daily).
        level: ``rows``, the suite on the price rows (:func:`with_checks`), or ``series``,
            the suite on the table with a row per ticker (:func:`series_table`).
    """
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=suite_name(level, absent, step_days))
    price = price_column(absent)
    every = _expectations(min_rows, today, max_daily_move, max_gap_days, step_days, price)
    for expectation in every[level]:
        if not _columns_of(expectation) & absent:
            suite.add_expectation(expectation)
    return suite


def skipped_expectations(absent: frozenset[str]) -> list[str]:
    """The suite's expectations a series without ``absent`` columns is not checked on."""
    today = pd.Timestamp("2000-01-01")
    every = _expectations(1, today, 0.25, 14, 1, price_column(absent))
    return [
        f"{e.expectation_type}({', '.join(_ordered_columns(e))})"
        for e in every["rows"]
        if _columns_of(e) & absent
    ]


def price_column(absent: frozenset[str] = frozenset()) -> str:
    """The price the series-level checks look at: the close, or the series' one price."""
    return next(c for c in ("close", *PRICES) if c not in absent)


def _expectations(
    min_rows: int,
    today: pd.Timestamp,
    max_daily_move: float,
    max_gap_days: int,
    step: int,
    price: str,
) -> dict[str, list[Any]]:
    """The suite, by the table it runs on: ``rows`` (prices) and ``series`` (a row per ticker)."""
    import great_expectations.expectations as gxe

    return {
        "rows": [
            *_schema(gxe),
            *_plausible_values(gxe),
            *_consistent_bars(gxe),
            *_time_order(gxe, today),
            *_worth_a_look(gxe, max_daily_move, max_gap_days + step - 1),
        ],
        "series": _enough_to_learn(gxe, min_rows),
    }


def _ordered_columns(expectation: Any) -> list[str]:
    """The columns an expectation reads, in its own order (column, or column_A, column_B)."""
    kwargs = expectation.configuration.kwargs
    names = [str(kwargs[k]) for k in ("column", "column_A", "column_B") if kwargs.get(k)]
    return names + [str(c) for c in kwargs.get("column_list") or [] if c != "ticker"]


def _columns_of(expectation: Any) -> set[str]:
    return set(_ordered_columns(expectation))


def suite_name(level: str, absent: frozenset[str], step_days: int) -> str:
    """The suite's name as the Data Docs list it: what it checks, at which step, on which
    columns (``stockcast-price-rows-daily``, ``stockcast-per-ticker-weekly-without-volume``)."""
    what = {"rows": "price-rows", "series": "per-ticker"}.get(level, level)
    every = {1: "daily", 7: "weekly"}.get(step_days) or (
        "monthly" if 28 <= step_days <= 31 else f"every-{step_days}-days"
    )
    lacking = f"-without-{'-'.join(sorted(absent))}" if absent else ""
    return f"stockcast-{what}-{every}{lacking}"


def step_days(dates: pd.Series) -> int:
    """A series' usual step between rows in calendar days: 1 for daily (trading days
    included: Monday after Friday is one step), 7 weekly, about 30 monthly."""
    gaps = pd.to_datetime(dates).diff().dt.days.dropna()
    if gaps.empty:
        return 1
    typical = int(gaps.median())
    return 1 if typical <= 3 else typical


def _schema(gxe: Any) -> list[Any]:
    """Schema adherence: the canonical columns are there; prices and dates filled."""
    out = []
    for column in CANONICAL:
        severity = "warning" if column == "volume" else "critical"
        out.append(gxe.ExpectColumnToExist(column=column))
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=column, severity=severity))
    return out


def _plausible_values(gxe: Any) -> list[Any]:
    """Prices finite and strictly positive, volume never negative."""
    infinite = [float("inf"), float("-inf")]
    out = []
    for column in PRICES:
        out.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
        out.append(gxe.ExpectColumnValuesToNotBeInSet(column=column, value_set=infinite))
    return [*out, gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0)]


def _consistent_bars(gxe: Any) -> list[Any]:
    """Internal consistency of a daily bar: the high tops everything, the low is under it."""
    pairs = (
        ("high", "low"),
        ("high", "open"),
        ("high", "close"),
        ("open", "low"),
        ("close", "low"),
    )
    return [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True)
        for a, b in pairs
    ]


def _time_order(gxe: Any, today: pd.Timestamp) -> list[Any]:
    """One row per day, each after the one before, nothing dated after today. The order
    is checked on ``gap_days`` (days since the ticker's row before; none on its first)."""
    return [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToBeBetween(column="gap_days", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="date", max_value=today),
    ]


def _enough_to_learn(gxe: Any, min_rows: int) -> list[Any]:
    """A series that never moves teaches nothing; too few rows cannot fill the spans."""
    return [
        gxe.ExpectColumnValuesToBeBetween(column="price_stdev", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=min_rows),
    ]


def _worth_a_look(gxe: Any, max_daily_move: float, max_gap_days: int) -> list[Any]:
    """Warnings: real markets do jump and close for holidays; a person should look."""
    return [
        gxe.ExpectColumnValuesToBeBetween(
            column="daily_move", max_value=max_daily_move, severity="warning"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="gap_days", max_value=max_gap_days, severity="warning"
        ),
    ]


def with_checks(frame: pd.DataFrame, absent: frozenset[str] = frozenset()) -> pd.DataFrame:
    """The rows plus the derived columns the checks look at, each within its own ticker: the
    move of the close (or of the series' one price) from the row before, and the calendar
    days since the row before (none on a ticker's first row)."""
    out = frame.reset_index(drop=True).copy()
    by = out.groupby("ticker", sort=False)
    price = price_column(absent)
    out["daily_move"] = (out[price] / by[price].shift() - 1).abs().fillna(0.0)
    out["gap_days"] = (out["date"] - by["date"].shift()).dt.days.astype("float64")
    return out


def series_table(rows: pd.DataFrame, absent: frozenset[str] = frozenset()) -> pd.DataFrame:
    """A row per ticker: how many rows it has and how much its price moves."""
    by = rows.groupby("ticker", sort=True)
    return pd.DataFrame(
        {"rows": by.size(), "price_stdev": by[price_column(absent)].std().fillna(0.0)}
    ).reset_index()


def validate_prices(
    frame: pd.DataFrame,
    min_rows: int,
    report_dir: Path,
    today: pd.Timestamp | None = None,
    max_daily_move: float = 0.25,
    max_gap_days: int = 14,
    sources: dict[str, list[str]] | None = None,
    rows_needed: str = "",
    absent: dict[str, list[str]] | None = None,
    progress: Callable[[str], None] | None = None,
    run_name: str | None = None,
) -> ValidationReport:
    """Judge every ticker (:func:`judge_prices`), then publish the verdict
    (:func:`stockcast.validation_report.publish`: ``validation.json`` and HTML Data Docs
    under ``report_dir``). ``progress`` hears where the stage is.

    Args:
        frame: the canonical table.
        min_rows: fewest rows a ticker needs.
        report_dir: where ``validation.json`` and ``data_docs/`` go.
        today: the clock (passed in so tests can fix it); defaults to now.
        max_daily_move: warning threshold on close-to-close moves.
        max_gap_days: warning threshold on calendar gaps between rows.
        sources: per ticker, the files its rows came from (named in the report).
        rows_needed: ``min_rows`` in words: which params add up to it, which to lower.
        absent: per ticker, the columns its sources lack (a single-price series); their
            expectations are skipped and reported as skipped.
        run_name: the run the report and the Data Docs name (default: ``stockcast
            validate`` and the time).

    Returns:
        The report, a result per ticker; ``report.success`` is False when any ticker failed.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    context = gate_context(report_dir / DATA_DOCS)
    checks = Checks(min_rows, today or pd.Timestamp.now().normalize(), max_daily_move, max_gap_days)
    started = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    run = run_name or f"stockcast validate {started}"
    results = judge_prices(frame, context, checks, rows_needed, absent or {}, progress, run)
    for result in results:
        result.sources = list((sources or {}).get(result.ticker, []))
    return publish(context, results, report_dir, run, started)


@dataclass(frozen=True)
class Checks:
    """The suite's thresholds (see :func:`build_suite`)."""

    min_rows: int
    today: pd.Timestamp
    max_daily_move: float = 0.25
    max_gap_days: int = 14


def judge_prices(
    frame: pd.DataFrame,
    context: Any,
    checks: Checks,
    rows_needed: str = "",
    absent: dict[str, list[str]] | None = None,
    progress: Callable[[str], None] | None = None,
    run_name: str | None = None,
) -> list[TickerResult]:
    """Every ticker's verdict, by ticker: the suite run in one batch per kind of series
    (its absent columns and its step) on ``context``'s checkpoints, as the GX run
    ``run_name``."""
    from great_expectations.core.run_identifier import RunIdentifier

    batch = {
        level: context.data_sources.add_pandas(f"prices_{level}")
        .add_dataframe_asset(level)
        .add_batch_definition_whole_dataframe("whole")
        for level in ("rows", "series")
    }
    kinds: dict[tuple[frozenset[str], int], list[str]] = {}  # a batch per absent columns, step
    for ticker, dates in frame.groupby("ticker", sort=True)["date"]:
        lacks = frozenset((absent or {}).get(str(ticker), []))
        kinds.setdefault((lacks, step_days(dates)), []).append(str(ticker))
    results: dict[str, TickerResult] = {}
    total = frame["ticker"].nunique()
    for (lacks, step), tickers in kinds.items():
        rows = with_checks(frame[frame["ticker"].isin(tickers)], lacks)
        judged = {t: TickerResult(t, 0, True, 0) for t in tickers}
        counts = rows["ticker"].value_counts()  # each ticker's rows
        tables = {"rows": rows, "series": series_table(rows, lacks)}
        for level, table in tables.items():
            c = checks
            suite = context.suites.add(
                build_suite(
                    c.min_rows, c.today, c.max_daily_move, c.max_gap_days, lacks, step, level
                )
            )
            name = f"{level}-{'_'.join(sorted(lacks))}-{step}"
            outcome = _checkpoint(context, batch[level], suite, name, level).run(
                batch_parameters={"dataframe": table}, run_id=RunIdentifier(run_name=run_name)
            )
            _judge(judged, table, counts, outcome, rows_needed)
        skipped = skipped_expectations(lacks)
        for ticker, result in judged.items():
            result.rows = int(counts[ticker])
            result.success = not result.failures
            result.skipped, result.absent = list(skipped), sorted(lacks)
        results.update(judged)
        if progress:
            progress(batch_line(judged, len(results), total))
    return [results[t] for t in sorted(results)]


def _checkpoint(context: Any, batch: Any, suite: Any, name: str, level: str) -> Any:
    """One batch's checkpoint; complete results, each offending row named by its ticker
    (and date)."""
    import great_expectations as gx

    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"prices-{name}", data=batch, suite=suite)
    )
    index = ["ticker", "date"] if level == "rows" else ["ticker"]
    return context.checkpoints.add(
        gx.Checkpoint(
            name=f"gate-{name}",
            validation_definitions=[definition],
            actions=[],  # Data Docs are built once, after every batch
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index},
        )
    )


def _judge(
    judged: dict[str, TickerResult],
    table: pd.DataFrame,
    counts: pd.Series,
    outcome: Any,
    rows_needed: str = "",
) -> None:
    """Give each ticker its share of one batch's results: the expectations it was checked on
    and, for each that its rows fail, a failure (critical) or a warning."""
    (validation,) = outcome.run_results.values()
    for result in validation.results:
        severity = _severity(result)
        config = result.expectation_config
        check = [config.type, _column_of(config.kwargs) or "", severity]
        failed = {} if result.success else _failures_by_ticker(result, table, counts, rows_needed)
        for ticker, judgement in judged.items():
            judgement.evaluated += 1
            passed = ticker not in failed
            judgement.checks.append([*check, "passed" if passed else "failed"])
            if passed:
                continue
            if severity == "critical":
                judgement.failures.append(failed[ticker])
            else:
                judgement.warnings.append(failed[ticker])


def _severity(result: Any) -> str:
    severity = getattr(result.expectation_config, "severity", "critical")
    return str(getattr(severity, "value", severity))


def _column_of(kwargs: dict[str, Any]) -> str | None:
    """The column an expectation checks, as the report names it (``high vs low`` for a
    pair, the key's columns but the ticker for a compound one)."""
    column = kwargs.get("column") or (
        f"{kwargs['column_A']} vs {kwargs['column_B']}" if "column_A" in kwargs else None
    )
    if column is None and kwargs.get("column_list"):
        column = ", ".join(c for c in kwargs["column_list"] if c != "ticker")
    return column


def _failures_by_ticker(
    result: Any, table: pd.DataFrame, counts: pd.Series, rows_needed: str = ""
) -> dict[str, Failure]:
    """One failed expectation of a batch as a failure per ticker whose rows fail it. A
    failure no row carries (a missing column) is every ticker's."""
    config = result.expectation_config
    kwargs = config.kwargs
    column = _column_of(kwargs)
    res = result.result or {}
    expected = {
        k: v
        for k, v in kwargs.items()
        if k not in {"column", "column_A", "column_B", "column_list", "batch_id"} and v is not None
    }
    plain = plain_english(config.type, column, kwargs)
    found = res.get("unexpected_index_list")
    if not found:
        detail = f"observed {res.get('observed_value')!r}, expected {expected}"
        return {
            str(t): Failure(config.type, column, detail, [], plain)
            for t in table["ticker"].unique()
        }
    rows: dict[str, list[dict[str, Any]]] = {}
    for entry in found:
        rows.setdefault(str(entry["ticker"]), []).append(entry)
    out = {}
    for ticker, entries in rows.items():
        if column in SERIES:
            value = float(entries[0][column])
            detail = (
                f"{value:g} rows; {rows_needed}"
                if column == "rows" and rows_needed
                else f"observed {value:g}, expected {expected}"
            )
            out[ticker] = Failure(config.type, column, detail, [], plain)
            continue
        failing = f"{len(entries)} of {int(counts.get(ticker, 0))} rows fail"
        if "column_A" in kwargs:
            detail = f"{failing} (expected {kwargs['column_A']} >= {kwargs['column_B']})"
        elif kwargs.get("column_list"):
            detail = f"{failing} (expected one row per {' and '.join(kwargs['column_list'])})"
        else:
            detail = f"{failing} {expected}" if expected else failing
        shown = [format_row(e) for e in entries[:MAX_ROWS_SHOWN]]
        out[ticker] = Failure(config.type, column, detail, shown, plain)
    return out
