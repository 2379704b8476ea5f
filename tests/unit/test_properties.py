"""Properties, checked on generated data (hypothesis): windows and scalers, the transforms'
round trip, and every vendor rendering of one table parsing back to the same canonical frame."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from stockcast import transforms
from stockcast.config import TRANSFORMS
from stockcast.ingest import CANONICAL, read_prices
from stockcast.windows import make_windows

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def price_tables(draw, min_rows: int = 20, max_rows: int = 120) -> pd.DataFrame:
    """A canonical table of one ticker: positive OHLC with high >= max(open, close) and
    low <= min(open, close), four decimals, integer volumes, business days ascending."""
    n = draw(st.integers(min_rows, max_rows))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = np.round(
        50 * np.exp(np.cumsum(rng.normal(0, draw(st.sampled_from([0.001, 0.03])), n))), 4
    )
    open_ = np.round(close * (1 + rng.normal(0, 0.01, n)), 4)
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n)), 4)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n)), 4)
    start = draw(st.dates(pd.Timestamp("1995-01-01").date(), pd.Timestamp("2030-01-01").date()))
    return pd.DataFrame(
        {
            "date": pd.bdate_range(start, periods=n).astype("datetime64[ns]"),
            "ticker": "GEN",
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": (rng.integers(1, 10**6, n) * 10).astype("float64"),
        }
    )


# --- windows and scalers ------------------------------------------------------------------


@SETTINGS
@given(
    frame=price_tables(min_rows=60, max_rows=160),
    window=st.integers(1, 12),
    val_days=st.integers(1, 15),
    test_days=st.integers(1, 15),
    transform=st.sampled_from(TRANSFORMS),
    inputs=st.sampled_from([(), ("intraday",), ("range", "volume_change")]),
    anchor=st.sampled_from(["target", "close"]),
)
def test_no_target_inside_its_own_window_and_training_rows_scale_into_0_1(
    frame, window, val_days, test_days, transform, inputs, anchor
):
    ws = make_windows(frame, "open", window, val_days, test_days, transform, inputs, anchor)
    n = len(frame)
    first = transforms.context(0, transform, inputs)
    val_start, test_start = n - val_days - test_days, n - test_days
    # the spans: ordered, disjoint, and every validation and test row a target
    assert ws.train_idx.min() == first + window and ws.train_idx.max() == val_start - 1
    assert ws.val_idx.tolist() == list(range(val_start, test_start))
    assert ws.test_idx.tolist() == list(range(test_start, n))
    for idx in (ws.train_idx, ws.val_idx, ws.test_idx):
        x = ws.inputs(idx)
        assert x.shape == (len(idx), window, 1 + len(inputs))
        for k in (0, len(idx) // 2, len(idx) - 1):
            # the window is the `window` rows just before the target, never the target itself
            np.testing.assert_array_equal(x[k], ws.scaled[idx[k] - window : idx[k]])
        np.testing.assert_array_equal(ws.targets(idx), ws.scaled[idx, 0])
    # a training window never reaches into the rows a change lacks (row 0) nor past its span
    assert (ws.train_idx - window >= first).all() and (ws.train_idx < val_start).all()
    # every scaler was fitted on the training rows alone: they span exactly [0, 1]
    training = ws.scaled[first:val_start].astype("float64")
    np.testing.assert_allclose(training.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(training.max(axis=0), 1.0, atol=1e-6)


@SETTINGS
@given(
    frame=price_tables(min_rows=60, max_rows=120),
    transform=st.sampled_from(TRANSFORMS),
    anchor=st.sampled_from(["target", "close"]),
)
def test_scaled_targets_come_back_as_the_prices_they_were_cut_from(frame, transform, anchor):
    """to_prices(from_prices(x)) == x: the scaler and the transform inverted, per span."""
    ws = make_windows(frame, "open", 5, 10, 10, transform, (), anchor)
    for idx in (ws.train_idx, ws.val_idx, ws.test_idx):
        back = ws.to_prices(ws.targets(idx), idx)
        np.testing.assert_allclose(back, frame["open"].to_numpy()[idx], rtol=2e-5)


# --- transforms ---------------------------------------------------------------------------

positive = st.floats(0.01, 1e5, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(
    prices=st.lists(positive, min_size=2, max_size=50),
    anchor=st.lists(positive, min_size=50, max_size=50),
    transform=st.sampled_from(TRANSFORMS),
    anchored=st.booleans(),
)
def test_inverse_undoes_forward(prices, anchor, transform, anchored):
    p = np.array(prices)
    a = np.array(anchor[: len(p)]) if anchored else None
    changes = transforms.forward(p, transform, a)
    assert changes.shape == p.shape
    if transform != "level":
        assert changes[0] == 0.0  # row 0 of a change has no day before it
    previous = (p if a is None else a)[:-1]
    np.testing.assert_allclose(
        transforms.inverse(changes[1:], previous, transform), p[1:], rtol=1e-9
    )


# --- layout parsing -----------------------------------------------------------------------


def _csv(header: list[str], rows: list[list[str]], quote_all: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(
        out, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    )
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _yahoo(frame: pd.DataFrame, newest_first: bool) -> bytes:
    rows = [
        [
            f"{r.date:%Y-%m-%d}",
            repr(r.open),
            repr(r.high),
            repr(r.low),
            repr(r.close),
            repr(r.close),
            str(int(r.volume)),
        ]
        for r in frame.itertuples()
    ]
    header = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    return _csv(header, rows[::-1] if newest_first else rows, quote_all=False)


def _nasdaq(frame: pd.DataFrame, newest_first: bool) -> bytes:
    rows = [
        [
            f"{r.date:%m/%d/%Y}",
            f"${r.close}",
            str(int(r.volume)),
            f"${r.open}",
            f"${r.high}",
            f"${r.low}",
        ]
        for r in frame.itertuples()
    ]
    header = ["Date", "Close/Last", "Volume", "Open", "High", "Low"]
    return _csv(header, rows[::-1] if newest_first else rows, quote_all=False)


def _investing(frame: pd.DataFrame, newest_first: bool) -> bytes:
    def price(x: float) -> str:
        return f"{x:,.4f}"  # thousands separators, as Investing.com writes them

    def volume(v: float) -> str:
        return f"{v / 1000:.2f}K"  # every generated volume is a multiple of 10

    rows = [
        [
            f"{r.date:%b %d, %Y}",
            price(r.close),
            price(r.open),
            price(r.high),
            price(r.low),
            volume(r.volume),
            "0.00%",
        ]
        for r in frame.itertuples()
    ]
    header = ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"]
    return _csv(header, rows[::-1] if newest_first else rows, quote_all=True)


RENDERINGS = {"yahoo": _yahoo, "nasdaq": _nasdaq, "investing_com": _investing}


@SETTINGS
@given(
    frame=price_tables(),
    vendor=st.sampled_from(sorted(RENDERINGS)),
    newest_first=st.booleans(),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_every_vendor_rendering_parses_back_to_the_same_canonical_frame(
    frame, vendor, newest_first, crlf, bom
):
    content = RENDERINGS[vendor](frame, newest_first)
    if crlf:
        content = content.replace(b"\n", b"\r\n")
    if bom:
        content = b"\xef\xbb\xbf" + content
    result = read_prices(f"{vendor}/GEN.csv", content=content)
    parsed = result.frame
    assert list(parsed.columns) == list(CANONICAL)
    pd.testing.assert_frame_equal(
        parsed.reset_index(drop=True), frame[list(CANONICAL)], check_exact=False, rtol=1e-12
    )
    assert any("sorted" in r for r in result.repairs) == newest_first
    assert any("byte-order mark" in r for r in result.repairs) == bom
