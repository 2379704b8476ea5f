"""The Great Expectations gate on the canonical table: one suite, run per ticker."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast.ingest import CANONICAL, NUMERIC, PRICES
from stockcast.ops import progress_points
from stockcast.paths import atomic_write

logger = logging.getLogger(__name__)
MAX_ROWS_SHOWN = 5


# Each expectation of the suite in one line of plain English, printed beside its GX name.
PLAIN = {
    "expect_column_to_exist": "the column must be there",
    "expect_column_values_to_not_be_null": "every row needs a value",
    "expect_column_values_to_be_between": "values must lie in the allowed range",
    "expect_column_values_to_not_be_in_set": "prices must be finite numbers",
    "expect_column_pair_values_a_to_be_greater_than_b": "a daily bar must be consistent "
    "(the high above the open, close and low; the low below them)",
    "expect_column_values_to_be_unique": "one row per trading day",
    "expect_column_values_to_be_increasing": "dates must go forward",
    "expect_column_stdev_to_be_between": "the price must move (a constant series teaches nothing)",
    "expect_table_row_count_to_be_between": "the series is too short for the configured spans",
}
# Range checks say more when the column is known.
PLAIN_RANGE = {
    "date": "no row may be dated after today",
    "volume": "volume cannot be negative",
    "daily_move": "an unusually large move from one row to the next (a split or a bad tick?)",
    "gap_days": "an unusually long gap between rows for the series' frequency (missing data?)",
}


@dataclass
class Failure:
    """One failed expectation: what was expected, where, and a few offending rows."""

    expectation: str
    column: str | None
    detail: str
    rows: list[str] = field(default_factory=list)
    plain: str = ""  # the expectation in plain English


@dataclass
class TickerResult:
    """One ticker's verdict: critical failures stop it, warnings are only reported."""

    ticker: str
    rows: int
    success: bool
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the files the ticker's rows came from
    absent: list[str] = field(default_factory=list)  # columns its sources lack
    skipped: list[str] = field(default_factory=list)  # the expectations those would need


@dataclass
class ValidationReport:
    """The gate's verdict for every ticker, plus where the Data Docs were written."""

    results: list[TickerResult]
    data_docs: str | None = None

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed_tickers(self) -> list[str]:
        return [r.ticker for r in self.results if not r.success]

    def summary(self) -> str:
        lines = []
        for r in self.results:
            verdict = "passed" if r.success else "FAILED"
            origin = f" (from {', '.join(r.sources)})" if r.sources else ""
            lines.append(
                f"{r.ticker}{origin}: {verdict} ({r.evaluated} expectations, {r.rows} rows)"
            )
            for label, items in (("", r.failures), ("warning: ", r.warnings)):
                for f in items:
                    where = f" column {f.column}:" if f.column else ""
                    plain = f"{f.plain} " if f.plain else ""
                    lines.append(f"  - {label}{plain}[{f.expectation}]:{where} {f.detail}")
                    lines.extend(f"      {row}" for row in f.rows[:MAX_ROWS_SHOWN])
            if r.skipped:
                lines.append(
                    f"  - skipped {len(r.skipped)} expectations on {', '.join(r.absent)}: "
                    "not in the source (the list is in validation.json)"
                )
        if self.data_docs:
            lines.append(f"Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {
                "success": self.success,
                "data_docs": self.data_docs,
                "results": [asdict(r) for r in self.results],
            },
            indent=2,
        )


def build_suite(
    min_rows: int,
    today: pd.Timestamp,
    max_daily_move: float = 0.25,
    max_gap_days: int = 14,
    absent: frozenset[str] = frozenset(),
    step_days: int = 1,
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
    """
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"stockcast_prices_{'_'.join(sorted(absent))}_{step_days}")
    price = price_column(absent)
    for expectation in _expectations(
        min_rows, today, max_daily_move, max_gap_days, step_days, price
    ):
        if not _columns_of(expectation) & absent:
            suite.add_expectation(expectation)
    return suite


def skipped_expectations(absent: frozenset[str]) -> list[str]:
    """The suite's expectations a series without ``absent`` columns is not checked on."""
    today = pd.Timestamp("2000-01-01")
    return [
        f"{e.expectation_type}({', '.join(_ordered_columns(e))})"
        for e in _expectations(1, today, 0.25, 14, 1, price_column(absent))
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
) -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        *_schema(gxe),
        *_plausible_values(gxe),
        *_consistent_bars(gxe),
        *_time_order(gxe, today),
        *_enough_to_learn(gxe, min_rows, price),
        *_worth_a_look(gxe, max_daily_move, max_gap_days + step - 1),
    ]


def _ordered_columns(expectation: Any) -> list[str]:
    """The columns an expectation reads, in its own order (column, or column_A, column_B)."""
    kwargs = expectation.configuration.kwargs
    return [str(kwargs[k]) for k in ("column", "column_A", "column_B") if kwargs.get(k)]


def _columns_of(expectation: Any) -> set[str]:
    return set(_ordered_columns(expectation))


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
    """One row per day, ascending, nothing dated after today."""
    return [
        gxe.ExpectColumnValuesToBeUnique(column="date"),
        gxe.ExpectColumnValuesToBeIncreasing(column="date", strictly=True),
        gxe.ExpectColumnValuesToBeBetween(column="date", max_value=today),
    ]


def _enough_to_learn(gxe: Any, min_rows: int, price: str) -> list[Any]:
    """A series that never moves teaches nothing; too few rows cannot fill the spans."""
    return [
        gxe.ExpectColumnStdevToBeBetween(column=price, min_value=0, strict_min=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows),
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


def with_checks(group: pd.DataFrame, absent: frozenset[str] = frozenset()) -> pd.DataFrame:
    """One ticker's rows plus the derived columns the warnings look at: the move of the
    close (or of the series' one price) from the row before, and the calendar days since
    the row before."""
    out = group.reset_index(drop=True).copy()
    out["daily_move"] = out[price_column(absent)].pct_change().abs().fillna(0.0)
    out["gap_days"] = out["date"].diff().dt.days.fillna(0).astype("int64")
    return out


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
) -> ValidationReport:
    """Run the suite on each ticker; write JSON results and HTML Data Docs under ``report_dir``.
    ``progress`` hears how many tickers are done, now and then.

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

    Returns:
        The report; ``report.success`` is False when any ticker failed.
    """
    today = today or pd.Timestamp.now().normalize()
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / "data_docs"
    context = _context(docs_dir)
    suites: dict[tuple[frozenset[str], int], Any] = {}  # one per absent columns and step
    skipped: dict[frozenset[str], list[str]] = {}
    batch = (
        context.data_sources.add_pandas("prices")
        .add_dataframe_asset("canonical")
        .add_batch_definition_whole_dataframe("whole")
    )
    results = []
    groups = frame.groupby("ticker", sort=True)
    report_at = progress_points(groups.ngroups)
    for done, (ticker, group) in enumerate(groups, start=1):
        lacks = frozenset((absent or {}).get(str(ticker), []))
        group = with_checks(group, lacks)
        key = (lacks, step_days(group["date"]))
        if key not in suites:
            suites[key] = context.suites.add(
                build_suite(min_rows, today, max_daily_move, max_gap_days, *key)
            )
        outcome = _checkpoint(context, batch, suites[key], str(ticker)).run(
            batch_parameters={"dataframe": group}
        )
        result = _ticker_result(str(ticker), group, outcome, rows_needed)
        result.sources = list((sources or {}).get(str(ticker), []))
        if lacks not in skipped:
            skipped[lacks] = skipped_expectations(lacks)
        result.skipped = list(skipped[lacks])
        result.absent = sorted(lacks)
        results.append(result)
        if progress and done in report_at:
            progress(f"validated {done} of {groups.ngroups} tickers ({ticker}: "
                     f"{'passed' if result.success else 'FAILED'})")  # fmt: skip
    context.build_data_docs(site_names=["stockcast_site"])
    index = docs_dir / "index.html"
    report = ValidationReport(results, data_docs=str(index) if index.exists() else None)
    atomic_write(
        report_dir / "validation.json",
        lambda tmp: tmp.write_text(report.to_json(), encoding="utf-8"),
    )
    return report


def _context(docs_dir: Path) -> Any:
    """An ephemeral GX context whose Data Docs site writes to ``docs_dir``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # its "Created temporary directory ... for ephemeral docs site" on every run is noise: the
    # site the person opens is ours, named in the report
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    backend = {
        "class_name": "TupleFilesystemStoreBackend",
        "base_directory": str(docs_dir.resolve()),
    }
    context.add_data_docs_site(
        "stockcast_site",
        {
            "class_name": "SiteBuilder",
            "store_backend": backend,
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _checkpoint(context: Any, batch: Any, suite: Any, ticker: str) -> Any:
    """One ticker's checkpoint; complete results, offending rows named by date."""
    import great_expectations as gx

    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"prices-{ticker}", data=batch, suite=suite)
    )
    return context.checkpoints.add(
        gx.Checkpoint(
            name=f"gate-{ticker}",
            validation_definitions=[definition],
            actions=[],  # Data Docs are built once, after every ticker
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["date"]},
        )
    )


def _ticker_result(
    ticker: str, group: pd.DataFrame, outcome: Any, rows_needed: str = ""
) -> TickerResult:
    (validation,) = outcome.run_results.values()
    failed = [r for r in validation.results if not r.success]
    critical = [_failure(r, group, rows_needed) for r in failed if _severity(r) == "critical"]
    warnings = [_failure(r, group, rows_needed) for r in failed if _severity(r) != "critical"]
    return TickerResult(
        ticker, len(group), not critical, len(validation.results), critical, warnings
    )


def _severity(result: Any) -> str:
    severity = getattr(result.expectation_config, "severity", "critical")
    return str(getattr(severity, "value", severity))


def plain_english(expectation: str, column: str | None) -> str:
    """One line saying what ``expectation`` on ``column`` asks, for a person."""
    if expectation == "expect_column_values_to_be_between" and column in PLAIN_RANGE:
        return PLAIN_RANGE[column]
    if expectation == "expect_column_values_to_be_between" and column in PRICES:
        return "prices must be above zero"
    return PLAIN.get(expectation, "")


def _failure(result: Any, group: pd.DataFrame, rows_needed: str = "") -> Failure:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or (
        f"{kwargs['column_A']} vs {kwargs['column_B']}" if "column_A" in kwargs else None
    )
    res = result.result or {}
    expected = {
        k: v
        for k, v in kwargs.items()
        if k not in {"column", "column_A", "column_B", "batch_id"} and v is not None
    }
    if "column_A" in kwargs:
        detail = (
            f"{res.get('unexpected_count')} of {res.get('element_count')} rows fail "
            f"(expected {kwargs['column_A']} >= {kwargs['column_B']})"
        )
    elif "unexpected_count" in res:
        detail = f"{res['unexpected_count']} of {res.get('element_count')} rows fail {expected}"
    elif config.type == "expect_table_row_count_to_be_between" and rows_needed:
        detail = f"{res.get('observed_value')} rows; {rows_needed}"
    else:
        detail = f"observed {res.get('observed_value')!r}, expected {expected}"
    rows = []
    for index in (res.get("unexpected_index_list") or [])[:MAX_ROWS_SHOWN]:
        rows.append(_format_row(group, index))
    return Failure(config.type, column, detail, rows, plain_english(config.type, column))


def _format_row(group: pd.DataFrame, index: Any) -> str:
    """One offending row as ``YYYY-MM-DD: open=…, high=…`` (GX gives the date and the columns)."""
    if isinstance(index, dict) and "date" in index:
        values = ", ".join(
            f"{k}={float(v):g}" if isinstance(v, int | float) else f"{k}={v}"
            for k, v in index.items()
            if k != "date"
        )
        return f"{pd.Timestamp(index['date']):%Y-%m-%d}: {values}"
    try:
        row = group.loc[index]
    except (KeyError, TypeError):
        return str(index)
    values = ", ".join(f"{c}={row[c]:g}" for c in NUMERIC)
    return f"{pd.Timestamp(row['date']):%Y-%m-%d}: {values}"
