"""Windowing: the pipeline's strided windows against the seed's Python loop.

Prints time and peak traced memory at 10^4, 10^5 and 10^6 rows, and the ratios, all measured
in this process (median of repeats). The seed's loop materialises a (rows x 60) copy; the
pipeline keeps target positions and a strided view, and tf.data gathers each batch.

    .venv/bin/python benchmarks/windowing.py
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd

from stockcast.windows import make_windows

WINDOW = 60


def seed_loop(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The seed's windowing (PKU class6 p38_rnn_stock.py)."""
    x, y = [], []
    for i in range(WINDOW, len(a)):
        x.append(a[i - WINDOW : i])
        y.append(a[i])
    x_arr = np.reshape(np.array(x), (len(x), WINDOW, 1))
    return x_arr, np.array(y)


def pipeline_windows(frame: pd.DataFrame) -> object:
    ws = make_windows(frame, "open", WINDOW, 250, 300, "level")
    ws.inputs(ws.train_idx[:64])  # one batch, as tf.data would gather it
    return ws


def measure(fn, arg, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn(arg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20


def main() -> None:
    rng = np.random.default_rng(0)
    print("| rows | seed loop s | pipeline s | speed-up | seed peak MiB | pipeline peak MiB |")
    print("|---|---|---|---|---|---|")
    for rows in (10**4, 10**5, 10**6):
        prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
        frame = pd.DataFrame(
            {
                "date": pd.bdate_range("1990-01-01", periods=rows),
                "ticker": "SYN",
                "open": prices,
                "high": prices * 1.01,
                "low": prices * 0.99,
                "close": prices,
                "volume": 1e6,
            }
        )
        repeats = 3 if rows < 10**6 else 1
        seed_s, seed_mb = measure(seed_loop, prices, repeats)
        ours_s, ours_mb = measure(pipeline_windows, frame, max(repeats, 3))
        print(
            f"| {rows:,} | {seed_s:.3f} | {ours_s:.4f} | {seed_s / ours_s:.0f}x "
            f"| {seed_mb:.0f} | {ours_mb:.1f} |"
        )


if __name__ == "__main__":
    main()
