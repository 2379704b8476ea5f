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


def run_config(base: object, name: str, epochs: int, workers: int) -> tuple[dict, str, float]:
    """Window, train, evaluate and choose for one configuration in a temporary project."""
    import pandas as pd

    from stockcast.paths import Paths, write_parquet
    from stockcast.promotion import choose_candidate
    from stockcast.stages import evaluate, ingest, window
    from stockcast.stages.train import write_summary
    from stockcast.train import fit_variant
    from stockcast.windows import read_folds, read_windows

    transform, inputs, anchor = CONFIGS[name]
    cfg = replace(
        base,
        features=replace(base.features, target_transform=transform, inputs=inputs, anchor=anchor),
        train=replace(base.train, epochs=epochs),
    )
    paths = Paths(Path(tempfile.mkdtemp(prefix=f"champion-{name}-")))
    frame = ingest.read_sources(cfg, ROOT).frame
    write_parquet(frame, paths.validated)
    started = time.perf_counter()
    jobs = []
    for ws in window.run(cfg, paths):
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
    write_summary(results, paths)
    report = {t: r.to_json() for t, r in evaluate.run(cfg, paths).items()}
    elapsed = time.perf_counter() - started
    (ws,) = read_windows(paths.processed)
    entry = report[ws.ticker]
    source = "backtest" if cfg.backtest.folds else "val"
    r = cfg.register  # the configured rule, p-value gate included
    candidates = evaluate.read_reports(paths)[ws.ticker].candidates
    chosen, _ = choose_candidate(candidates, source, r.min_improvement, r.max_p_value)
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


HEADER = (
    "| configuration | candidate | epochs | backtest × best baseline (DM p) | "
    "val × best baseline (DM p) | test RMSE | × naive | × best baseline (DM p) | "
    "80% / 95% coverage | RMSE, seed's 240 targets |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def print_rows(rows: list[tuple[str, dict, str, float]]) -> None:
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
    for name, _, chosen, elapsed in rows:  # stderr: the table on stdout stays whole
        print(f"{name}: registers {chosen}; wall {elapsed:.0f} s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="names from CONFIGS")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3, help="fits at a time (threads)")
    args = parser.parse_args()
    from stockcast.config import load_config

    base = load_config(ROOT / "params.yaml")  # read once: editing it mid-run changes nothing
    print(HEADER, flush=True)
    for name in args.configs.split(","):
        entry, chosen, elapsed = run_config(base, name, args.epochs, args.workers)
        print_rows([(name, entry, chosen, elapsed)])  # as each ends: a long run keeps its rows


if __name__ == "__main__":
    main()
