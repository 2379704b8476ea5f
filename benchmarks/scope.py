"""Training scope: one model per ticker against one global model over all tickers.

The real tickers (SH600519 from data/raw, four from benchmarks/data: tushare pro, Kaggle,
Quandl/NSE, Yahoo layouts) and ``--tickers`` less five generated ones, through the pipeline's
own stages with the default windows and spans, the features of ``params.yaml`` (transform,
anchor, inputs: with ``anchor: close`` a network that learns nothing falls back to the
``last_close`` rule), no backtest folds, ``--epochs`` epochs with early stopping. The generated
series are ten years of daily bars whose log returns follow an AR(1) (a third each with
coefficient 0, +0.15 and -0.15: a random walk, momentum, mean reversion) with volatility that
switches between calm (1 %) and storm (2.5 %) spells, so a network has something to learn on
two thirds of them and nothing on the rest. Each scope runs in a fresh process: train (the
train flow, 2 worker processes) then evaluate. Prints the training and evaluation wall time,
the fits, and per variant and group (real, generated) the mean over tickers of validation and
test RMSE against the ``last_close`` rule on the same rows (below 1 beats it) and how many
tickers beat it.

    .venv/bin/python benchmarks/scope.py [--tickers 50] [--epochs 5] [--variants gru]
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

import numpy as np
import pandas as pd

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
DAYS = 2520  # ten years of trading days


def write_generated(raw: Path, n: int, seed: int = 0) -> None:
    """``n`` Yahoo-layout CSVs: AR(1) log returns in volatility regimes (see the module)."""
    from benchmarks.scale import write_yahoo

    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2014-01-02", periods=DAYS)
    for k in range(n):
        phi = (0.0, 0.15, -0.15)[k % 3]
        sigma = np.empty(DAYS)
        day, storm = 0, False
        while day < DAYS:
            spell = int(rng.integers(60, 250))
            sigma[day : day + spell] = 0.025 if storm else 0.01
            day, storm = day + spell, not storm
        returns = np.empty(DAYS)
        returns[0] = 0.0
        shocks = rng.normal(0, 1, DAYS) * sigma
        for t in range(1, DAYS):
            returns[t] = phi * returns[t - 1] + shocks[t]
        close = 50 * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, 0.002, DAYS))
        write_yahoo(raw / f"G{k:03d}.csv", dates, open_, close, rng)


def one(root: Path, scope: str, epochs: int, tickers: int, variants: list[str]) -> dict:
    import flows.env  # noqa: F401
    from flows.runners import task_runner
    from flows.stages.train import train_variants as _train
    from stockcast import stages
    from stockcast.config import config_from_dict, load_config
    from stockcast.paths import Paths
    from stockcast.stages import drift, evaluate, ingest, validate, window  # noqa: F401

    project = load_config(ROOT / "params.yaml").features
    features = {
        "target_transform": project.target_transform,
        "anchor": project.anchor,
        "inputs": list(project.inputs),
    }
    generated = max(0, tickers - len(SOURCES))
    write_generated(root / "generated", generated)
    sources = SOURCES + ([{"path": str(root / "generated")}] if generated else [])
    cfg = config_from_dict(
        {
            "data": {"sources": sources},
            "validate": {"max_gap_days": 60},  # warnings only; holidays and index closures
            "backtest": {"folds": 0},
            # the project's features (params.yaml): the anchor and inputs a network needs
            "features": features,
            "train": {"scope": scope, "epochs": epochs, "patience": 2, "variants": variants},
            "execution": {"max_workers": 2},
        }
    )
    paths = Paths(root)
    for stage in ("ingest", "validate", "window"):
        getattr(stages, stage).run(cfg, paths)
    start = time.perf_counter()
    _train.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = {t: r.to_json() for t, r in evaluate.run(cfg, paths).items()}
    evaluate_seconds = time.perf_counter() - start
    fits = json.loads(paths.train_summary.read_text())
    return {
        "train_seconds": train_seconds,
        "evaluate_seconds": evaluate_seconds,
        # a global model's per-ticker copies say so in their worker: one fit per variant
        "fits": len(
            {
                v if str(r.get("worker", "")).startswith("global") else (t, v)
                for t, row in fits.items()
                for v, r in row.items()
            }
        ),
        "metrics": metrics,
        "tickers": sorted(fits),
    }


def versus_rule(m: dict, variant: str, span: str) -> float:
    """The variant's RMSE on ``span`` over the ``last_close`` rule's on the same rows."""
    mine, rule = m[variant].get(f"{span}_rmse"), m["last_close"].get(f"{span}_rmse")
    return mine / rule if mine is not None and rule else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=["gru"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = one(Path(args.root), args.one, args.epochs, args.tickers, args.variants)
        print("RESULT " + json.dumps(result))
        return

    from flows.server import prefect_api

    results = {}
    with prefect_api() as url:
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING"}
        for scope in ("per_ticker", "global"):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--one", scope, "--root", tmp]
                cmd += ["--epochs", str(args.epochs), "--tickers", str(args.tickers)]
                cmd += ["--variants", *args.variants]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{scope} failed:\n{proc.stderr[-3000:]}")
            results[scope] = json.loads(line[len("RESULT ") :])
    tickers = results["per_ticker"]["tickers"]
    real = [t for t in tickers if not t.startswith("G")]
    print(
        f"{len(tickers)} tickers ({len(real)} real: {', '.join(real)}; "
        f"{len(tickers) - len(real)} generated); variants {args.variants}, up to "
        f"{args.epochs} epochs, patience 2"
    )
    print("\n| scope | fits | train wall s | evaluate s |\n|---|---|---|---|")
    for scope in ("per_ticker", "global"):
        r = results[scope]
        print(f"| {scope} | {r['fits']} | {r['train_seconds']:.1f} | {r['evaluate_seconds']:.1f} |")
    ratio = results["global"]["train_seconds"] / results["per_ticker"]["train_seconds"]
    print(f"\ntraining time global / per_ticker: {ratio:.2f}x")
    print(
        "\n| variant | scope | tickers | mean val RMSE / last_close | mean test RMSE / "
        "last_close | beat last_close on test |\n|---|---|---|---|---|---|"
    )
    groups = {"real": real, "generated": [t for t in tickers if t.startswith("G")]}
    groups["all"] = tickers
    for variant in args.variants:
        for scope in ("per_ticker", "global"):
            m = results[scope]["metrics"]
            for group, names in groups.items():
                scored = [t for t in names if "test_rmse" in m[t].get(variant, {})]
                if not scored:
                    continue
                val = [versus_rule(m[t], variant, "val") for t in scored]
                test = [versus_rule(m[t], variant, "test") for t in scored]
                below = sum(x < 1 for x in test)
                print(
                    f"| {variant} | {scope} | {group} ({len(scored)}) | "
                    f"{np.nanmean(val):.4f} | {np.nanmean(test):.4f} | {below} of {len(test)} |"
                )


if __name__ == "__main__":
    main()
