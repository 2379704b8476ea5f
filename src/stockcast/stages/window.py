"""Stage window: per ticker spans, scalers fitted on training rows, windows and folds."""

from __future__ import annotations

import pandas as pd

from stockcast.config import Config
from stockcast.paths import Paths, staged_dir
from stockcast.windows import WindowSet, make_windows, write_windows


def run(cfg: Config, paths: Paths) -> list[WindowSet]:
    """Write ``data/processed`` whole: each ticker's windows and its backtest folds.

    A fold is the ticker's rows up to the fold's end, with the fold's evaluation rows as its
    "test" span, so the scaler and the transform are refitted on the fold's own training rows.
    """
    frame = pd.read_parquet(paths.validated)
    w, f, target = cfg.window, cfg.features, cfg.data.target
    shape = (f.target_transform, f.inputs, f.anchor)
    sets, folds = [], {}
    for _, group in frame.groupby("ticker", sort=True):
        group = group.reset_index(drop=True)
        ws = make_windows(group, target, w.window, w.val_days, w.test_days, *shape)
        sets.append(ws)
        ends = cfg.backtest.fold_ends(len(group), w.test_days)
        folds[ws.ticker] = [
            make_windows(
                group.iloc[:end], target, w.window, w.val_days, cfg.backtest.fold_days, *shape
            )
            for end in ends
        ]
    with staged_dir(paths.processed) as staging:
        write_windows(sets, staging, folds)
    return sets
