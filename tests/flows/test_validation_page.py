"""The validation report read as a person reads it: in a browser that cannot reach the
internet (every request outside ``file://`` refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from stockcast.validate import validate_prices
from tests.conftest import synthetic_prices

CHROMIUM = Path("/usr/bin/chromium")


def test_the_validation_page_reads_offline(tmp_path: Path):
    if not CHROMIUM.exists():
        if os.environ.get("STOCKCAST_REQUIRE_BROWSER"):
            pytest.fail("Chromium is missing: `make browser` installs Debian's chromium")
        pytest.skip("no /usr/bin/chromium (make test installs it)")
    from playwright.sync_api import expect, sync_playwright

    bad = synthetic_prices(200)
    bad.loc[7, "open"] = -1.0  # critical
    bad.loc[5, "volume"] = float("nan")  # a warning
    report = validate_prices(
        bad,
        100,
        tmp_path,
        today=pd.Timestamp("2026-11-22"),
        sources={"TEST": ["data/raw/TEST.csv"]},
        run_name="pipeline 7",
    )
    (result,) = report.results
    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})

        def offline(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        page.goto((tmp_path / "index.html").as_uri())
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "stockcast data validation: failed: TEST"
        )
        expect(page.get_by_text("Run: pipeline 7 · ")).to_be_visible()
        section = page.locator("section").filter(has_text="TEST: FAILED")
        expect(section).to_contain_text("200 rows from data/raw/TEST.csv")
        # the critical failures and the warnings in tables of their own
        critical = page.locator("h3:has-text('Critical') + table tr")
        expect(critical).to_have_count(len(result.failures) + 1)  # and the header
        warnings = page.locator("h3:has-text('Warnings') + table tr")
        expect(warnings).to_have_count(len(result.warnings) + 1)
        expect(warnings.nth(1)).to_contain_text("every row needs a value")
        # every check, folded, opens into the results table
        page.get_by_text(f"every check ({result.evaluated})").click()
        rows = page.locator("table.checks tr")
        expect(rows).to_have_count(result.evaluated + 1)
        expect(rows.filter(has_text="FAILED")).to_have_count(len(result.failures))
        # a failed warning says so (not FAILED); a passed one says passed
        warned_checks = [c for c in result.checks if c[2] == "warning"]
        expect(rows.filter(has_text="warning").locator("td:nth-child(4)")).to_have_text(
            ["passed" if c[3] == "passed" else "warning" for c in warned_checks]
        )

        def shade(row) -> str:
            return row.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")

        failed, warned = rows.filter(has_text="FAILED").first, page.locator("tr.warning").first
        passed = page.locator("tr.ok").first
        assert len({shade(failed), shade(warned), shade(passed)}) == 3  # three looks apart
        page.screenshot(path=str(tmp_path / "validation.png"), full_page=True)
        browser.close()
    assert refused == []  # the page asked the internet for nothing
