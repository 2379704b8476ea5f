"""Read vendor CSV layouts into one canonical table (date, ticker, OHLC, volume)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stockcast.errors import DataError

CANONICAL = ("date", "ticker", "open", "high", "low", "close", "volume")
NUMERIC = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Layout:
    """A vendor's CSV layout: recognised by its header, mapped onto canonical columns.

    Attributes:
        name: short name used in reports.
        signature: lower-cased header columns that identify the layout.
        columns: canonical name -> the vendor's column name (lower-cased).
        date_format: strptime format for the date column, or None for ISO dates.
        ticker_column: the vendor's ticker column, if the file carries one.
    """

    name: str
    signature: frozenset[str]
    columns: dict[str, str]
    date_format: str | None = None
    ticker_column: str | None = None


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "tushare_pro",
        frozenset({"ts_code", "trade_date", "open", "high", "low", "close", "vol"}),
        {
            "date": "trade_date",
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": "vol",
        },
        date_format="%Y%m%d",
        ticker_column="ts_code",
    ),
    Layout(
        "quandl_nse",
        frozenset({"date", "open", "high", "low", "last", "close", "total trade quantity"}),
        {
            "date": "date",
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": "total trade quantity",
        },
    ),
    Layout(
        "yahoo",
        frozenset({"date", "open", "high", "low", "close", "adj close", "volume"}),
        {
            "date": "date",
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": "volume",
        },
    ),
    Layout(
        "kaggle_all_stocks_5yr",
        frozenset({"date", "open", "high", "low", "close", "volume", "name"}),
        {
            "date": "date",
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": "volume",
        },
        ticker_column="name",
    ),
    Layout(
        "tushare_legacy",
        frozenset({"date", "open", "close", "high", "low", "volume", "code"}),
        {
            "date": "date",
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": "volume",
        },
    ),
    Layout(
        "generic_ohlcv",
        frozenset({"date", "open", "high", "low", "close", "volume"}),
        {
            "date": "date",
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": "volume",
        },
    ),
)

_TICKER_UNSAFE = re.compile(r"[^A-Za-z0-9._^-]+")


@dataclass
class IngestResult:
    """The canonical table and the repairs made on the way, each with a count."""

    frame: pd.DataFrame
    repairs: list[str] = field(default_factory=list)


def detect_layout(columns: Iterable[str], file: Path | str) -> Layout:
    """Pick the first layout whose signature the header contains.

    Raises:
        DataError: no known layout matches.
    """
    header = {str(c).strip().lower() for c in columns}
    for layout in LAYOUTS:
        if layout.signature <= header:
            return layout
    raise DataError(
        file,
        "unknown CSV layout",
        rows=[f"header: {', '.join(map(str, columns))}"],
        expected="a header with date, open, high, low, close and volume columns "
        f"(known layouts: {', '.join(layout.name for layout in LAYOUTS)})",
    )


def sanitize_ticker(raw: str) -> str:
    """Make a ticker safe for paths and model names: letters, digits, ``. _ ^ -`` only."""
    ticker = _TICKER_UNSAFE.sub("_", str(raw).strip()).strip("._-")
    if not ticker or ticker in {".", ".."}:
        raise DataError("<ticker>", f"ticker {raw!r} is empty once unsafe characters are removed")
    return ticker[:64]


def read_prices(path: Path, ticker: str | None = None) -> IngestResult:
    """Read one CSV file in any known layout into the canonical table.

    Args:
        path: the CSV file; it is only read, never modified.
        ticker: the ticker to use when the file carries none (default: the file's stem).

    Returns:
        The canonical table sorted by ticker and date, and the repairs made.

    Raises:
        DataError: the file is missing, empty, of unknown layout, or has unparseable values.
    """
    raw = _read_csv(path)
    layout = detect_layout(raw.columns, path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    repairs: list[str] = []

    before = len(raw)
    value_columns = [layout.columns[c] for c in NUMERIC]
    raw = raw.dropna(how="all", subset=value_columns)
    if dropped := before - len(raw):
        repairs.append(f"{path}: dropped {dropped} row(s) with every price and volume empty")

    frame = pd.DataFrame({"date": _parse_dates(raw[layout.columns["date"]], layout, path)})
    if layout.ticker_column:
        frame["ticker"] = raw[layout.ticker_column].astype(str).map(sanitize_ticker).to_numpy()
    else:
        frame["ticker"] = sanitize_ticker(ticker or path.stem)
    for column in NUMERIC:
        frame[column] = _parse_numbers(raw[layout.columns[column]], column, path, frame["date"])

    frame, sort_repairs = _sort(frame, path)
    return IngestResult(frame, repairs + sort_repairs)


def combine(results: Iterable[IngestResult], tickers: Iterable[str] = ()) -> IngestResult:
    """Stack per-file tables, keep the chosen tickers, and drop exact (ticker, date) repeats."""
    results = list(results)
    frame = pd.concat([r.frame for r in results], ignore_index=True)
    repairs = [repair for r in results for repair in r.repairs]
    wanted = [sanitize_ticker(t) for t in tickers]
    if wanted:
        missing = sorted(set(wanted) - set(frame["ticker"]))
        if missing:
            raise DataError(
                "data.tickers",
                f"ticker(s) {missing} not found in any source",
                expected=f"one of {sorted(frame['ticker'].unique())}",
            )
        frame = frame[frame["ticker"].isin(wanted)]
    before = len(frame)
    frame = frame.drop_duplicates(subset=["ticker", "date"], keep="last")
    if dropped := before - len(frame):
        repairs.append(f"dropped {dropped} repeated (ticker, date) row(s) across sources")
    frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return IngestResult(frame[list(CANONICAL)], repairs)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty", expected="a header line and daily rows")
    try:
        raw = pd.read_csv(
            path,
            keep_default_na=False,
            na_values=["", "null", "NULL", "NaN", "nan"],
            encoding="utf-8-sig",
        )
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a UTF-8 text file ({exc.reason})") from exc
    except pd.errors.ParserError as exc:
        raise DataError(path, f"not a readable CSV file: {exc}") from exc
    raw = raw.loc[:, [not str(c).startswith("Unnamed:") for c in raw.columns]]
    if raw.empty:
        raise DataError(path, "header only, no data rows", expected="at least one daily row")
    return raw


def _parse_dates(values: pd.Series, layout: Layout, path: Path) -> pd.Series:
    text = values.astype(str).str.strip()
    parsed = pd.to_datetime(text, format=layout.date_format, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        rows = [f"line {i + 2}: {v!r}" for i, v in zip(values.index[bad], text[bad], strict=False)]
        raise DataError(
            path,
            f"{int(bad.sum())} date(s) cannot be parsed",
            column=values.name,
            rows=rows,
            expected=f"dates as {layout.date_format or 'YYYY-MM-DD'}",
        )
    return parsed.astype("datetime64[ns]").reset_index(drop=True)


def _parse_numbers(values: pd.Series, column: str, path: Path, dates: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").reset_index(drop=True)
    bad = numbers.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        shown = [f"{d:%Y-%m-%d}: {v!r}" for d, v in zip(dates[bad], values[bad], strict=False)]
        raise DataError(
            path,
            f"{int(bad.sum())} non-numeric value(s)",
            column=values.name,
            rows=shown,
            expected=f"numbers in the {column} column",
        )
    return numbers


def _sort(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str]]:
    keys = frame[["ticker", "date"]]
    if keys.equals(keys.sort_values(["ticker", "date"], kind="stable")):
        return frame.reset_index(drop=True), []
    frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return frame, [f"{path}: sorted {len(frame)} rows into ascending date order"]
