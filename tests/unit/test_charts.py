"""The evaluate stage's charts: drawn here for a few tickers, by worker processes for many,
every one written and any failure raised before the stage goes on."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from stockcast.evaluate import plot_backtest, plot_candidates
from stockcast.stages.evaluate import CHARTS_APART_FROM, charts
from stockcast.windows import make_windows
from tests.conftest import synthetic_prices


def _folds() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fold": [1, 1, 2, 2],
            "variant": ["gru", "naive"] * 2,
            "mase": [0.9, 1.0, 1.1, 1.0],
            "rmse_vs_naive": [0.95, 1.0, 1.05, 1.0],
        }
    )


def _written(paths: list[Path]) -> list[bool]:
    return [p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths]


@pytest.mark.parametrize("tickers", [1, CHARTS_APART_FROM])
def test_every_chart_is_written_when_the_block_ends(tmp_path: Path, tickers: int):
    paths = [tmp_path / f"T{k}_backtest.png" for k in range(3)]
    with charts(tickers) as draw:
        for path in paths:
            draw(plot_backtest, _folds(), "T: walk-forward backtest", path)
    assert _written(paths) == [True] * 3


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core draws in-process")
def test_a_chart_that_fails_in_a_worker_fails_the_block(tmp_path: Path):
    with pytest.raises(KeyError, match="mase"), charts(CHARTS_APART_FROM) as draw:
        draw(plot_backtest, _folds(), "fine", tmp_path / "fine.png")
        draw(plot_backtest, _folds().drop(columns="mase"), "broken", tmp_path / "broken.png")
    assert _written([tmp_path / "fine.png"]) == [True]


def test_the_candidates_chart_needs_only_a_baseline(tmp_path: Path):
    ws = make_windows(synthetic_prices(200, "TEST"), "open", 10, 40, 40)
    idx = ws.test_idx
    forecasts = {"naive": ws.naive(idx), "gru": ws.naive(idx) * 1.01}
    kinds = {"naive": "baseline", "gru": "network"}
    both = plot_candidates(
        ws, idx, forecasts, kinds, ("gru", "naive"), "val", tmp_path / "a.png", {"80": 0.01},
        chosen="naive",
    )  # fmt: skip
    alone = plot_candidates(
        ws,
        idx,
        {"naive": forecasts["naive"]},
        {"naive": "baseline"},
        (None, "naive"),
        "val",
        tmp_path / "b.png",
        {"80": 0.01, "95": float("nan")},
    )
    assert _written([both, alone]) == [True, True]
