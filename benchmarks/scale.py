"""Scale: synthetic tickers x 10 years of daily prices through every stage of the pipeline.

Each size runs in a fresh process over the pipeline's own stage functions: ingest (one CSV per
ticker, Yahoo layout), validate (the Great Expectations gate, every ticker in one batch),
drift, window, training with ``epochs: 1`` through the train flow (Prefect, the default
runner, 2 workers; ``--scope global`` trains one model on every ticker's windows), then
evaluate and register (MLflow, a SQLite store in the run's folder). Prints seconds per stage,
seconds per ticker, the ratio to the smallest size (linear growth keeps seconds per ticker
flat), validation's seconds per ticker, and peak RSS of the stage process and of the largest
training worker. Sizes above ``--train-up-to`` run the data stages only.

    .venv/bin/python benchmarks/scale.py [--sizes 10 50 100] [--variants gru]
        [--scope per_ticker|global] [--train-up-to N] [--no-register]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

DAYS = 2520  # 10 years of trading days


def write_tickers(raw: Path, n: int, seed: int = 0) -> None:
    """Yahoo-layout CSVs of geometric random walks with consistent daily bars."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2014-01-02", periods=DAYS)
    for k in range(n):
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, DAYS)))
        open_ = close * (1 + rng.normal(0, 0.004, DAYS))
        write_yahoo(raw / f"T{k:03d}.csv", dates, open_, close, rng)


def write_yahoo(
    path: Path, dates: pd.DatetimeIndex, open_: np.ndarray, close: np.ndarray, rng
) -> None:
    """One Yahoo-layout CSV of daily bars: high and low a random reach beyond open and close,
    a random volume."""
    days = len(dates)
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, days))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, days))
    pd.DataFrame(
        {
            "Date": dates.strftime("%Y-%m-%d"),
            "Open": open_.round(4),
            "High": high.round(4),
            "Low": low.round(4),
            "Close": close.round(4),
            "Adj Close": close.round(4),
            "Volume": rng.integers(10_000, 1_000_000, days),
        }
    ).to_csv(path, index=False)


def one(
    root: Path,
    n: int,
    variants: list[str],
    train: bool = True,
    scope: str = "per_ticker",
    register: bool = True,
) -> dict:
    """Every stage for ``n`` tickers in this process; seconds per stage and peak RSS."""
    import flows.env  # noqa: F401
    from flows.runners import task_runner
    from flows.stages.train import train_variants as _train
    from stockcast import stages
    from stockcast.config import config_from_dict
    from stockcast.paths import Paths
    from stockcast.stages import drift, evaluate, ingest, validate, window  # noqa: F401
    from stockcast.stages import register as register_stage

    write_tickers(root / "data/raw", n)
    cfg = config_from_dict(
        {
            "data": {"sources": [{"path": "data/raw"}]},
            "backtest": {"folds": 0},
            "features": {"target_transform": "log_return"},
            "train": {"variants": variants, "epochs": 1, "patience": 1, "scope": scope},
            "execution": {"max_workers": 2},
        }
    )
    paths = Paths(root)
    seconds = {}
    for stage in ("ingest", "validate", "drift", "window"):
        start = time.perf_counter()
        getattr(stages, stage).run(cfg, paths)
        seconds[stage] = time.perf_counter() - start
    stage_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not train:
        return {"seconds": seconds, "peak_rss_mib": stage_rss, "worker_rss_mib": 0, "errors": []}
    start = time.perf_counter()
    _train.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    stages.evaluate.run(cfg, paths)
    seconds["evaluate"] = time.perf_counter() - start
    if register:
        start = time.perf_counter()
        register_stage.run(cfg, paths)
        seconds["register"] = time.perf_counter() - start
    summary = json.loads(paths.train_summary.read_text())
    errors = [r["error"] for t in summary.values() for r in t.values() if r["error"]]
    return {
        "seconds": seconds,
        "stage_rss_mib": stage_rss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "fits": sum(len(t) for t in summary.values()),
        "errors": errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--variants", nargs="+", default=["gru"])
    parser.add_argument("--scope", choices=("per_ticker", "global"), default="per_ticker")
    parser.add_argument(
        "--train-up-to", type=int, default=10**9, help="train only at sizes up to this"
    )
    parser.add_argument("--no-register", action="store_true", help="stop after evaluate")
    parser.add_argument("--no-train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = one(
            Path(args.root),
            args.one,
            args.variants,
            not args.no_train,
            args.scope,
            not args.no_register,
        )
        print("RESULT " + json.dumps(result))
        return

    from flows.server import prefect_api

    stages = ["ingest", "validate", "drift", "window", "train", "evaluate"]
    stages += [] if args.no_register else ["register"]
    from stockcast.config import ExecutionConfig

    runner = ExecutionConfig().runner
    print(
        f"{DAYS} rows per ticker; training: {args.variants}, scope {args.scope}, 1 epoch, "
        f"runner {runner} x 2"
    )
    print(
        "| tickers | "
        + " | ".join(f"{s} s" for s in stages)
        + " | total s | s per ticker | vs smallest | validate s per ticker | all but train s"
        + " | peak RSS MiB: stages / with training / largest child |"
    )
    print("|---|" + "---|" * (len(stages) + 6), flush=True)
    first = None
    with prefect_api() as url:
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING"}
        env.pop("MLFLOW_TRACKING_URI", None)  # a SQLite store in the run's folder
        for n in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--one", str(n), "--root", tmp]
                cmd += ["--no-train"] if n > args.train_up_to else []
                cmd += ["--no-register"] if args.no_register else []
                cmd += ["--scope", args.scope, "--variants", *args.variants]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"| {n} | failed: {proc.stderr.strip().splitlines()[-3:]} |", flush=True)
                continue
            r = json.loads(line[len("RESULT ") :])
            sec = r["seconds"]
            total = sum(sec.values())
            cells = " | ".join(f"{sec[s]:.1f}" if s in sec else "not run" for s in stages)
            rest = f"{sec['validate'] / n:.3f} | {total - sec.get('train', 0):.1f}"
            if "train" not in sec:  # data stages only: no per-ticker ratio across sizes
                print(
                    f"| {n} | {cells} | {total:.1f} | | | {rest} | "
                    f"{r['peak_rss_mib']:.0f} / - / - |",
                    flush=True,
                )
                continue
            per = total / n
            first = first or per
            print(
                f"| {n} | {cells} | {total:.1f} | {per:.2f} | {per / first:.2f}x | {rest} | "
                f"{r['stage_rss_mib']:.0f} / {r['peak_rss_mib']:.0f} / {r['worker_rss_mib']:.0f} |",
                flush=True,
            )
            if r["errors"]:
                print(f"  errors: {r['errors']}", flush=True)


if __name__ == "__main__":
    main()
