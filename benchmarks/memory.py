"""Memory over many fits: N synthetic tickers x 3 variants, main models only (per_ticker,
backtest off), through the train flow on the ``processes`` runner, with worker processes
replaced every ``execution.fits_per_worker`` fits.

A sampler thread adds up the RSS of this process and every descendant (the pool workers)
every 0.2 s. Printed: the peak, and the RSS just after fit 30 and after the last fit (from
each fit's end time), for the recycled run and, with ``--reference``, for the same fits on
one pool for the whole stage (``fits_per_worker: 0``) in the same process.

    .venv/bin/python benchmarks/memory.py [--tickers 100] [--fits-per-worker 25] [--reference]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

GIB = 1024**3


class Sampler(threading.Thread):
    """Total RSS of a process tree (this process's, or ``pid``'s), sampled until stopped:
    (time, bytes) pairs, and the largest single process seen."""

    def __init__(self, every: float = 0.2, pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.every, self.pid, self.samples, self.halt = every, pid, [], threading.Event()
        self.largest = 0

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:  # ended before the first sample
            return
        while not self.halt.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:  # the watched process has ended
                procs = []
            sizes = []
            for proc in procs:
                try:
                    sizes.append(proc.memory_info().rss)
                except psutil.Error:
                    pass
            self.samples.append((time.time(), sum(sizes)))
            self.largest = max(self.largest, *sizes, 0)
            time.sleep(self.every)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def at(self, when: float) -> int:
        """The first sample at or after ``when`` (the RSS just after a fit ended)."""
        return next((rss for t, rss in self.samples if t >= when), self.samples[-1][1])


def run(root: Path, tickers: int, fits_per_worker: int, workers: int) -> dict:
    from prefect.task_runners import ProcessPoolTaskRunner

    from flows.stages.train import train_variants
    from stockcast.config import config_from_dict
    from stockcast.paths import Paths
    from stockcast.windows import make_windows, write_windows
    from tests.conftest import synthetic_prices

    paths = Paths(root)
    if not paths.processed.exists():
        sets = [
            make_windows(synthetic_prices(400, f"T{k:03d}", seed=k), "open", 20, 60, 60)
            for k in range(tickers)
        ]
        write_windows(sets, paths.processed, {})
    cfg = config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "backtest": {"folds": 0},
            "train": {"units": [16], "epochs": 1, "patience": 1, "batch_size": 64},
            "execution": {
                "runner": "processes",
                "max_workers": workers,
                "fits_per_worker": fits_per_worker,
            },
        }
    )
    sampler = Sampler()
    sampler.start()
    started = time.perf_counter()
    train_variants.with_options(task_runner=ProcessPoolTaskRunner(max_workers=workers))(cfg, paths)
    wall = time.perf_counter() - started
    sampler.halt.set()
    sampler.join()
    summary = json.loads(paths.train_summary.read_text())
    ends = sorted(r["fit_ended"] for t in summary.values() for r in t.values())
    return {
        "fits": len(ends),
        "wall": wall,
        "peak": sampler.peak,
        "after_30": sampler.at(ends[min(29, len(ends) - 1)]),
        "after_last": sampler.at(ends[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--fits-per-worker", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="also one pool for all fits")
    args = parser.parse_args()

    import flows.env  # noqa: F401  (quiet TensorFlow before any import of it)
    from flows.server import prefect_api

    rows = []
    with tempfile.TemporaryDirectory() as tmp, prefect_api() as url:
        # before Prefect is first imported: the pool's workers inherit the URL, or each
        # would start a temporary server of its own (as flows.repro does)
        os.environ["PREFECT_API_URL"] = url
        configs = [args.fits_per_worker] + ([0] if args.reference else [])
        for fits_per_worker in configs:
            r = run(Path(tmp), args.tickers, fits_per_worker, args.workers)
            rows.append((fits_per_worker, r))
    print(
        f"\n{args.tickers} tickers x 3 variants, main models, processes runner, "
        f"{args.workers} workers\n"
    )
    print("| fits_per_worker | fits | wall s | peak RSS GiB | RSS after fit 30 | after last fit "
          "| last / 30 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for fits_per_worker, r in rows:
        label = fits_per_worker or "0 (one pool)"
        print(
            f"| {label} | {r['fits']} | {r['wall']:.0f} | {r['peak'] / GIB:.2f} | "
            f"{r['after_30'] / GIB:.2f} | {r['after_last'] / GIB:.2f} | "
            f"{r['after_last'] / r['after_30']:.2f} |"
        )


if __name__ == "__main__":
    main()
