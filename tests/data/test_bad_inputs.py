"""The bad-input corpus: each file gets its own specific message from ``stockcast validate``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stockcast.cli import main
from tests.conftest import synthetic_prices, write_yahoo_csv


def _good_csv(path: Path, n: int = 80) -> str:
    write_yahoo_csv(synthetic_prices(n), path)
    return path.read_text()


def _edit_cell(text: str, line: int, column: int, value: str) -> str:
    rows = text.splitlines()
    cells = rows[line].split(",")
    cells[column] = value
    rows[line] = ",".join(cells)
    return "\n".join(rows) + "\n"


def _duplicate_line(text: str, line: int) -> str:
    rows = text.splitlines()
    rows.insert(line, rows[line])
    return "\n".join(rows) + "\n"


def _constant(text: str) -> str:
    rows = text.splitlines()
    return "\n".join([rows[0]] + [f"{r.split(',')[0]},5,5,5,5,5,100" for r in rows[1:]]) + "\n"


# name -> (make the file's content from a good Yahoo CSV, what the report must say)
CORPUS: dict[str, tuple[Callable[[str], str | bytes], list[str]]] = {
    "empty": (lambda t: b"", ["file is empty"]),
    "header_only": (lambda t: t.splitlines()[0] + "\n", ["header only, no data rows"]),
    "binary_garbage": (
        lambda t: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01",
        ["binary data (NUL bytes), not a CSV text file"],
    ),
    "latin1_text": (
        lambda t: t.replace("Date", "D\xe4te").encode("latin-1"),
        ["not a UTF-8 text file"],
    ),
    "semicolons": (
        lambda t: t.replace(",", ";"),
        ["wrong delimiter: the header is split by semicolons"],
    ),
    "tabs": (lambda t: t.replace(",", "\t"), ["wrong delimiter: the header is split by tabs"]),
    "unknown_layout": (
        lambda t: "when,price\n2020-01-02,5\n",
        ["unknown CSV layout", "header: when, price"],
    ),
    "bad_date": (
        lambda t: _edit_cell(t, 3, 0, "2015-02-30"),
        ["1 date(s) cannot be parsed", "column: Date", "line 4: '2015-02-30'"],
    ),
    "ambiguous_dates": (
        lambda t: "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "01/02/2020,1,2,0.5,1,1,10\n03/04/2020,1,2,0.5,1,1,10\n",
        ["ambiguous dates", "data.date_order"],
    ),
    "inconsistent_dates": (
        lambda t: "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "13/01/2020,1,2,0.5,1,1,10\n01/14/2020,1,2,0.5,1,1,10\n",
        ["dates fit neither month-first nor day-first"],
    ),
    "non_numeric_price": (
        lambda t: _edit_cell(t, 5, 4, "twelve"),
        ["1 non-numeric value(s)", "column: Close", "'twelve'"],
    ),
    "negative_price": (
        lambda t: _edit_cell(t, 6, 1, "-3.5"),
        ["expect_column_values_to_be_between]: column open", "open=-3.5"],
    ),
    "high_below_low": (
        lambda t: _edit_cell(t, 7, 2, "0.01"),
        ["column high vs low", "expected high >= low", "high=0.01"],
    ),
    "duplicate_date": (
        lambda t: _duplicate_line(t, 9),
        ["one row per trading day [expect_compound_columns_to_be_unique]: column date"],
    ),
    "future_date": (lambda t: _edit_cell(t, 80, 0, "2099-01-02"), ["column date", "2099-01-02"]),
    "constant_series": (
        _constant,
        ["the price must move", "be_between]: column price_stdev: observed 0"],
    ),
    "too_few_rows": (
        lambda t: "\n".join(t.splitlines()[:20]) + "\n",
        ["too short for the configured spans", "column rows: observed 19"],
    ),
    "missing_close": (
        lambda t: _edit_cell(t, 11, 4, ""),
        ["expect_column_values_to_not_be_null]: column close"],
    ),
    "infinite_price": (
        lambda t: _edit_cell(t, 12, 3, "inf"),
        ["expect_column_values_to_not_be_in_set]: column low"],
    ),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_file_gets_its_own_message(case: str, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, expected = CORPUS[case]
    content = make(_good_csv(tmp_path / "good.csv"))
    bad = tmp_path / f"{case}.csv"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = bad.read_bytes()
    code = main(["validate", str(bad), "--min-rows", "40"])
    out = capsys.readouterr()
    report = out.out + out.err
    assert code == 1, report
    assert str(bad) in report or "FAILED" in report
    for text in expected:
        assert text in report, f"{case}: {text!r} not in\n{report}"
    assert "Traceback" not in report
    assert bad.read_bytes() == before  # raw data is never modified


def test_good_file_passes_with_repairs_printed(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = _good_csv(tmp_path / "good.csv")
    rows = text.splitlines()
    reordered = tmp_path / "newest_first.csv"
    # two days with no prices: one blank, one of Yahoo's null rows that still has a volume
    empty = ["2016-01-01,,,,,,", "2016-01-04,null,null,null,null,null,1200"]
    reordered.write_text("\n".join([rows[0], *reversed(rows[1:]), *empty]) + "\n")
    code = main(["validate", str(reordered), "--min-rows", "40"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sorted 80 rows into ascending date order" in out
    assert "dropped 2 row(s) with every price empty (no trading: 2016-01-01, 2016-01-04)" in out
    assert "validation passed" in out
    assert (tmp_path / "reports/validation-cli/validation.json").exists()


def test_missing_file_and_empty_glob(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "nope.csv"]) == 1
    assert "nope.csv: file not found" in capsys.readouterr().err
    assert main(["validate", "data/*.csv"]) == 1
    assert "the pattern matches no file" in capsys.readouterr().err


def test_every_corpus_message_is_specific_to_its_fault(tmp_path: Path, capsys, monkeypatch):
    """A message the good file's report also prints would pass whatever the code did."""
    monkeypatch.chdir(tmp_path)
    _good_csv(tmp_path / "good.csv")
    assert main(["validate", "good.csv", "--min-rows", "40"]) == 0
    captured = capsys.readouterr()
    good_report = captured.out + captured.err
    for case, (_, expected) in CORPUS.items():
        assert expected, case
        assert any(text not in good_report for text in expected), case
