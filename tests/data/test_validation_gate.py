"""The Great Expectations gate: one comment per risk it guards against."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stockcast.ingest import combine, read_prices
from stockcast.validate import validate_prices
from tests.conftest import FIXTURES, synthetic_prices

TODAY = pd.Timestamp("2026-11-22")


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    return synthetic_prices(200)


def _failures(frame: pd.DataFrame, tmp_path: Path, min_rows: int = 100) -> dict[str, str]:
    """Failed expectation type -> every failure of that type as ``column: detail [rows]``."""
    report = validate_prices(frame, min_rows, tmp_path, today=TODAY)
    (result,) = report.results
    failures: dict[str, str] = {}
    for f in result.failures:
        text = f"{f.column}: {f.detail} {f.rows}"
        failures[f.expectation] = (
            f"{failures[f.expectation]}\n{text}" if f.expectation in failures else text
        )
    return failures


def test_good_data_passes_and_writes_json_and_data_docs(good, tmp_path: Path):
    report = validate_prices(good, 100, tmp_path, today=TODAY)
    assert report.success, report.summary()
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["success"] is True and saved["results"][0]["evaluated"] >= 20
    assert (tmp_path / "data_docs" / "index.html").exists()


def test_every_real_fixture_passes_with_its_own_row_count(tmp_path: Path):
    frame = combine([read_prices(p) for p in sorted(FIXTURES.glob("*.csv"))]).frame
    report = validate_prices(frame, 30, tmp_path, today=TODAY)
    assert report.success, report.summary()
    assert len(report.results) == 5


def test_non_positive_price_names_the_column_and_date(good, tmp_path: Path):
    # Plausible values: a zero or negative price is a vendor error, not a crash.
    bad = good.copy()
    bad.loc[7, "open"] = -1.0
    failures = _failures(bad, tmp_path)
    text = failures["expect_column_values_to_be_between"]
    assert text.startswith("open: 1 of 200 rows fail")
    assert f"{bad.loc[7, 'date']:%Y-%m-%d}: open=-1" in text


def test_high_below_low_is_caught(good, tmp_path: Path):
    # Internal consistency of a bar: swapped high/low columns.
    bad = good.copy()
    bad.loc[[3, 4], ["high", "low"]] = bad.loc[[3, 4], ["low", "high"]].to_numpy()
    failures = _failures(bad, tmp_path)
    pairs = failures["expect_column_pair_values_a_to_be_greater_than_b"]
    assert "high vs low: 2 of 200 rows fail (expected high >= low)" in pairs


def test_duplicate_and_unordered_dates_are_caught(good, tmp_path: Path):
    # Time order: a repeated day would leak a target into its own input window.
    bad = good.copy()
    bad.loc[10, "date"] = bad.loc[9, "date"]
    failures = _failures(bad, tmp_path)
    day = f"{bad.loc[9, 'date']:%Y-%m-%d}"
    assert failures["expect_compound_columns_to_be_unique"] == (
        f"date: 2 of 200 rows fail (expected one row per ticker and date) ['{day}', '{day}']"
    )
    order = failures["expect_column_values_to_be_between"]
    bound = {"min_value": 0.0, "strict_min": True}
    assert order == f"gap_days: 1 of 200 rows fail {bound} ['{day}: gap_days=0']"
    swapped = good.copy()
    swapped.loc[[20, 21], "date"] = swapped.loc[[21, 20], "date"].to_numpy()
    report = validate_prices(swapped, 100, tmp_path, today=TODAY)
    (result,) = report.results
    assert not result.success and [(f.column, f.plain) for f in result.failures] == [
        ("gap_days", "dates must go forward (each row after the one before)")
    ]
    assert result.failures[0].rows[0].startswith(f"{swapped.loc[21, 'date']:%Y-%m-%d}: gap_days=-")


def test_dates_in_the_future_are_caught(good, tmp_path: Path):
    bad = good.copy()
    bad.loc[199, "date"] = pd.Timestamp("2030-01-02")
    assert "2030-01-02" in _failures(bad, tmp_path)["expect_column_values_to_be_between"]


def test_nulls_constant_series_and_too_few_rows(good, tmp_path: Path):
    bad = good.copy()
    bad.loc[5, "volume"] = float("nan")
    bad["close"] = 50.0
    bad[["open", "high", "low"]] = 50.0
    failures = _failures(bad, tmp_path, min_rows=500)
    assert "expect_column_values_to_not_be_null" not in failures  # volume: a warning only
    series = failures["expect_column_values_to_be_between"].splitlines()
    assert "price_stdev: observed 0, expected {'min_value': 0.0, 'strict_min': True} []" in series
    assert "rows: observed 200, expected {'min_value': 500.0} []" in series


def test_each_ticker_is_judged_on_its_own(good, tmp_path: Path):
    other = synthetic_prices(200, ticker="OTHER", seed=1)
    other.loc[0, "low"] = other.loc[0, "high"] * 2
    heard: list[str] = []
    report = validate_prices(
        pd.concat([good, other]), 100, tmp_path, today=TODAY, progress=heard.append
    )
    assert report.failed_tickers == ["OTHER"]
    assert "OTHER: FAILED" in report.summary() and "TEST: passed" in report.summary()
    # where the stage is: both in one batch
    assert heard == ["validated 2 of 2 tickers: 2 in one batch, 1 passed, 1 FAILED (OTHER)"]


def test_warnings_are_reported_but_do_not_stop(good, tmp_path: Path):
    # Real markets jump and close for holidays: a person should look, the gate should not stop.
    odd = good.copy()
    odd.loc[5, "volume"] = float("nan")  # indexes often have no volume
    odd.loc[60:, "date"] += pd.Timedelta(days=30)  # a month-long closure
    odd.loc[100:, ["open", "high", "low", "close"]] *= 1.6  # a 60% jump (a re-rating)
    report = validate_prices(odd, 100, tmp_path, today=TODAY, max_daily_move=0.25, max_gap_days=14)
    assert report.success, report.summary()
    warnings = {(w.expectation, w.column): w for w in report.results[0].warnings}
    assert ("expect_column_values_to_not_be_null", "volume") in warnings
    gap = warnings[("expect_column_values_to_be_between", "gap_days")]
    days = (odd.loc[60, "date"] - odd.loc[59, "date"]).days
    assert days > 30 and gap.rows == [f"{odd.loc[60, 'date']:%Y-%m-%d}: gap_days={days}"]
    move = warnings[("expect_column_values_to_be_between", "daily_move")]
    assert move.rows[0].startswith(f"{odd.loc[100, 'date']:%Y-%m-%d}: daily_move=0.")
    assert (
        "warning: an unusually long gap between rows for the series' frequency (missing data?) "
        "[expect_column_values_to_be_between]: column gap_days" in report.summary()
    )


def test_the_offline_page_puts_critical_failures_and_warnings_apart(good, tmp_path: Path):
    bad = good.copy()
    bad.loc[7, "open"] = -1.0  # critical
    bad.loc[5, "volume"] = float("nan")  # a warning
    report = validate_prices(bad, 100, tmp_path, today=TODAY)
    page = (tmp_path / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<h1>stockcast data validation: failed: TEST</h1>" in page
    critical = page.index("<h3>Critical: these stop the run</h3>")
    warnings = page.index("<h3>Warnings: reported, never stop a run</h3>")
    row = f"{bad.loc[7, 'date']:%Y-%m-%d}: open=-1"
    assert critical < page.index(row) < warnings  # the bad price among the critical ones
    assert warnings < page.index("every row needs a value")  # the missing volume a warning
    assert f"Report: {tmp_path / 'index.html'} (offline)" in report.summary()


def test_tickers_of_other_kinds_are_judged_in_their_own_batch(good, tmp_path: Path):
    """A weekly single-price series beside daily bars: each gets the suite its kind needs
    (no bar checks on columns it lacks, the gap warning at its own step), in its own batch,
    and a failure in one batch names only its own ticker."""
    weekly = pd.DataFrame(
        {
            "date": pd.date_range("2010-01-01", periods=150, freq="W-FRI").delete([60]),
            "ticker": "WEEKLY",
            "open": float("nan"),
            "high": float("nan"),
            "low": float("nan"),
            "close": 100.0,
            "volume": float("nan"),
        }
    )
    weekly["close"] += range(len(weekly))
    bad = good.copy()
    bad.loc[3, "open"] = 0.0
    heard: list[str] = []
    report = validate_prices(
        pd.concat([bad, weekly]),
        100,
        tmp_path,
        today=TODAY,
        absent={"WEEKLY": ["open", "high", "low", "volume"]},
        progress=heard.append,
    )
    by = {r.ticker: r for r in report.results}
    assert list(by) == ["TEST", "WEEKLY"] and report.failed_tickers == ["TEST"]
    assert [f.column for f in by["TEST"].failures] == ["open", "open vs low"]
    assert by["WEEKLY"].success and by["WEEKLY"].warnings == []  # 2 weeks apart: no gap for weekly
    assert by["WEEKLY"].evaluated < by["TEST"].evaluated and by["WEEKLY"].skipped
    assert heard == [  # tickers in order, so TEST's batch comes first
        "validated 1 of 2 tickers: 1 in one batch, 0 passed, 1 FAILED (TEST)",
        "validated 2 of 2 tickers: 1 in one batch, 1 passed, 0 FAILED",
    ]


def test_the_offline_page_lists_every_check_and_names_the_run(good, tmp_path: Path):
    """The page holds what GX's Data Docs hold, without their scripts: every check each
    ticker was judged on with its result, a failed warning apart from a failed critical check,
    and the run it belongs to (the Data Docs file their results under the same name)."""
    bad = good.copy()
    bad.loc[7, "open"] = -1.0  # critical
    bad.loc[5, "volume"] = float("nan")  # a warning
    report = validate_prices(bad, 100, tmp_path, today=TODAY, run_name="pipeline 42")
    (result,) = report.results
    assert len(result.checks) == result.evaluated
    by_result = {
        (kind, column): (severity, outcome) for kind, column, severity, outcome in result.checks
    }
    assert by_result[("expect_column_values_to_be_between", "open")] == ("critical", "failed")
    assert by_result[("expect_column_values_to_not_be_null", "volume")] == ("warning", "failed")
    assert by_result[("expect_column_values_to_not_be_null", "close")] == ("critical", "passed")
    page = (tmp_path / "index.html").read_text()
    assert "<p>Run: pipeline 42 · " in page and report.validated_at.endswith(" UTC")
    # each failed check is one failure or warning of the ticker (the bad open fails two)
    assert page.count("<tr class=ok>") == result.evaluated - 3
    assert page.count("<tr class=critical>") == len(result.failures) == 2
    assert page.count("<tr class=warning>") == len(result.warnings) == 1
    critical = page.index("<tr class=critical>")
    assert page.index("<code>expect_column_values_to_be_between</code>", critical) < page.index(
        "FAILED", critical
    )
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["run_name"] == "pipeline 42" and len(saved["results"][0]["checks"]) == len(
        result.checks
    )
    # GX's own site: readable suite names, the run's name instead of "__none__"
    pages = sorted(
        p.relative_to(tmp_path / "data_docs") for p in (tmp_path / "data_docs").rglob("*.html")
    )
    suites = {p.parts[1] for p in pages if p.parts[0] == "validations"}
    assert suites == {"stockcast-price-rows-daily", "stockcast-per-ticker-daily"}, pages
    assert all(p.parts[2] == "pipeline 42" for p in pages if p.parts[0] == "validations"), pages


def test_a_suite_is_named_by_what_it_checks_and_at_which_step():
    from stockcast.validate import suite_name

    assert suite_name("rows", frozenset(), 1) == "stockcast-price-rows-daily"
    assert suite_name("series", frozenset(), 7) == "stockcast-per-ticker-weekly"
    assert suite_name("rows", frozenset({"volume", "high"}), 30) == (
        "stockcast-price-rows-monthly-without-high-volume"
    )
    assert suite_name("rows", frozenset(), 91) == "stockcast-price-rows-every-91-days"
    assert suite_name("rows", frozenset(), 28) == "stockcast-price-rows-monthly"
    assert suite_name("rows", frozenset(), 31) == "stockcast-price-rows-monthly"
    assert suite_name("rows", frozenset(), 32) == "stockcast-price-rows-every-32-days"


def test_a_missing_column_is_named_in_plain_words(good, tmp_path: Path):
    """A column no row carries fails as every ticker's, with what was expected in words."""
    report = validate_prices(good.drop(columns=["high"]), 100, tmp_path, today=TODAY)
    (result,) = report.results
    exists = [f for f in result.failures if f.expectation == "expect_column_to_exist"]
    assert [(f.column, f.plain) for f in exists] == [("high", "the column must be there")]
    assert all(f.plain for f in result.failures)
