"""Every real layout ingests to the canonical table; bad files get specific messages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stockcast.errors import ConfigError, DataError
from stockcast.ingest import CANONICAL, combine, read_prices, sanitize_ticker
from tests.conftest import FIXTURES


@pytest.mark.parametrize(
    ("name", "ticker", "first_date", "first_open"),
    [
        ("SH600519.csv", "SH600519", "2010-04-26", 88.702),
        ("^NSEI.csv", "^NSEI", "2008-11-03", 2885.399902),
        ("000001.SZ.csv", "000001.SZ", "2019-01-02", None),
        ("NSE-TATAGLOBAL.csv", "NSE-TATAGLOBAL", None, None),
        ("MSFT_data.csv", "MSFT", "2013-02-08", 27.35),
    ],
)
def test_real_layouts_ingest(name, ticker, first_date, first_open):
    result = read_prices(FIXTURES / name)
    frame = result.frame
    assert list(frame.columns) == list(CANONICAL)
    assert frame["ticker"].unique().tolist() == [ticker]
    assert frame["date"].is_monotonic_increasing and frame["date"].is_unique
    assert frame[["open", "high", "low", "close", "volume"]].notna().all().all()
    if first_date:
        assert frame["date"].iloc[0] == pd.Timestamp(first_date)
    if first_open:
        assert frame["open"].iloc[0] == pytest.approx(first_open)


def test_seed_file_keeps_open_not_close():
    # The seed's column order is open, close, high, low: mapping by name, not position.
    frame = read_prices(FIXTURES / "SH600519.csv").frame
    assert frame.loc[0, ["open", "close", "high", "low"]].tolist() == pytest.approx(
        [88.702, 87.381, 89.072, 87.362]
    )


def test_repairs_are_reported_with_counts():
    yahoo = read_prices(FIXTURES / "^NSEI.csv")
    assert any(
        "dropped 1 row(s) with every price empty (no trading: 2008-11-27)" in r
        for r in yahoo.repairs
    ), yahoo.repairs
    nse = read_prices(FIXTURES / "NSE-TATAGLOBAL.csv")
    assert any("sorted 40 rows into ascending date order" in r for r in nse.repairs)


def test_tushare_pro_integer_dates_parse_as_yyyymmdd():
    frame = read_prices(FIXTURES / "000001.SZ.csv").frame
    assert frame["date"].iloc[1] == pd.Timestamp("2019-01-03")


def test_raw_file_is_never_modified():
    path = FIXTURES / "NSE-TATAGLOBAL.csv"
    before = path.read_bytes()
    read_prices(path)
    assert path.read_bytes() == before


def test_where_sources_overlap_the_later_source_wins(tmp_path: Path):
    original = FIXTURES / "MSFT_data.csv"
    text = original.read_text().splitlines()
    header = text[0].split(",")
    close = header.index("close")
    revised_rows = [text[0]]
    for row in text[1:]:
        cells = row.split(",")
        cells[close] = str(float(cells[close]) + 1000)  # a revised vendor file
        revised_rows.append(",".join(cells))
    revised = tmp_path / "MSFT_revised.csv"
    revised.write_text("\n".join(revised_rows) + "\n")
    old, new = read_prices(original), read_prices(revised)
    later_new = combine([old, new]).frame.set_index("date")["close"]
    later_old = combine([new, old]).frame.set_index("date")["close"]
    first = old.frame.set_index("date")["close"]
    pd.testing.assert_series_equal(later_new, first + 1000, check_names=False)
    pd.testing.assert_series_equal(later_old, first, check_names=False)


def test_combine_dedupes_and_filters(tmp_path: Path):
    a = read_prices(FIXTURES / "MSFT_data.csv")
    b = read_prices(FIXTURES / "MSFT_data.csv")
    c = read_prices(FIXTURES / "SH600519.csv")
    both = combine([a, b, c])
    assert len(both.frame) == 80
    assert any(
        "dropped 40 (ticker, date) row(s) repeated by a later source" in r for r in both.repairs
    )
    only = combine([a, c], tickers=["MSFT"])
    assert only.frame["ticker"].unique().tolist() == ["MSFT"]
    with pytest.raises(ConfigError, match=r"data.tickers: \['AAPL'\] not found"):
        combine([a], tickers=["AAPL"])


def test_ticker_from_content_cannot_escape_paths():
    assert sanitize_ticker("../../etc/passwd") == "etc_passwd"
    assert "/" not in sanitize_ticker("a/b\\c")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"Date,Open,High,Low,Close,Adj Close,Volume\n", "header only, no data rows"),
        (b"when,price\n2020-01-01,3\n", "unknown CSV layout"),
        (
            b"Date,Open,High,Low,Close,Adj Close,Volume\n2020-13-45,1,2,0.5,1,1,10\n",
            "1 date(s) cannot be parsed",
        ),
        (
            b"Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,abc,2,0.5,1,1,10\n",
            "1 non-numeric value(s)",
        ),
        (b"\x00\x01\xff\xfe\x00garbage", "binary data (NUL bytes), not a CSV text file"),
        (b"Date,Open\n\xff\xfe2020,1\n", "not a UTF-8 text file"),
    ],
)
def test_bad_files_get_specific_messages(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_prices(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_non_numeric_price_names_column_and_row(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2020-01-02,1,2,0.5,1,1,10\n2020-01-03,n/a,2,0.5,1,1,10\n"
    )
    with pytest.raises(DataError) as err:
        read_prices(path)
    text = str(err.value)
    assert "column: Open" in text and "2020-01-03: 'n/a'" in text
    assert "expected: numbers in the open column" in text


NASDAQ = (
    "Date,Close/Last,Volume,Open,High,Low\n"
    "11/20/2026,$227.48,45089120,$228.06,$229.74,$226.21\n"
    "11/19/2026,$228.28,38010080,$226.98,$230.16,$226.65\n"
)
INVESTING = (
    '"Date","Price","Open","High","Low","Vol.","Change %"\n'
    '"11/20/2026","1,227.48","1,228.06","1,229.74","1,226.21","45.09M","-0.35%"\n'
    '"11/19/2026","1,228.28","1,226.98","1,230.16","1,226.65","","0.52%"\n'
    '"11/18/2026","1,221.90","1,219.00","1,224.30","1,218.10","880.5K","0.10%"\n'
)


def test_nasdaq_layout_strips_dollars_and_reads_us_dates(tmp_path: Path):
    path = tmp_path / "AAPL.csv"
    path.write_text(NASDAQ)
    result = read_prices(path)
    frame = result.frame
    assert frame["date"].tolist() == [pd.Timestamp("2026-11-19"), pd.Timestamp("2026-11-20")]
    assert frame.loc[1, ["open", "high", "low", "close"]].tolist() == [
        228.06,
        229.74,
        226.21,
        227.48,
    ]
    assert any("stripped currency signs from 2 value(s) in Open" in r for r in result.repairs)
    assert any("month-first (from the data)" in r for r in result.repairs)


def test_investing_layout_quotes_thousands_and_volume_suffixes(tmp_path: Path):
    path = tmp_path / "XAU.csv"
    path.write_text(INVESTING)
    result = read_prices(path)
    frame = result.frame.set_index("date")
    assert frame.loc["2026-11-20", "close"] == 1227.48  # Price is the close
    assert frame.loc["2026-11-20", "volume"] == pytest.approx(45.09e6)
    assert frame.loc["2026-11-18", "volume"] == pytest.approx(880.5e3)
    assert pd.isna(frame.loc["2026-11-19", "volume"])  # empty Vol.: left to the gate
    assert any("thousands separators from 3 value(s) in Price" in r for r in result.repairs)
    assert any("K/M/B suffixes on 2 value(s) in Vol." in r for r in result.repairs)


@pytest.mark.parametrize(
    ("rows", "order", "expected"),
    [
        (["13/01/2020", "14/01/2020"], "auto", "2020-01-13"),  # day > 12 first: day-first
        (["01/13/2020", "01/14/2020"], "auto", "2020-01-13"),  # day > 12 second: month-first
        (["01/02/2020", "01/03/2020"], "day_first", "2020-02-01"),  # ambiguous: params decide
        (["01/02/2020", "01/03/2020"], "month_first", "2020-01-02"),
        (["13.01.2020", "14.01.2020"], "auto", "2020-01-13"),
    ],
)
def test_nn_nn_yyyy_dates_are_decided_by_the_data_or_params(tmp_path, rows, order, expected):
    path = tmp_path / "T.csv"
    body = "".join(f"{d},1,2,0.5,1,1,10\n" for d in rows)
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + body)
    frame = read_prices(path, date_order=order).frame
    assert frame["date"].iloc[0] == pd.Timestamp(expected)


def test_explicit_column_mapping_reads_any_other_layout(tmp_path: Path):
    from stockcast.ingest import mapped_layout

    path = tmp_path / "odd.csv"
    path.write_text("Trade Day,O,H,L,C,Shares,Sym\n2021-03-01,1,2,0.5,1.5,100,XYZ\n")
    layout = mapped_layout(
        {
            "date": "Trade Day",
            "open": "O",
            "high": "H",
            "low": "L",
            "close": "C",
            "volume": "Shares",
            "ticker": "Sym",
        }
    )
    frame = read_prices(path, layout=layout).frame
    assert frame.loc[0, "ticker"] == "XYZ" and frame.loc[0, "close"] == 1.5
    with pytest.raises(ConfigError, match=r"needs date and at least one of"):
        mapped_layout({"open": "o", "high": "h", "low": "l", "close": "c"})
    # without volume: the column stays empty, and the repair says so
    body = "Trade Day,O,H,L,C\n2021-03-04,1,2,0.5,1.5\n"
    (tmp_path / "nov.csv").write_text(body)
    no_volume = read_prices(
        tmp_path / "nov.csv",
        "NOV",
        layout=mapped_layout(
            {"date": "Trade Day", "open": "O", "high": "H", "low": "L", "close": "C"}
        ),
    )
    assert no_volume.frame["volume"].isna().all() and no_volume.absent == {"NOV": ["volume"]}
    assert any("no volume column(s) in the mapping" in r for r in no_volume.repairs)


def test_bom_crlf_and_whitespace_are_repaired_and_counted(tmp_path: Path):
    path = tmp_path / "T.csv"
    body = "Date,Open,High,Low,Close,Adj Close,Volume\r\n2020-01-02, 1 ,2,0.5,1,1,10 \r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    result = read_prices(path)
    assert result.frame.loc[0, "open"] == 1.0 and result.frame.loc[0, "volume"] == 10.0
    assert any("removed a UTF-8 byte-order mark" in r for r in result.repairs)
    assert any("read 2 CRLF line ending(s)" in r for r in result.repairs)
    assert any("stripped stray whitespace from 2 value(s)" in r for r in result.repairs)


def test_a_layout_maps_each_canonical_column_to_its_vendor_name_or_its_own():
    from stockcast.ingest import _columns

    assert _columns(date="trade_date", volume="vol") == {
        "date": "trade_date",
        "open": "open",
        "high": "high",
        "low": "low",
        "close": "close",
        "volume": "vol",
    }
    assert _columns() == {c: c for c in ("date", "open", "high", "low", "close", "volume")}
