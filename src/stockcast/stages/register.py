"""Stage register: log the run to MLflow, register each ticker's best forecaster, gate
``@champion``. The MLflow side lives in :mod:`stockcast.tracking`; the rules in
:mod:`stockcast.promotion`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stockcast import leaderboard, tracking
from stockcast.config import Config
from stockcast.lineage import lineage_tags
from stockcast.paths import Paths, atomic_write, write_json
from stockcast.promotion import fdr_family
from stockcast.scores import TickerReport, selection_span
from stockcast.stages.evaluate import read_reports
from stockcast.stages.train import read_summary
from stockcast.windows import read_windows


def run(
    cfg: Config,
    paths: Paths,
    run_tags: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One parent run per pipeline run, per ticker a child run per network and one for the
    strongest baseline (:func:`stockcast.tracking.runs_of`); the decisions
    go to ``reports/registry.json`` and onto each registered version as tags.

    Args:
        cfg: the configuration.
        paths: project paths.
        run_tags: extra tags for every run (e.g. the orchestrator's run id).
        progress: hears how many tickers are done, now and then.
    """
    reports = read_reports(paths)
    decisions = tracking.log_pipeline_run(
        cfg,
        paths,
        sets=read_windows(paths.processed),
        reports=reports,
        trained=read_summary(paths),
        tags={**lineage_tags(cfg, paths.root), **(run_tags or {})},
        progress=progress,
    )
    write_json(paths.registry, decisions)
    write_leaderboard(cfg, paths, reports, decisions)
    return decisions


def write_leaderboard(
    cfg: Config, paths: Paths, reports: dict[str, TickerReport], decisions: dict[str, Any]
) -> None:
    """``reports/leaderboard.csv``: a row per ticker (:func:`stockcast.leaderboard.ticker_row`),
    what a person with 500 tickers sorts and filters (atomically written)."""
    import pandas as pd

    span = selection_span(cfg.backtest.folds)
    _, adjusted = fdr_family({t: r.candidates for t, r in reports.items()}, span, cfg.register)
    rows = leaderboard.ticker_board(reports, decisions, span, adjusted)
    table = pd.DataFrame(rows, columns=leaderboard.TICKER_COLUMNS)
    atomic_write(paths.leaderboard, lambda tmp: table.to_csv(tmp, index=False))
