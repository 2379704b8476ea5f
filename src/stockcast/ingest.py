"""Read vendor CSV layouts into one canonical table (date, ticker, OHLC, volume)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stockcast.columns import CANONICAL, OHLCV, PRICES
from stockcast.errors import ConfigError, DataError, SeriesError


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


def _columns(**renamed: str) -> dict[str, str]:
    """Canonical name -> vendor column: the canonical name itself unless renamed."""
    return {name: renamed.get(name, name) for name in ("date", *OHLCV)}


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "tushare_pro",
        frozenset({"ts_code", "trade_date", "open", "high", "low", "close", "vol"}),
        _columns(date="trade_date", volume="vol"),
        date_format="%Y%m%d",
        ticker_column="ts_code",
    ),
    Layout(
        "quandl_nse",
        frozenset({"date", "open", "high", "low", "last", "close", "total trade quantity"}),
        _columns(volume="total trade quantity"),
    ),
    Layout(
        "yahoo",
        frozenset({"date", "open", "high", "low", "close", "adj close", "volume"}),
        _columns(),
    ),
    Layout(
        "kaggle_all_stocks_5yr",
        frozenset({"date", "open", "high", "low", "close", "volume", "name"}),
        _columns(),
        ticker_column="name",
    ),
    Layout(
        "tushare_legacy",
        frozenset({"date", "open", "close", "high", "low", "volume", "code"}),
        _columns(),
    ),
    Layout(
        "nasdaq",
        frozenset({"date", "close/last", "volume", "open", "high", "low"}),
        _columns(close="close/last"),
    ),
    Layout(
        "investing_com",
        frozenset({"date", "price", "open", "high", "low", "vol.", "change %"}),
        _columns(close="price", volume="vol."),
    ),
    Layout(
        "generic_ohlcv",
        frozenset({"date", "open", "high", "low", "close", "volume"}),
        _columns(),
    ),
)

_TICKER_UNSAFE = re.compile(r"[^A-Za-z0-9._^-]+")
_CURRENCY = re.compile(r"[$¥€£₹]")
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_SUFFIX = re.compile(r"^(-?\d+(?:\.\d+)?)([KMB])$", re.IGNORECASE)
_MULTIPLIER = {"K": 1e3, "M": 1e6, "B": 1e9}
_NN_NN_YYYY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")


@dataclass
class IngestResult:
    """The canonical table and the repairs made on the way, each with a count."""

    frame: pd.DataFrame
    repairs: list[str] = field(default_factory=list)
    origin: dict[str, list[str]] = field(default_factory=dict)  # ticker -> its source files
    # ticker -> the columns its sources lack (a single-price series): empty, never checked
    absent: dict[str, list[str]] = field(default_factory=dict)


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
        raise SeriesError(repr(raw), "the ticker is empty once unsafe characters are removed")
    return ticker[:64]


def mapped_layout(columns: Mapping[str, str], date_format: str | None = None) -> Layout:
    """A layout from an explicit mapping in params: canonical name -> the file's column.

    ``date`` and one price are required; open, high, low, close and volume are optional (a
    series with one price column): the ones left out stay empty in the canonical table.
    """
    if "date" not in columns or not set(PRICES) & set(columns):
        raise ConfigError(
            f"data.sources: the columns mapping needs date and at least one of {list(PRICES)}; "
            f"it has {sorted(columns)}"
        )
    lowered = {k: str(v).strip().lower() for k, v in columns.items()}
    ticker_column = lowered.pop("ticker", None)
    return Layout("mapped", frozenset(lowered.values()), lowered, date_format, ticker_column)


def read_prices(
    path: Path | str,
    ticker: str | None = None,
    *,
    layout: Layout | None = None,
    date_order: str = "auto",
    content: bytes | None = None,
) -> IngestResult:
    """Read one CSV file in any known layout into the canonical table.

    Args:
        path: the CSV file (or, with ``content``, the URL it came from); only ever read.
        ticker: the ticker when the file carries none (default: the file's stem).
        layout: an explicit layout (from a column mapping); default: detected from the header.
        date_order: ``auto`` infers NN/NN/YYYY dates from the data; or ``month_first`` /
            ``day_first`` when the data cannot tell.
        content: the file's bytes, when already fetched.

    Returns:
        The canonical table sorted by ticker and date, and every repair made, with counts.

    Raises:
        DataError: the file is missing, empty, binary, of unknown layout, or has values that
            cannot be read unambiguously.
    """
    raw, repairs = _read_csv(path, content)
    header = [str(c).strip().lower() for c in raw.columns]
    layout = layout or detect_layout(raw.columns, path)
    missing = [c for c in layout.columns.values() if c not in header]
    if missing:
        raise DataError(
            path,
            f"column(s) {missing} not found",
            rows=[f"header: {header}"],
            expected=f"the columns of the mapping {layout.columns}",
        )
    original = {h: str(c).strip() for h, c in zip(header, raw.columns, strict=True)}
    raw.columns = header

    price_columns = [layout.columns[c] for c in PRICES if c in layout.columns]
    text = raw[price_columns].astype("string").apply(lambda col: col.str.strip())
    empty = text.isna() | text.isin(["", "-", "null", "NULL", "NaN", "nan"])
    keep = ~empty.all(axis=1)  # a row with some prices missing is left for the gate to judge
    if dropped := int((~keep).sum()):
        days = raw.loc[~keep, layout.columns["date"]].astype(str).str.strip().tolist()
        shown = ", ".join(days[:5]) + (f" and {len(days) - 5} more" if len(days) > 5 else "")
        repairs.append(
            f"{path}: dropped {dropped} row(s) with every price empty (no trading: {shown})"
        )
    raw = raw[keep].reset_index(drop=True)

    date_column = layout.columns["date"]
    dates, date_repairs = _parse_dates(
        raw[date_column].rename(original[date_column]), layout, path, date_order
    )
    frame = pd.DataFrame({"date": dates})
    if layout.ticker_column:
        named = raw[layout.ticker_column].astype(str)
    else:
        named = pd.Series([ticker or Path(str(path).split("?")[0]).stem] * len(raw), dtype=str)
    renamed = {name: sanitize_ticker(name) for name in named.unique()}
    frame["ticker"] = named.map(renamed).to_numpy()
    repairs += [
        f"{path}: renamed ticker {name!r} to {safe!r} (only letters, digits and . _ ^ - are "
        "safe in file and model names)"
        for name, safe in renamed.items()
        if safe != name
    ]
    absent = [c for c in OHLCV if c not in layout.columns]
    if absent:
        repairs.append(
            f"{path}: no {', '.join(absent)} column(s) in the mapping: left empty; "
            "the checks and inputs that need them are skipped"
        )
    for column in absent:
        frame[column] = np.nan
    for column in (c for c in OHLCV if c in layout.columns):
        source = layout.columns[column]
        values, notes = _parse_numbers(
            raw[source].rename(original[source]), column, path, frame["date"]
        )
        frame[column] = values
        repairs.extend(notes)

    frame, sort_repairs = _sort(frame, path)
    origin = {t: [str(path)] for t in frame["ticker"].unique()}
    missing = {t: absent for t in frame["ticker"].unique()} if absent else {}
    return IngestResult(frame, repairs + date_repairs + sort_repairs, origin, missing)


def combine(results: Iterable[IngestResult], tickers: Iterable[str] = ()) -> IngestResult:
    """Stack per-file tables and keep the chosen tickers.

    Where sources overlap on (ticker, date), the later source wins (re-ingesting newer data).
    Repeats inside one file are left for the validation gate to judge: which row is right
    is not unambiguous.
    """
    results = list(results)
    frame = pd.concat([r.frame.assign(_source=i) for i, r in enumerate(results)], ignore_index=True)
    repairs = [repair for r in results for repair in r.repairs]
    wanted = [sanitize_ticker(t) for t in tickers]
    if wanted:
        missing = sorted(set(wanted) - set(frame["ticker"]))
        if missing:
            raise ConfigError(
                f"data.tickers: {missing} not found in any source; "
                f"the sources hold {sorted(frame['ticker'].unique())}"
            )
        frame = frame[frame["ticker"].isin(wanted)]
    newest = frame.groupby(["ticker", "date"])["_source"].transform("max")
    if dropped := int((frame["_source"] != newest).sum()):
        repairs.append(f"dropped {dropped} (ticker, date) row(s) repeated by a later source")
    frame = frame[frame["_source"] == newest]
    frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    origin: dict[str, list[str]] = {}
    for r in results:
        for t, files in r.origin.items():
            origin.setdefault(t, []).extend(f for f in files if f not in origin.get(t, []))
    kept = set(frame["ticker"])
    # a column is absent for a ticker when every source of it lacks the column
    absent = {
        t: [c for c in OHLCV if all(c in r.absent.get(t, []) for r in holders)]
        for t in kept
        if (holders := [r for r in results if t in r.origin])
    }
    return IngestResult(
        frame[list(CANONICAL)],
        repairs,
        {t: f for t, f in origin.items() if t in kept},
        {t: cols for t, cols in absent.items() if cols},
    )


def _read_csv(path: Path | str, content: bytes | None) -> tuple[pd.DataFrame, list[str]]:
    """The file as text cells, and the text-level repairs made (BOM, CRLF, whitespace)."""
    if content is None:
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "file not found")
        content = path.read_bytes()
    if not content.strip():
        raise DataError(path, "file is empty", expected="a header line and daily rows")
    if b"\x00" in content[:4096]:
        raise DataError(
            path,
            "binary data (NUL bytes), not a CSV text file",
            expected="comma-separated text with a header line",
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            path,
            f"not a UTF-8 text file ({exc.reason} at byte {exc.start})",
            expected="UTF-8 (or ASCII) comma-separated text",
        ) from exc
    repairs = []
    if content.startswith(b"\xef\xbb\xbf"):
        repairs.append(f"{path}: removed a UTF-8 byte-order mark")
    if crlf := text.count("\r\n"):
        repairs.append(f"{path}: read {crlf} CRLF line ending(s) as plain newlines")
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise DataError(path, f"not a readable CSV file: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(path, "file is empty", expected="a header line and daily rows") from exc
    raw = raw.loc[:, [not str(c).startswith("Unnamed:") and str(c) != "" for c in raw.columns]]
    if len(raw.columns) == 1:
        name = str(raw.columns[0])
        for sep, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if sep in name:
                raise DataError(
                    path,
                    f"wrong delimiter: the header is split by {label}",
                    rows=[f"header: {name!r}"],
                    expected="comma-separated columns",
                )
    if raw.empty:
        raise DataError(path, "header only, no data rows", expected="at least one daily row")
    padded = raw.apply(lambda col: col.str.len() != col.str.strip().str.len())
    if n := int(padded.to_numpy().sum()):
        raw = raw.apply(lambda col: col.str.strip())
        repairs.append(f"{path}: stripped stray whitespace from {n} value(s)")
    return raw, repairs


def _parse_dates(
    values: pd.Series, layout: Layout, path: Path | str, date_order: str
) -> tuple[pd.Series, list[str]]:
    text = values.astype(str).str.strip()
    fmt, repairs = layout.date_format, []
    if fmt is None:
        fmt, repairs = _date_format(text, path, date_order)
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        rows = [f"line {i + 2}: {v!r}" for i, v in zip(values.index[bad], text[bad], strict=False)]
        raise DataError(
            path,
            f"{int(bad.sum())} date(s) cannot be parsed",
            column=values.name,
            rows=rows,
            expected=f"dates as {'YYYY-MM-DD' if fmt == 'ISO8601' else fmt}",
        )
    return parsed.astype("datetime64[ns]").reset_index(drop=True), repairs


def _date_format(text: pd.Series, path: Path | str, date_order: str) -> tuple[str, list[str]]:
    """The one date format the column allows; NN/NN/YYYY is decided by the data, not guessed."""
    if text.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return "ISO8601", []
    parts = text.str.extract(_NN_NN_YYYY)
    if parts.notna().all().all():
        sep = text.iloc[0][len(parts.iloc[0, 0])]
        first, second = parts[0].astype(int), parts[1].astype(int)
        if (first > 12).any() and (second > 12).any():
            raise DataError(
                path,
                "dates fit neither month-first nor day-first",
                column=text.name,
                rows=list(text[(first > 12) | (second > 12)][:5]),
                expected="NN/NN/YYYY with one consistent order",
            )
        if (first > 12).any() or (date_order == "day_first" and not (second > 12).any()):
            how = "from the data" if (first > 12).any() else "from data.date_order"
            return f"%d{sep}%m{sep}%Y", [f"{path}: dates read as day-first ({how})"]
        if (second > 12).any() or date_order == "month_first":
            how = "from the data" if (second > 12).any() else "from data.date_order"
            return f"%m{sep}%d{sep}%Y", [f"{path}: dates read as month-first ({how})"]
        raise DataError(
            path,
            "ambiguous dates: every NN/NN/YYYY value could be either order",
            column=text.name,
            rows=list(text[:3]),
            expected="set data.date_order to month_first or day_first",
        )
    if text.str.match(r"^[A-Za-z]{3} \d{1,2}, \d{4}$").all():
        return "%b %d, %Y", []
    return "ISO8601", []  # let the parse report the offending rows


def _parse_numbers(
    values: pd.Series, column: str, path: Path | str, dates: pd.Series
) -> tuple[pd.Series, list[str]]:
    """Numbers from vendor text: strips currency signs, thousands separators, K/M/B suffixes."""
    plain = pd.to_numeric(values, errors="coerce")  # the common case: plain decimal text
    if plain.notna().all():
        return plain.astype("float64").reset_index(drop=True), []
    text = values.astype("string").str.strip().reset_index(drop=True)
    repairs = []
    has_currency = text.str.contains(_CURRENCY, na=False)
    if n := int(has_currency.sum()):
        text = text.str.replace(_CURRENCY, "", regex=True).str.strip()
        repairs.append(f"{path}: stripped currency signs from {n} value(s) in {values.name}")
    has_thousands = text.str.match(_THOUSANDS, na=False)
    if n := int(has_thousands.sum()):
        text = text.where(~has_thousands, text.str.replace(",", "", regex=False))
        repairs.append(f"{path}: removed thousands separators from {n} value(s) in {values.name}")
    empty = text.isna() | text.isin(["", "-", "null", "NULL", "NaN", "nan"])
    numbers = pd.to_numeric(text.where(~empty), errors="coerce").astype("float64")
    if column == "volume":
        suffixed = text.str.extract(_SUFFIX)
        has_suffix = suffixed[0].notna()
        if n := int(has_suffix.sum()):
            scale = suffixed.loc[has_suffix, 1].str.upper().map(_MULTIPLIER)
            numbers[has_suffix] = suffixed.loc[has_suffix, 0].astype(float) * scale
            repairs.append(f"{path}: expanded K/M/B suffixes on {n} value(s) in {values.name}")
    bad = numbers.isna() & ~empty
    if bad.any():
        offending = values.to_numpy()[bad.to_numpy()]
        shown = [f"{d:%Y-%m-%d}: {v!r}" for d, v in zip(dates[bad], offending, strict=False)]
        raise DataError(
            path,
            f"{int(bad.sum())} non-numeric value(s)",
            column=values.name,
            rows=shown,
            expected=f"numbers in the {column} column",
        )
    return numbers, repairs


def _sort(frame: pd.DataFrame, path: Path | str) -> tuple[pd.DataFrame, list[str]]:
    keys = frame[["ticker", "date"]]
    if keys.equals(keys.sort_values(["ticker", "date"], kind="stable")):
        return frame.reset_index(drop=True), []
    frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return frame, [f"{path}: sorted {len(frame)} rows into ascending date order"]
