"""Spans, leakage and the windows themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stockcast.errors import SeriesError
from stockcast.windows import MinMaxScaler, WindowSet, make_windows, read_windows, write_windows


def _seed_loop(a: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed's own windowing: for i in range(60, n): x.append(a[i-60:i])."""
    x, y = [], []
    for i in range(window, len(a)):
        x.append(a[i - window : i])
        y.append(a[i])
    return np.array(x), np.array(y)


def test_every_row_of_the_validation_and_test_spans_is_a_target(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    n = len(prices)
    np.testing.assert_array_equal(ws.test_idx, np.arange(n - 100, n))  # all 100, not 80
    np.testing.assert_array_equal(ws.val_idx, np.arange(n - 160, n - 100))
    assert ws.train_idx[0] == 20 and ws.train_idx[-1] == n - 161  # training windows stay inside
    # The first test target's window reaches back into the validation rows, known by then.
    first = ws.inputs(ws.test_idx[:1])[0, :, 0]
    np.testing.assert_array_equal(first, ws.scaled[n - 120 : n - 100, 0])


def test_scaler_is_fitted_on_the_training_span_only(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    train = prices["open"].to_numpy()[: len(prices) - 160]
    assert ws.scaler == MinMaxScaler(train.min(), train.max())
    # Changing every validation and test price changes nothing the model is fitted with.
    shocked = prices.copy()
    shocked.loc[len(prices) - 160 :, "open"] *= 10
    ws2 = make_windows(shocked, "open", window=20, val_days=60, test_days=100)
    assert ws2.scaler == ws.scaler
    np.testing.assert_array_equal(ws2.inputs(ws2.train_idx), ws.inputs(ws.train_idx))


def test_windows_equal_the_seed_loop(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    x, y = _seed_loop(ws.scaled[:, 0], 20)
    idx = ws.train_idx
    np.testing.assert_array_equal(ws.inputs(idx)[..., 0], x[idx - 20])
    np.testing.assert_array_equal(ws.targets(idx), y[idx - 20])


def test_inputs_gather_only_the_windows_asked_for():
    import tracemalloc

    from tests.conftest import synthetic_prices

    ws = make_windows(synthetic_prices(20_000), "open", window=60, val_days=300, test_days=300)
    idx = ws.train_idx[:2]
    tracemalloc.start()
    x = ws.inputs(idx)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert x.shape == (2, 60, 1)
    np.testing.assert_array_equal(x[1, :, 0], ws.scaled[idx[1] - 60 : idx[1], 0])
    # a (rows x window) copy of the series would be 20_000 x 60 x 4 B = 4.8 MB
    assert peak < 100 * x.nbytes, peak


def test_naive_is_yesterdays_price(prices):
    ws = make_windows(prices, "open", window=20, val_days=60, test_days=100)
    np.testing.assert_array_equal(ws.naive(ws.test_idx), prices["open"].to_numpy()[ws.test_idx - 1])


def test_too_few_rows_says_how_many_are_needed(prices):
    with pytest.raises(SeriesError) as raised:
        make_windows(prices, "open", window=60, val_days=60, test_days=300)
    error, ticker = raised.value, prices["ticker"].iloc[0]
    assert (error.ticker, error.problem, error.column) == (ticker, "400 rows are too few", "open")
    assert error.expected == "at least 480 rows (window 60, validation 60, test 300)"
    # exactly enough: two windows' worth of rows before the validation span
    ws = make_windows(prices, "open", window=20, val_days=100, test_days=260)
    assert ws.scaled.dtype == np.float32 and int(ws.val_idx[0]) == 40


def test_a_constant_training_span_names_its_ticker_and_column(prices):
    flat = prices.assign(open=50.0)
    with pytest.raises(SeriesError) as raised:
        make_windows(flat, "open", window=10, val_days=50, test_days=50)
    error = raised.value
    assert (error.ticker, error.column) == (prices["ticker"].iloc[0], "open")
    assert error.problem == "constant series (50.0) in the training span: cannot scale"
    with pytest.raises(SeriesError) as alone:
        MinMaxScaler.fit(np.array([3.0, 3.0]))
    assert alone.value.ticker == ""


def test_scaler_round_trip_and_constant_series():
    s = MinMaxScaler.fit(np.array([2.0, 4.0, 6.0]))
    np.testing.assert_allclose(s.inverse(s.transform(np.array([1.0, 5.0, 9.0]))), [1, 5, 9])
    with pytest.raises(SeriesError, match="constant series"):
        MinMaxScaler.fit(np.array([3.0, 3.0]))


def test_save_and_load_round_trip(prices, tmp_path: Path):
    ws = make_windows(prices, "close", window=20, val_days=60, test_days=100)
    write_windows([ws], tmp_path)
    (loaded,) = read_windows(tmp_path)
    assert isinstance(loaded, WindowSet) and loaded.ticker == ws.ticker
    np.testing.assert_array_equal(loaded.scaled, ws.scaled)
    np.testing.assert_array_equal(loaded.test_idx, ws.test_idx)
    assert loaded.scaler == ws.scaler


def test_every_field_survives_save_and_load(prices, tmp_path: Path):
    from stockcast.windows import read_folds

    ws = make_windows(prices, "open", 7, 30, 30, "log_return", ("intraday", "range"), "close")
    fold = make_windows(prices.iloc[:-30], "open", 7, 30, 30, "log_return", ("intraday",))
    write_windows([ws], tmp_path, {ws.ticker: [fold]})
    (loaded,) = read_windows(tmp_path)
    for name in ("ticker", "window", "transform", "target", "extra_inputs", "anchor"):
        assert getattr(loaded, name) == getattr(ws, name), name
        assert type(getattr(loaded, name)) is type(getattr(ws, name)), name
    assert loaded.scaler == ws.scaler and loaded.extra_scalers == ws.extra_scalers
    for name in ("dates", "prices", "scaled", "train_idx", "val_idx", "test_idx", "ohlcv"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(ws, name), err_msg=name)
    (again,) = read_folds(tmp_path, ws.ticker)
    assert again.extra_inputs == ("intraday",) and again.anchor == "target"
    np.testing.assert_array_equal(again.test_idx, fold.test_idx)
    write_windows([ws], tmp_path / "nofolds")
    assert read_folds(tmp_path / "nofolds", ws.ticker) == []


def test_a_set_without_raw_prices_or_anchor_loads_as_it_was_made(prices, tmp_path: Path):
    """No OHLCV saved comes back as None (not a row of zeros); a file written before the
    anchor existed measures changes from the target, as it did then."""
    import dataclasses

    ws = dataclasses.replace(make_windows(prices, "close", 7, 30, 30), ohlcv=None)
    ws.save(tmp_path / "bare.npz")
    bare = WindowSet.load(tmp_path / "bare.npz")
    assert bare.ohlcv is None and bare.target == "close"
    older = make_windows(prices, "open", 7, 30, 30, anchor="close")
    older.save(tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "anchor"}
    np.savez(tmp_path / "old.npz", **arrays)
    assert WindowSet.load(tmp_path / "old.npz").anchor == "target"


def test_the_manifest_as_a_whole_value(prices, tmp_path: Path):
    """What the train stage plans from and a person reads: every entry, exactly."""
    from stockcast.windows import read_manifest

    ws = make_windows(prices, "open", 7, 30, 30, "log_return")
    fold = make_windows(prices.iloc[:-30], "open", 7, 30, 30, "log_return")
    other = make_windows(prices.assign(ticker="BBB"), "open", 7, 30, 30)
    where = tmp_path / "data" / "processed"  # not there yet: made with its parents
    path = write_windows([ws, other], where, {ws.ticker: [fold, fold]})
    assert path == where / "manifest.json"
    manifest = read_manifest(where)
    assert len(prices) == 400
    assert manifest == {
        ws.ticker: {
            "file": f"{ws.ticker}.npz",
            "rows": len(prices),
            "window": 7,
            "train": 400 - 60 - 7 - 1,  # a change needs the day before its first window
            "val": 30,
            "test": 30,
            "first_date": str(prices["date"].iloc[0].date()),
            "last_date": str(prices["date"].iloc[-1].date()),
            "scaler": {"low": ws.scaler.low, "high": ws.scaler.high},
            "transform": "log_return",
            "folds": [f"{ws.ticker}.fold1.npz", f"{ws.ticker}.fold2.npz"],
        },
        "BBB": {
            "file": "BBB.npz",
            "rows": len(prices),
            "window": 7,
            "train": 400 - 60 - 7,
            "val": 30,
            "test": 30,
            "first_date": str(prices["date"].iloc[0].date()),
            "last_date": str(prices["date"].iloc[-1].date()),
            "scaler": {"low": other.scaler.low, "high": other.scaler.high},
            "transform": "level",
            "folds": [],
        },
    }
    assert sorted(p.name for p in where.iterdir()) == sorted(
        ["manifest.json", "BBB.npz", f"{ws.ticker}.npz"]
        + [f"{ws.ticker}.fold1.npz", f"{ws.ticker}.fold2.npz"]
    )
