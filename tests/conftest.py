"""Shared fixtures: tiny synthetic data and real libraries in temporary folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import flows.env  # noqa: F401  (telemetry off for every library under test)

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # tests run on CPU, as CI does
# In-process flows start Prefect's temporary server; on a loaded 2-core machine it can take
# longer than Prefect's default 20 s to answer.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

PROJECT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def synthetic_prices(
    n: int = 400, ticker: str = "TEST", seed: int = 0, start: str = "2015-01-05"
) -> pd.DataFrame:
    """A canonical table of a noisy trending random walk with consistent daily bars."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, n)))
    open_ = close * (1 + rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    return pd.DataFrame(
        {
            "date": pd.bdate_range(start, periods=n),
            "ticker": ticker,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 100_000, n).astype("float64"),
        }
    )


@pytest.fixture(autouse=True)
def _fresh_downloads():
    """Each test downloads its URL sources afresh (a run's downloads are kept for the run)."""
    from stockcast.sources import forget_fetched

    forget_fetched()


@pytest.fixture
def prices() -> pd.DataFrame:
    return synthetic_prices()


def write_yahoo_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a canonical table as a Yahoo Finance CSV."""
    out = frame.rename(columns=str.title).drop(columns="Ticker")
    out.insert(5, "Adj Close", out["Close"])
    out["Date"] = out["Date"].dt.strftime("%Y-%m-%d")
    out.to_csv(path, index=False)
    return path


def one_ticker_with_a_fold(root: Path) -> Path:
    """AAA's windows and one backtest fold's, written where the train stage reads them (the
    project at ``root``); returns the windows' folder."""
    from stockcast.paths import Paths
    from stockcast.windows import make_windows, write_windows

    processed = Paths(root).processed
    ws = make_windows(synthetic_prices(200, "AAA"), "open", 10, 30, 30, "log_return")
    fold = make_windows(synthetic_prices(170, "AAA"), "open", 10, 30, 30, "log_return")
    write_windows([ws], processed, {"AAA": [fold]})
    return processed


@contextmanager
def json_receiver() -> Iterator[tuple[int, list[dict]]]:
    """An HTTP server on loopback that answers every POST with 200: ``(port, bodies)``, the
    list filling with the JSON bodies it is sent (a webhook, Apprise's json:// service)."""
    import http.server
    import json
    import threading

    got: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server spelling
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
