"""Feature configuration x candidate on the seed's job, through the pipeline's own stages.

For each configuration (target transform, extra inputs, anchor) it runs the window stage,
trains every variant on the main split and each backtest fold (3 at a time in threads, as the
default runner does), runs the evaluate stage and the registry's choice rule. It prints, per
configuration and candidate: backtest and validation RMSE against the best baseline of the
span with the Diebold-Mariano p-value, which candidate the rule registers, and the test
span (read after, never used to choose): RMSE, x naive, x last close with its DM p-value, and
the seed-comparable RMSE on the last 240 targets. Defaults are chosen on the backtest and
validation columns only.

    .venv/bin/python benchmarks/champion.py [--configs opens,close_anchor_intraday] [--epochs 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {  # name -> (target_transform, inputs, anchor)
    "opens": ("log_return", (), "target"),
    "close": ("log_return", ("close",), "target"),
    "close_intraday": ("log_return", ("close", "intraday"), "target"),
    "anchor_close": ("log_return", (), "close"),
    "anchor_close_intraday": ("log_return", ("intraday",), "close"),
    "anchor_close_close_intraday": ("log_return", ("close", "intraday"), "close"),
}


def run_config(name: str, epochs: int, workers: int) -> tuple[dict, str, float]:
    """Window, train, evaluate and choose for one configuration in a temporary project."""
    import pandas as pd

    from stockcast import pipeline
    from stockcast.config import load_config
    from stockcast.pipeline import Paths
    from stockcast.tracking import choose_candidate
    from stockcast.train import fit_variant
    from stockcast.windows import read_folds, read_windows

    transform, inputs, anchor = CONFIGS[name]
    cfg = load_config(ROOT / "params.yaml")
    cfg = replace(
        cfg,
        features=replace(cfg.features, target_transform=transform, inputs=inputs, anchor=anchor),
        train=replace(cfg.train, epochs=epochs),
    )
    paths = Paths(Path(tempfile.mkdtemp(prefix=f"champion-{name}-")))
    frame = pipeline.read_sources(cfg, Paths(ROOT)).frame
    pipeline.write_parquet(frame, paths.validated)
    started = time.perf_counter()
    jobs = []
    for ws in pipeline.window(cfg, paths):
        sets = [ws, *read_folds(paths.processed, ws.ticker)]
        for variant in cfg.train.variants:
            for fold, data in enumerate(sets):
                out = paths.variant_dir(ws.ticker, variant) / (f"fold{fold}" if fold else "")
                jobs.append((data, variant, fold, out))

    def fit(job: tuple) -> object:
        data, variant, fold, out = job
        return replace(fit_variant(data, variant, cfg.train, cfg.seed, out), fold=fold)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(fit, jobs))
    pipeline.write_train_summary(results, paths)
    report = pipeline.evaluate(cfg, paths)
    elapsed = time.perf_counter() - started
    (ws,) = read_windows(paths.processed)
    entry = report[ws.ticker]
    source = "backtest" if cfg.backtest.folds else "val"
    chosen, _ = choose_candidate(
        {n: s for n, s in entry.items() if isinstance(s, dict) and "kind" in s}, source
    )
    table = pd.read_csv(paths.predictions / f"{ws.ticker}.csv")
    seed_rows = table.iloc[cfg.window.window :]  # the seed's 240 targets
    for candidate, scores in entry.items():
        if isinstance(scores, dict) and "test_rmse" in scores:
            errors = seed_rows[candidate] - seed_rows["actual"]
            scores["seed240_rmse"] = float((errors**2).mean() ** 0.5)
            scores["epochs"] = next(
                (r.epochs_run for r in results if r.variant == candidate and r.fold == 0), 0
            )
    return entry, chosen, elapsed


def print_table(rows: list[tuple[str, dict, str, float]]) -> None:
    from stockcast.evaluate import against_best_baseline  # noqa: F401  (documents the metric)

    print(
        "| configuration | candidate | epochs | backtest × best baseline (DM p) | "
        "val × best baseline (DM p) | test RMSE | × naive | × best baseline (DM p) | "
        "80% / 95% coverage | RMSE, seed's 240 targets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, entry, chosen, _ in rows:
        for candidate, s in entry.items():
            if not isinstance(s, dict) or "test_rmse" not in s:
                continue
            if s["kind"] == "baseline" and candidate not in ("naive", "last_close"):
                continue
            mark = " **(registered)**" if candidate == chosen else ""
            print(
                f"| {name} | {candidate}{mark} | {s.get('epochs') or '-'} | "
                f"{s.get('backtest_rmse_vs_best_baseline', float('nan')):.4f} "
                f"{s.get('backtest_best_baseline', '')} "
                f"(p={s.get('backtest_dm_p_value', float('nan')):.2g}) | "
                f"{s['val_rmse_vs_best_baseline']:.4f} {s['val_best_baseline']} "
                f"(p={s['val_dm_p_value']:.2g}) | {s['test_rmse']:.3f} | "
                f"{s['rmse_vs_naive']:.4f} | {s['test_rmse_vs_best_baseline']:.4f} "
                f"{s['test_best_baseline']} (p={s['test_dm_p_value']:.2g}) | "
                f"{s.get('test_coverage_80', float('nan')):.2f} / "
                f"{s.get('test_coverage_95', float('nan')):.2f} | {s['seed240_rmse']:.3f} |"
            )
    for name, _, chosen, elapsed in rows:
        print(f"{name}: registers {chosen}; wall {elapsed:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="names from CONFIGS")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3, help="fits at a time (threads)")
    args = parser.parse_args()
    rows = []
    for name in args.configs.split(","):
        entry, chosen, elapsed = run_config(name, args.epochs, args.workers)
        rows.append((name, entry, chosen, elapsed))
        print(f"{name}: done in {elapsed:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
