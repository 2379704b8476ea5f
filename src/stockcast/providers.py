"""Fresh days from the providers quants use: Yahoo Finance (``yfinance``) and A-shares
(``akshare``: East Money's daily bars, e.g. the seed's Kweichow Moutai, 600519).

A provider source keeps its own raw file under ``data/raw/`` (a Yahoo-layout CSV: Date,
Open, High, Low, Close, Volume). :func:`update` fetches only the days from the newest stored
row on, appends the new ones after the file's bytes and never rewrites a stored row: a
provider's revised past row is reported, not applied. Only the network is retried, with
back-off; a bad answer is an error at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stockcast.config import PROVIDERS
from stockcast.errors import DataError, FetchFailed
from stockcast.paths import atomic_write

__all__ = ["PROVIDERS", "Update", "fetch", "update"]
COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")
REVISION_TOLERANCE = 1e-6  # relative: a stored value that moved more than this is revised


@dataclass(frozen=True)
class Update:
    """What an update did: rows appended, and stored rows the provider now answers
    differently (reported, never applied)."""

    path: Path
    added: int
    revised: list[str] = field(default_factory=list)
    newest: str = ""


def fetch(provider: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The provider's daily bars of ``symbol`` from ``start`` to ``end`` (both included), as
    :data:`COLUMNS` with unadjusted prices."""
    if provider == "akshare":
        import akshare

        raw = akshare.stock_zh_a_hist(
            symbol=symbol,
            period="daily",
            start_date=f"{start:%Y%m%d}",
            end_date=f"{end:%Y%m%d}",
            adjust="",
        )
        if raw.empty:
            return pd.DataFrame(columns=list(COLUMNS))
        names = {"日期": "Date", "开盘": "Open", "最高": "High", "最低": "Low", "收盘": "Close"}
        frame = raw.rename(columns={**names, "成交量": "Volume"})
    elif provider == "yfinance":
        import yfinance

        raw = yfinance.Ticker(symbol).history(
            start=f"{start:%Y-%m-%d}",
            end=f"{end + pd.Timedelta(days=1):%Y-%m-%d}",
            interval="1d",
            auto_adjust=False,
            actions=False,
            raise_errors=True,
        )
        frame = raw.reset_index()
    else:
        raise ValueError(f"unknown provider {provider!r}; choose one of {list(PROVIDERS)}")
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.strftime("%Y-%m-%d")
    return frame[list(COLUMNS)].reset_index(drop=True)


def transient(exc: BaseException) -> bool:
    """A network fault worth another try (refused, reset, timed out), never a bad answer."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    network = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutError"}
    return bool(names & network) or isinstance(exc, ConnectionError | TimeoutError)


def fetch_with_retries(
    provider: str,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    retries: int = 3,
    backoff_seconds: float = 1.0,
) -> pd.DataFrame:
    """:func:`fetch`, retried ``retries`` times with back-off on network faults only."""
    for attempt in range(retries + 1):
        try:
            return fetch(provider, symbol, start, end)
        except Exception as exc:  # noqa: BLE001 - sorted into network faults and the rest
            if not transient(exc):
                raise
            if attempt == retries:
                raise FetchFailed(
                    f"{provider}:{symbol}", f"no answer after {retries} retries: {exc}"
                ) from exc
            time.sleep(backoff_seconds * 2**attempt)
    raise AssertionError("unreachable")


def stored(path: Path) -> pd.DataFrame:
    """The raw file's rows as written (strings); empty when there is none yet."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(COLUMNS), dtype=str)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns) != list(COLUMNS):
        raise DataError(path, f"columns {list(frame.columns)}", expected=f"{list(COLUMNS)}")
    return frame


def update(
    path: Path,
    provider: str,
    symbol: str,
    first_day: str,
    today: pd.Timestamp,
    retries: int = 3,
    backoff_seconds: float = 1.0,
) -> Update:
    """Fetch from the newest stored day (or ``first_day``) to ``today``; append the days after
    the newest stored one; report a stored day the provider now answers differently."""
    have = stored(path)
    newest = have["Date"].max() if len(have) else None
    start = pd.Timestamp(newest or first_day)
    fresh = fetch_with_retries(provider, symbol, start, today, retries, backoff_seconds)
    revised = []
    if newest is not None:
        known = have.set_index("Date")
        for row in fresh[fresh["Date"] <= newest].itertuples(index=False):
            if row.Date in known.index:
                revised += _differences(provider, symbol, row, known.loc[row.Date])
    new = fresh[fresh["Date"] > newest] if newest is not None else fresh
    new = new.dropna(subset=["Open", "High", "Low", "Close"]).sort_values("Date")
    if new.empty:
        return Update(path, 0, revised, newest or "")
    before = path.read_bytes() if path.exists() else b""
    text = new.to_csv(index=False, header=not before, lineterminator="\n").encode("utf-8")
    atomic_write(path, lambda tmp: tmp.write_bytes(before + text))
    return Update(path, len(new), revised, str(new["Date"].iloc[-1]))


def _differences(provider: str, symbol: str, row: object, kept: pd.Series) -> list[str]:
    out = []
    for column in COLUMNS[1:]:
        now, was = float(getattr(row, column)), float(kept[column])
        if abs(now - was) > REVISION_TOLERANCE * max(abs(was), 1.0):
            out.append(
                f"{provider}:{symbol} {row.Date}: {column} revised from {was!r} to {now!r} by "  # type: ignore[attr-defined]
                "the provider; the stored row is kept"
            )
    return out
