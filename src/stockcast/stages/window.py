"""Stage window: per ticker spans, scalers fitted on training rows, windows and folds."""

from __future__ import annotations

import pandas as pd

from stockcast import transforms
from stockcast.columns import OHLCV
from stockcast.config import Config
from stockcast.errors import ConfigError
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
    needs = transforms.needed_columns(target, f.inputs, f.anchor)
    for ticker, group in frame.groupby("ticker", sort=True):
        group = group.reset_index(drop=True)
        if lacking := [c for c in needs if group[c].isna().all()]:
            settings = dict.fromkeys(why for c in lacking for why in needs[c])
            raise ConfigError(
                f"{ticker} has no {', '.join(lacking)} column (its source maps only "
                f"{', '.join(c for c in OHLCV if group[c].notna().any())}), "
                f"which {' and '.join(settings)} need(s); for a series with one price, "
                "set features.anchor: target and features.inputs: []"
            )
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
