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

``--daily N`` measures the daily job instead: a temporary project (git + DVC) of N synthetic
tickers, one day short, through one cold pipeline run (``python -m flows.repro``) and the
retrain flow's forecast (``python -m flows.retrain run``, no new rows); then one day appended to
every ticker and the retrain flow run again, as the schedule would: the warm day, every stage
included. Prints each run's wall time and peak RSS (the whole process tree, sampled) and what
the warm day did (fits, warm or cold, forecasts, ledger rows scored):

    .venv/bin/python benchmarks/scale.py --daily 500 [--years 10] [-S train.warm_epochs=1]
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
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

DAYS = 2520  # 10 years of trading days


def write_tickers(raw: Path, n: int, seed: int = 0, days: int = DAYS) -> None:
    """Yahoo-layout CSVs of geometric random walks with consistent daily bars."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2014-01-02", periods=days)
    for k in range(n):
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, days)))
        open_ = close * (1 + rng.normal(0, 0.004, days))
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


# The daily job at scale: one GRU over every ticker (``train.scope: global``), no walk-forward
# folds (each would be one more pass over every ticker's windows on a cold day), one epoch cold
# and one warm: an epoch over 500 tickers' ten years is about 20 minutes on 2 cores.
DAILY_PARAMS = [
    "data.sources=[{path: data/raw}]",
    "train.scope=global",
    "train.variants=[gru]",
    "train.epochs=1",
    "train.warm_epochs=1",
    "backtest.folds=0",
]


def timed(cmd: list[str], root: Path, env: dict[str, str], log: Path) -> tuple[float, Any]:
    """Run ``cmd`` in ``root``; its wall time and its process tree's memory, sampled twice a
    second (a :class:`benchmarks.memory.Sampler`). Its output goes to ``log``."""
    from benchmarks.memory import Sampler

    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        rss = Sampler(every=0.5, pid=proc.pid)
        rss.start()
        proc.wait()
    rss.halt.set()
    rss.join()
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = log.read_text().splitlines()[-30:]
        raise SystemExit(f"{' '.join(cmd)} failed ({log}):\n" + "\n".join(tail))
    return wall, rss


def daily(n: int, years: float, overrides: list[str], keep: Path | None) -> None:
    """The daily job on ``n`` tickers: cold, the day's forecast, one new day warm."""
    from benchmarks.end_to_end import copy_project
    from benchmarks.replay import fits_since, ledger
    from flows.server import prefect_api

    days = int(round(252 * years))
    params = DAILY_PARAMS + overrides
    print(f"{n} tickers x {days} trading days; params: {' '.join(params)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, prefect_api() as api:
        root = Path(tmp)
        logs = keep or root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = copy_project(root, params)
        env["PREFECT_API_URL"] = api
        env.pop("MLFLOW_TRACKING_URI", None)  # the project's own SQLite store, in the copy
        (root / "data/raw/SH600519.csv").unlink()
        full = root / "full"
        write_tickers(full, n, days=days)
        last: dict[str, str] = {}
        for path in sorted(full.glob("*.csv")):
            lines = path.read_text().splitlines()
            (root / "data/raw" / path.name).write_text("\n".join(lines[:-1]) + "\n")
            last[path.name] = lines[-1]
        for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "scale start"]):
            subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
        python = sys.executable
        rows = []
        cold, rss = timed([python, "-m", "flows.repro"], root, env, logs / "cold.log")
        rows.append(("cold pipeline run (`flows.repro`)", cold, rss))
        print(f"cold: {cold:.1f} s", flush=True)
        wall, rss = timed([python, "-m", "flows.retrain", "run"], root, env, logs / "day0.log")
        rows.append(("the day's forecast, no new rows (`flows.retrain run`)", wall, rss))
        for name, line in last.items():  # the new day, for every ticker
            with open(root / "data/raw" / name, "a") as fh:
                fh.write(line + "\n")
        began = time.time()
        wall, rss = timed([python, "-m", "flows.retrain", "run"], root, env, logs / "day1.log")
        rows.append(("**the new day (`flows.retrain run`)**", wall, rss))
        print("\n| run | wall s | wall min | peak RSS MiB, all processes | largest process MiB |")
        print("|---|---|---|---|---|")
        for label, seconds, r in rows:
            print(
                f"| {label} | {seconds:.1f} | {seconds / 60:.1f} | {r.peak / 2**20:.0f} "
                f"| {r.largest / 2**20:.0f} |"
            )
        print(
            f"\nthe new day: {wall / 60:.1f} min (target <= 30), peak RSS "
            f"{rss.peak / 2**30:.2f} GiB (target <= 4); {wall / cold:.2f}x the cold run"
        )
        record = json.loads((root / "models/continuation.json").read_text())
        print(f"train: {'warm' if record['warm'] else 'cold'} ({record['reason']})")
        print(
            f"fit records dated the new day: {fits_since(root, began)}"
            " (global: one fit, recorded on each ticker)"
        )
        table = ledger(root, env)
        scored = [r for r in table if r["actual"]]
        print(f"ledger: {len(table)} forecasts, {len(scored)} scored (expected {n} scored)")


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
    parser.add_argument("--daily", type=int, help="the daily job on this many tickers")
    parser.add_argument("--years", type=float, default=DAYS / 252, help="history, --daily")
    parser.add_argument("-S", dest="overrides", action="append", default=[], help="--daily")
    parser.add_argument("--keep-logs", type=Path, help="--daily: each run's output here")
    args = parser.parse_args()
    if args.daily:
        daily(args.daily, args.years, args.overrides, args.keep_logs)
        return
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
