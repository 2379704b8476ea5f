"""Target transform x variant on the seed's job: validation and test RMSE against naive.

Selection must use validation only; the test column is printed for the report. Runs each
fit in its own process (2 at a time), as the pipeline's default runner does.

    .venv/bin/python benchmarks/transforms.py [--epochs 50] [--csv data/raw/SH600519.csv]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fit(args: tuple) -> dict:
    transform, variant, epochs, csv, fold_end = args
    import keras

    from stockcast.config import TrainConfig
    from stockcast.evaluate import predict_prices, score
    from stockcast.ingest import read_prices
    from stockcast.train import fit_variant
    from stockcast.windows import make_windows

    frame = read_prices(Path(csv)).frame
    if fold_end:  # a walk-forward fold: rows up to its end, its last 120 rows evaluated
        ws = make_windows(frame.iloc[:fold_end], "open", 60, 250, 120, transform)
    else:
        ws = make_windows(frame, "open", 60, 250, 300, transform)
    out = Path(mkdtemp()) / variant
    result = fit_variant(ws, variant, TrainConfig(epochs=epochs), 42, out)
    if not result.ok:
        return {
            "transform": transform,
            "variant": variant,
            "fold_end": fold_end,
            "error": result.error,
        }
    model = keras.saving.load_model(result.model_path, compile=False)
    val = score(ws, predict_prices(model, ws, ws.val_idx), ws.val_idx, "val")
    test = score(ws, predict_prices(model, ws, ws.test_idx), ws.test_idx)
    return {
        "transform": transform,
        "variant": variant,
        "fold_end": fold_end,
        "epochs": result.epochs_run,
        "fit_s": result.fit_seconds,
        **val,
        **test,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--csv", default="data/raw/SH600519.csv")
    parser.add_argument("--transforms", default="level,diff,log_return")
    parser.add_argument("--folds", type=int, default=0, help="walk-forward folds of 120 rows")
    args = parser.parse_args()
    ends = [0]  # 0: the main split (last 300 rows test); else a fold's last row
    if args.folds:
        from stockcast.config import BacktestConfig
        from stockcast.ingest import read_prices

        rows = len(read_prices(Path(args.csv)).frame)
        ends += BacktestConfig(args.folds, 120).fold_ends(rows, 300)
    jobs = [
        (t, v, args.epochs, args.csv, end)
        for t in args.transforms.split(",")
        for v in ("simple_rnn", "lstm", "gru")
        for end in ends
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_fit, jobs))
    rows = [r for r in results if not r.get("fold_end")]
    folds = [r for r in results if r.get("fold_end")]
    if folds:
        import numpy as np

        print("| transform | variant | backtest RMSE / naive (mean ± std) | backtest MASE |")
        print("|---|---|---|---|")
        for t in args.transforms.split(","):
            for v in ("simple_rnn", "lstm", "gru"):
                mine = [
                    r
                    for r in folds
                    if r["transform"] == t and r["variant"] == v and "error" not in r
                ]
                ratio = np.array([r["rmse_vs_naive"] for r in mine])
                mase = np.array([r["test_mase"] for r in mine])
                print(
                    f"| {t} | {v} | {ratio.mean():.4f} ± {ratio.std():.4f} "
                    f"| {mase.mean():.3f} ± {mase.std():.3f} |"
                )
        print()
    print(
        "| transform | variant | epochs | val RMSE / naive | test RMSE | test RMSE / naive "
        "| test MASE | test dir. acc. |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['transform']} | {r['variant']} | failed: {r['error']} |")
            continue
        print(
            f"| {r['transform']} | {r['variant']} | {r['epochs']} | "
            f"{r['val_rmse_vs_naive']:.3f} | {r['test_rmse']:.2f} | {r['rmse_vs_naive']:.3f} "
            f"| {r['test_mase']:.3f} | {r['test_directional_accuracy']:.3f} |"
        )
    print(
        f"naive test RMSE {rows[0].get('naive_rmse', float('nan')):.3f}; "
        f"wall {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
