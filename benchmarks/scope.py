"""Training scope: one model per ticker against one global model over all tickers.

Five real tickers (SH600519 from data/raw, four from benchmarks/data: tushare pro, Kaggle,
Quandl/NSE, Yahoo layouts) through the pipeline's own stages with the default windows, spans
and transform, no backtest folds, ``--epochs`` epochs with early stopping. Each scope runs in
a fresh process: train (the train flow, 2 worker processes) then evaluate. Prints the
training wall time, the number of fits, and per variant the mean over tickers of validation
and test RMSE/naive (below 1 beats doing nothing); the ratio is global / per_ticker.

    .venv/bin/python benchmarks/scope.py [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

SOURCES = [
    {"path": str(ROOT / "data/raw/SH600519.csv"), "ticker": "SH600519"},
    {"path": str(ROOT / "benchmarks/data/000001.SZ.csv")},
    {"path": str(ROOT / "benchmarks/data/MSFT_data.csv")},
    {"path": str(ROOT / "benchmarks/data/NSE-TATAGLOBAL.csv"), "ticker": "TATAGLOBAL"},
    {"path": str(ROOT / "benchmarks/data/^NSEI.csv"), "ticker": "NSEI"},
]
VARIANTS = ("simple_rnn", "lstm", "gru")


def one(root: Path, scope: str, epochs: int) -> dict:
    import flows.env  # noqa: F401
    from flows.runners import task_runner
    from flows.stages.train import train_variants as _train
    from stockcast import stages
    from stockcast.config import config_from_dict
    from stockcast.paths import Paths
    from stockcast.stages import drift, evaluate, ingest, validate, window  # noqa: F401

    cfg = config_from_dict(
        {
            "data": {"sources": SOURCES},
            "validate": {"max_gap_days": 60},  # warnings only; holidays and index closures
            "backtest": {"folds": 0},
            "features": {"target_transform": "log_return"},
            "train": {"scope": scope, "epochs": epochs, "patience": 5},
            "execution": {"max_workers": 2},
        }
    )
    paths = Paths(root)
    for stage in ("ingest", "validate", "window"):
        getattr(stages, stage).run(cfg, paths)
    start = time.perf_counter()
    _train.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)
    train_seconds = time.perf_counter() - start
    metrics = {t: r.to_json() for t, r in evaluate.run(cfg, paths).items()}
    fits = json.loads(paths.train_summary.read_text())
    return {"train_seconds": train_seconds, "metrics": metrics, "tickers": sorted(fits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(Path(args.root), args.one, args.epochs)))
        return

    from flows.server import prefect_api

    results = {}
    with prefect_api() as url:
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING"}
        for scope in ("per_ticker", "global"):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--one", scope, "--root", tmp]
                cmd += ["--epochs", str(args.epochs)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{scope} failed:\n{proc.stderr[-3000:]}")
            results[scope] = json.loads(line[len("RESULT ") :])
    tickers = results["per_ticker"]["tickers"]
    print(f"{len(tickers)} tickers ({', '.join(tickers)}); up to {args.epochs} epochs, patience 5")
    n = len(tickers)
    print(
        f"\n| scope | fits | train wall s |\n|---|---|---|\n"
        f"| per_ticker | {3 * n} | {results['per_ticker']['train_seconds']:.1f} |\n"
        f"| global | 3 | {results['global']['train_seconds']:.1f} |"
    )
    print(
        "\n| variant | scope | mean val RMSE/naive | mean test RMSE/naive | "
        "tickers below naive (test) |\n|---|---|---|---|---|"
    )
    for variant in VARIANTS:
        for scope in ("per_ticker", "global"):
            m = results[scope]["metrics"]
            val = [
                m[t][variant]["val_rmse_vs_naive"] for t in tickers if "test_rmse" in m[t][variant]
            ]
            test = [m[t][variant]["rmse_vs_naive"] for t in tickers if "test_rmse" in m[t][variant]]
            below = sum(x < 1 for x in test)
            print(
                f"| {variant} | {scope} | {sum(val) / len(val):.4f} | "
                f"{sum(test) / len(test):.4f} | {below} of {len(test)} |"
            )


if __name__ == "__main__":
    main()
