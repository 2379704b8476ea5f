"""Interval coverage and interval score by method, span and level, for the champion's rule.

    .venv/bin/python benchmarks/intervals.py [FILE ...]   (default: data/raw/*.csv)

For each file: the project's spans and walk-forward folds (``params.yaml``), the
``last_close`` rule's forecasts (the champion on the bundled sample; the rule every
network must beat), and the bands of each method of :mod:`stockcast.intervals`:

- **backtest** (pooled over the folds, the span that chooses): each fold's bands are
  calibrated on that fold's own validation span, the rows just before it, so nothing after a
  forecast calibrates it;
- **test**: calibrated on the pooled backtest rows, as the pipeline calibrates today.

Every method's parameter (the volatility window, the adaptive step) is chosen on the backtest
only (the lowest mean interval score over the levels among the settings whose coverage is
within 2 points at every level, else the closest coverage), then reported on the test span.
Prints a markdown table: coverage at 80 and 95 %, the interval scores, per span and method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stockcast import intervals  # noqa: E402
from stockcast.config import load_config  # noqa: E402
from stockcast.evaluate import baselines, level_name  # noqa: E402
from stockcast.ingest import read_prices  # noqa: E402
from stockcast.windows import WindowSet, make_windows  # noqa: E402

LEVELS = (0.8, 0.95)
DAYS = (10, 20, 40, 59)
GAMMAS = (0.005, 0.01, 0.02, 0.05)
RULE = "last_close"
TIE = 0.005  # backtest coverages this close to each other count as equally good


def rows(ws: WindowSet, idx: np.ndarray, days: int) -> tuple[np.ndarray, ...]:
    """(actual, the rule's forecast, the volatility known before each target) for ``idx``."""
    forecast = baselines(ws, idx)[RULE]
    return ws.prices[idx], forecast, intervals.realised_volatility(ws.prices, idx, days)


def bands(method: str, cal_rows, eval_rows, days: int, gamma: float) -> dict[str, np.ndarray]:
    cal = intervals.calibrate(method, *cal_rows, days=days, gamma=gamma)
    widths, _ = intervals.run_online(cal, LEVELS, *eval_rows)
    return widths


def judged(actual, forecast, widths) -> dict[str, float]:
    out = {}
    for level in LEVELS:
        name = level_name(level)
        out[f"cov{name}"] = float(np.mean(intervals.covered(actual, forecast, widths[name])))
        out[f"is{name}"] = intervals.winkler(actual, forecast, widths[name], level)
    return out


def spans(frame, cfg, method: str, days: int, gamma: float) -> dict[str, dict[str, float]]:
    w, shape = cfg.window, (cfg.features.target_transform, cfg.features.inputs, cfg.features.anchor)
    target = cfg.data.target
    ws = make_windows(frame, target, w.window, w.val_days, w.test_days, *shape)
    ends = cfg.backtest.fold_ends(len(frame), w.test_days)
    folds = [
        make_windows(frame.iloc[:end], target, w.window, w.val_days, cfg.backtest.fold_days, *shape)
        for end in ends
    ]
    pooled = {"actual": [], "forecast": [], "scale": []}
    parts = {k: [] for k in ("actual", "forecast", "widths")}
    for fold in folds:
        cal_rows = rows(fold, fold.val_idx, days)
        eval_rows = rows(fold, fold.test_idx, days)
        parts["actual"].append(eval_rows[0])
        parts["forecast"].append(eval_rows[1])
        parts["widths"].append(bands(method, cal_rows, eval_rows, days, gamma))
        for key, value in zip(pooled, eval_rows, strict=True):
            pooled[key].append(value)
    actual, forecast = np.concatenate(parts["actual"]), np.concatenate(parts["forecast"])
    widths = {
        name: np.concatenate([p[name] for p in parts["widths"]]) for name in parts["widths"][0]
    }
    backtest = judged(actual, forecast, widths)
    cal_rows = tuple(np.concatenate(v) for v in pooled.values())
    test_rows = rows(ws, ws.test_idx, days)
    test = judged(test_rows[0], test_rows[1], bands(method, cal_rows, test_rows, days, gamma))
    return {"backtest": backtest, "test": test}


def choose(frame, cfg, method: str) -> tuple[str, dict[str, dict[str, float]]]:
    """The method's setting chosen on the backtest, and its scores."""
    settings = [(20, 0.0)] if method == "static" else [(d, 0.0) for d in DAYS]
    if method == "adaptive":
        settings = [(d, g) for d in DAYS for g in GAMMAS]
    tried = []
    for days, gamma in settings:
        scores = spans(frame, cfg, method, days, gamma)
        b = scores["backtest"]
        miss = max(abs(b[f"cov{level_name(level)}"] - level) for level in LEVELS)
        score = float(np.mean([b[f"is{level_name(level)}"] for level in LEVELS]))
        tried.append((round(miss / TIE), score, days, gamma, scores))
    _, _, days, gamma, scores = min(tried, key=lambda t: (t[0], t[1]))
    label = "" if method == "static" else f"k={days}" + (f", γ={gamma}" if gamma else "")
    return label, scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    cfg = load_config(ROOT / "params.yaml")
    files = args.files or sorted((ROOT / "data/raw").glob("*.csv"))
    print("| file | method | span | cov 80 | cov 95 | IS 80 | IS 95 |")
    print("|---|---|---|---|---|---|---|")
    for path in files:
        result = read_prices(path)
        for ticker, frame in result.frame.groupby("ticker", sort=True):
            frame = frame.reset_index(drop=True)
            for method in intervals.METHODS:
                label, scores = choose(frame, cfg, method)
                for span, s in scores.items():
                    print(
                        f"| {ticker} ({len(frame)} rows) | {method} {label} | {span} | "
                        f"{s['cov80'] * 100:.1f} | {s['cov95'] * 100:.1f} | {s['is80']:.3g} | "
                        f"{s['is95']:.3g} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
