"""Variants in parallel: wall time of the train stage per task runner, against one after another.

The three variants on SH600519 (the default window, spans and transform; no backtest folds),
a fixed number of epochs (early stopping off, so every configuration does the same work),
through the pipeline's own train flow (``flows.stages``) on one Prefect server. Each
configuration runs in a fresh process, so TensorFlow's thread settings take effect; the
reference is ``sequential`` (one worker thread) measured in the same run.

    .venv/bin/python benchmarks/runners.py [--epochs 5] [--only processes:2:0 ...]
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

# (label, runner, max_workers, tf_threads)
CONFIGS = [
    ("sequential", "threads", 1, 0),
    ("threads", "threads", 3, 0),
    ("processes", "processes", 2, 0),
    ("processes", "processes", 3, 0),
    ("processes", "processes", 3, 1),
    ("dask", "dask", 2, 0),
    ("dask", "dask", 3, 1),
]


def prepare(root: Path) -> None:
    """The default windows of the bundled sample under ``root/data/processed``."""
    from stockcast.config import load_config
    from stockcast.ingest import read_prices
    from stockcast.windows import make_windows, write_windows

    cfg = load_config(ROOT / "params.yaml")
    frame = read_prices(ROOT / "data/raw/SH600519.csv", "SH600519").frame
    w = cfg.window
    ws = make_windows(
        frame, cfg.data.target, w.window, w.val_days, w.test_days, cfg.features.target_transform
    )
    write_windows([ws], root / "data/processed")


def one(root: Path, runner: str, workers: int, tf_threads: int, epochs: int) -> dict:
    """Train the three variants once with this runner; returns wall and fit seconds."""
    import flows.env  # noqa: F401
    from flows.runners import task_runner
    from flows.stages.train import train_variants as _train
    from stockcast.config import config_from_dict
    from stockcast.paths import Paths

    raw = {
        "data": {"sources": ["unused.csv"]},
        "execution": {"runner": runner, "max_workers": workers, "tf_threads": tf_threads},
        "train": {
            "epochs": epochs,
            "patience": epochs,  # no early stop: equal work in every configuration
        },
    }
    cfg = config_from_dict(raw)
    paths = Paths(root)
    start = time.perf_counter()
    _train.with_options(task_runner=task_runner(cfg.execution))(cfg, paths)
    wall = time.perf_counter() - start
    summary = json.loads((paths.train_summary).read_text())["SH600519"]
    fits = {v: r["fit_seconds"] for v, r in summary.items()}
    losses = {v: r["best_val_loss"] for v, r in summary.items()}
    return {
        "wall": wall,
        "fits": fits,
        "losses": losses,
        "errors": [r["error"] for r in summary.values()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--configs",
        nargs="+",
        help="runner:workers:tf_threads triples (default: every configuration)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one configuration
        runner, workers, threads = args.one.split(":")
        out = one(Path(args.root), runner, int(workers), int(threads), args.epochs)
        print("RESULT " + json.dumps(out))
        return

    from flows.server import prefect_api

    with tempfile.TemporaryDirectory() as tmp, prefect_api() as url:
        root = Path(tmp)
        prepare(root)
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING"}
        print(f"3 variants x {args.epochs} epochs, SH600519 default windows, 2 cores")
        print(
            "| runner | workers | TF threads | wall s | sum of fits s | speed-up vs sequential "
            "| best val_loss simple_rnn / lstm / gru |"
        )
        print("|---|---|---|---|---|---|---|", flush=True)
        reference = None
        configs = CONFIGS
        if args.configs:
            triples = [c.split(":") for c in args.configs]
            configs = [
                ("sequential" if r == "threads" and w == "1" else r, r, int(w), int(t))
                for r, w, t in triples
            ]
        for label, runner, workers, threads in configs:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{runner}:{workers}:{threads}",
                    "--root",
                    str(root),
                    "--epochs",
                    str(args.epochs),
                ],
                env=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(
                    f"| {label} | {workers} | {threads or 'default'} | failed: "
                    f"{proc.stderr.strip().splitlines()[-1:]} | | |",
                    flush=True,
                )
                continue
            result = json.loads(line[len("RESULT ") :])
            reference = reference or result["wall"]
            print(
                f"| {label} | {workers} | {threads or 'default'} | {result['wall']:.1f} | "
                f"{sum(result['fits'].values()):.1f} | {reference / result['wall']:.2f}x | "
                + " / ".join(f"{result['losses'][v]:.6g}" for v in ("simple_rnn", "lstm", "gru"))
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
