"""The validation gate's verdict as a person reads it: per ticker, each failed expectation in
plain English with a few offending rows, the JSON record (``validation.json``) and the GX Data
Docs site it is published to."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast.columns import PRICES
from stockcast.paths import atomic_write

MAX_ROWS_SHOWN = 5
DATA_DOCS = "data_docs"  # the Data Docs site's folder, in the report folder
SITE = "stockcast_site"
REPORT_PAGE = "index.html"  # the offline page of the verdict, in the report folder


# Each expectation of the suite in one line of plain English, printed beside its GX name.
PLAIN = {
    "expect_column_to_exist": "the column must be there",
    "expect_column_values_to_not_be_null": "every row needs a value",
    "expect_column_values_to_be_between": "values must lie in the allowed range",
    "expect_column_values_to_not_be_in_set": "prices must be finite numbers",
    "expect_column_pair_values_a_to_be_greater_than_b": "a daily bar must be consistent "
    "(the high above the open, close and low; the low below them)",
    "expect_compound_columns_to_be_unique": "one row per trading day",
}
# Range checks say more when the column is known.
PLAIN_RANGE = {
    "date": "no row may be dated after today",
    "volume": "volume cannot be negative",
    "daily_move": "an unusually large move from one row to the next (a split or a bad tick?)",
    "gap_days": "an unusually long gap between rows for the series' frequency (missing data?)",
    "rows": "the series is too short for the configured spans",
    "price_stdev": "the price must move (a constant series teaches nothing)",
}
# The lower bound on gap_days is the order check, its upper bound the warning above.
DATES_FORWARD = "dates must go forward (each row after the one before)"


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
    # every check it was judged on: [expectation, column, severity, "passed" | "failed"]
    checks: list[list[str]] = field(default_factory=list)


@dataclass
class ValidationReport:
    """The gate's verdict for every ticker, plus where the Data Docs were written."""

    results: list[TickerResult]
    data_docs: str | None = None
    run_name: str = ""  # the run the Data Docs file the results under
    validated_at: str = ""  # when, in UTC

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
            page = Path(self.data_docs).parent.parent / REPORT_PAGE
            lines.append(f"Report: {page} (offline); GX Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def html(self, title: str = "stockcast data validation") -> str:
        """The verdict as one self-contained page (inline style, no script, no network):
        per ticker its sources, the critical failures that stop it, the warnings apart."""
        from html import escape

        def shown_rows(f: Failure) -> str:
            items = "".join(f"<li><code>{escape(r)}</code></li>" for r in f.rows[:MAX_ROWS_SHOWN])
            return f"<ul>{items}</ul>" if items else ""

        def every_check(r: TickerResult) -> str:
            """Each check the ticker was judged on, with its result (a failed warning apart
            from a failed critical check)."""
            label = {"passed": "passed", "critical": "FAILED", "warning": "warning"}
            rows = "".join(
                f"<tr class={'ok' if result == 'passed' else severity}><td>"
                f"{escape(plain_english(kind, column or None) or kind)}<br><code>{escape(kind)}"
                f"</code></td><td>{escape(column)}</td><td>{escape(severity)}</td><td>"
                f"{label['passed' if result == 'passed' else severity]}</td></tr>"
                for kind, column, severity, result in r.checks
            )
            return (
                f"<details><summary>every check ({len(r.checks)})</summary><table class=checks>"
                "<tr><th>check</th><th>column</th><th>severity</th><th>result</th></tr>"
                f"{rows}</table></details>"
                if rows
                else ""
            )

        def table(items: list[Failure]) -> str:
            rows = "".join(
                f"<tr><td>{escape(f.plain or f.expectation)}<br><code>{escape(f.expectation)}"
                f"</code></td><td>{escape(f.column or '')}</td><td>{escape(f.detail)}"
                f"{shown_rows(f)}</td></tr>"
                for f in items
            )
            return (
                "<table><tr><th>check</th><th>column</th><th>what was found</th></tr>"
                f"{rows}</table>"
            )

        parts = []
        for r in self.results:
            verdict = "passed" if r.success else "FAILED"
            parts.append(
                f"<section class={'ok' if r.success else 'bad'}><h2>{escape(r.ticker)}: "
                f"{verdict}</h2><p>{r.rows} rows from {escape(', '.join(r.sources) or '?')}; "
                f"{r.evaluated} checks, {len(r.failures)} failed, {len(r.warnings)} warning(s)."
                "</p>"
            )
            if r.failures:
                parts.append("<h3>Critical: these stop the run</h3>" + table(r.failures))
            if r.warnings:
                parts.append("<h3>Warnings: reported, never stop a run</h3>" + table(r.warnings))
            if r.skipped:
                parts.append(
                    f"<p>Skipped {len(r.skipped)} checks on {escape(', '.join(r.absent))}: "
                    "not in the source.</p>"
                )
            parts.append(every_check(r) + "</section>")
        overall = "every ticker passed" if self.success else (
            f"failed: {', '.join(self.failed_tickers)}"
        )  # fmt: skip
        style = (
            "body{font-family:sans-serif;margin:2em;max-width:70em}"
            "section{border-left:6px solid #2a2;padding:0 1em;margin:1em 0}"
            "section.bad{border-color:#c22}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}"
            "tr.critical td{background:#fdd}tr.warning td{background:#ffe9b3}"
        )
        when = " · ".join(x for x in (self.run_name, self.validated_at) if x)
        run = f"<p>Run: {escape(when)}</p>" if when else ""
        docs = (
            f"<p>Great Expectations' own Data Docs: <code>{escape(self.data_docs)}</code> (their"
            " styles load from the internet).</p>"
            if self.data_docs else ""
        )  # fmt: skip
        return (
            f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{escape(title)}: {escape(overall)}</h1>"
            f"{run}{''.join(parts)}{docs}</body></html>"
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "success": self.success,
                "run_name": self.run_name,
                "validated_at": self.validated_at,
                "data_docs": self.data_docs,
                "results": [asdict(r) for r in self.results],
            },
            indent=2,
        )


def gate_context(docs_dir: Path) -> Any:
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
        SITE,
        {
            "class_name": "SiteBuilder",
            "store_backend": backend,
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def publish(
    context: Any,
    results: list[TickerResult],
    report_dir: Path,
    run_name: str = "",
    validated_at: str = "",
) -> ValidationReport:
    """Build the Data Docs of everything ``context`` validated and write ``validation.json``
    and the offline page (atomically) under ``report_dir``: the report of ``results``, the
    run ``run_name`` at ``validated_at``."""
    context.build_data_docs(site_names=[SITE])
    index = report_dir / DATA_DOCS / "index.html"
    docs = str(index) if index.exists() else None
    report = ValidationReport(results, docs, run_name, validated_at)
    atomic_write(
        report_dir / "validation.json",
        lambda tmp: tmp.write_text(report.to_json(), encoding="utf-8"),
    )
    atomic_write(
        report_dir / REPORT_PAGE, lambda tmp: tmp.write_text(report.html(), encoding="utf-8")
    )
    return report


def batch_line(judged: dict[str, TickerResult], done: int, total: int) -> str:
    """A progress line for one batch judged: how many passed, which failed."""
    failed = [t for t, r in judged.items() if not r.success]
    more = ", …" if len(failed) > MAX_ROWS_SHOWN else ""
    named = f" ({', '.join(failed[:MAX_ROWS_SHOWN])}{more})"
    return (
        f"validated {done} of {total} tickers: {len(judged)} in one batch, "
        f"{len(judged) - len(failed)} passed, {len(failed)} FAILED" + (named if failed else "")
    )


def plain_english(
    expectation: str, column: str | None, kwargs: dict[str, Any] | None = None
) -> str:
    """One line saying what ``expectation`` on ``column`` asks, for a person."""
    if expectation == "expect_column_values_to_be_between":
        if column == "gap_days" and (kwargs or {}).get("min_value") is not None:
            return DATES_FORWARD
        if column in PLAIN_RANGE:
            return PLAIN_RANGE[column]
        if column in PRICES:
            return "prices must be above zero"
    return PLAIN.get(expectation, "")


def format_row(entry: dict[str, Any]) -> str:
    """One offending row as ``YYYY-MM-DD: open=…, high=…`` (GX gives its ticker, its date and
    the columns checked)."""
    values = ", ".join(
        f"{k}={float(v):g}" if isinstance(v, int | float) else f"{k}={v}"
        for k, v in entry.items()
        if k not in ("ticker", "date")
    )
    date = pd.Timestamp(entry["date"])
    day = "(no date)" if pd.isna(date) else f"{date:%Y-%m-%d}"
    return f"{day}: {values}" if values else day
