"""Stage evaluate: every candidate, network or baseline rule, scored on the same rows.

``reports/metrics.json`` holds per ticker ``baselines`` (their test-span scores, flat) and
one entry per candidate (:class:`stockcast.scores.CandidateScores`, flat). Selection and
promotion read only the ``val_*`` and ``backtest_*`` metrics; the test span is for the report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from stockcast.config import Config, RegisterConfig
from stockcast.evaluate import (
    Banding,
    CandidateForecasts,
    baseline_candidates,
    drawn_bands,
    plot_backtest,
    plot_candidates,
    predict_prices,
    score_candidates,
)
from stockcast.paths import Paths, read_json, write_json
from stockcast.promotion import choose_candidate, leaders
from stockcast.scores import TickerReport
from stockcast.stages.train import read_backtest_summary, read_summary
from stockcast.train import TrainResult
from stockcast.windows import WindowSet, read_folds, read_windows


def run(cfg: Config, paths: Paths) -> dict[str, TickerReport]:
    """Score every ticker's candidates; write metrics, forecasts, plots and fold reports."""
    trained, backtest = read_summary(paths), read_backtest_summary(paths)
    reports = {}
    with charts(len(trained)) as draw:
        for ws in read_windows(paths.processed):
            folds = read_folds(paths.processed, ws.ticker)
            mine = trained[ws.ticker]
            forecasts = {
                **network_forecasts(ws, folds, mine, backtest.get(ws.ticker, {})),
                **baseline_candidates(ws, folds, cfg.features.moving_average),
            }
            scores = score_candidates(ws, folds, forecasts, cfg.register.intervals, banding(cfg))
            errors = {v: r.error for v, r in mine.items() if not r.ok}
            reports[ws.ticker] = TickerReport(ws.ticker, scores, errors)
            _write_forecasts(paths, ws, reports[ws.ticker], forecasts, draw, cfg.register)
        _write_backtest(reports, paths, draw)
    write_json(paths.metrics, {t: r.to_json() for t, r in reports.items()})
    write_json(paths.calibration, calibrations(reports))
    drawn = {p(t) for t in reports for p in (paths.forecast_plot, paths.backtest_plot)}
    for old in set(paths.plots.glob("*.png")) - drawn:  # charts of an earlier layout or ticker
        old.unlink()
    return reports


def read_reports(paths: Paths) -> dict[str, TickerReport]:
    """What the evaluate stage wrote, typed, each candidate with its interval calibration
    (a ``reports/calibration.json`` of an earlier layout, or none, leaves it None)."""
    from stockcast.intervals import Calibration

    reports = {t: TickerReport.from_json(t, raw) for t, raw in read_json(paths.metrics).items()}
    kept = read_json(paths.calibration) if paths.calibration.exists() else {}
    for ticker, report in reports.items():
        for name, scores in list(report.candidates.items()):
            if raw := kept.get(ticker, {}).get(name):
                report.candidates[name] = replace(scores, calibration=Calibration.from_dict(raw))
    return reports


def banding(cfg: Config) -> Banding:
    r = cfg.register
    return Banding(r.interval_method, r.interval_days, r.interval_gamma)


def calibrations(reports: dict[str, TickerReport]) -> dict[str, dict[str, object]]:
    """Per ticker and candidate, its calibration as JSON (``reports/calibration.json``)."""
    return {
        t: {n: c.calibration.to_dict() for n, c in r.candidates.items() if c.calibration}
        for t, r in reports.items()
    }


# Each network loaded traces its own predict function once; TensorFlow counts them as
# retraces of one function and warns from the sixth on.
RETRACING = re.compile(r"triggered tf\.function retracing")


def network_forecasts(
    ws: WindowSet,
    folds: list[WindowSet],
    trained: dict[str, TrainResult],
    backtest: dict[str, list[TrainResult]],
) -> dict[str, CandidateForecasts]:
    """Each trained network's forecasts in prices; each fold by its own fold model (None
    for a fold whose fit failed). A global network's copies are loaded once
    (:func:`stockcast.models.load_network`).

    A variant's fold models share one architecture and their spans one length: the first is
    loaded and the others' weights read into it, so its traced prediction serves them all
    (a trace per model cost about 0.15 s, and 9 of a day's 15 were folds')."""
    from stockcast.models import load_network as load
    from stockcast.models import muted_logs, network_from_bytes

    out = {}
    with muted_logs("tensorflow", RETRACING):
        for variant, result in trained.items():
            if not result.ok:
                continue
            model = load(result.model_path)
            test = predict_prices(model, ws, ws.test_idx)
            val = predict_prices(model, ws, ws.val_idx)
            fits = {r.fold: r for r in backtest.get(variant, []) if r.ok}
            backtests: list[np.ndarray | None] = []
            fold_model = None  # this function's own: never a shared, loaded one
            for k, fold in enumerate(folds, start=1):
                if k not in fits:
                    backtests.append(None)
                    continue
                path = Path(str(fits[k].model_path))
                if fold_model is None:
                    fold_model = network_from_bytes(path.read_bytes())
                else:
                    fold_model.load_weights(str(path))
                backtests.append(predict_prices(fold_model, fold, fold.test_idx))
            out[variant] = CandidateForecasts("network", test, val, tuple(backtests))
    return out


# Charts are drawn by worker processes beside the predictions from this many tickers on (a
# chart costs about as much as a ticker's predictions and scores); fewer are drawn here.
CHARTS_APART_FROM = 10


@contextmanager
def charts(tickers: int) -> Iterator[Callable[..., None]]:
    """``draw(plot, *args)``: call a plotting function, in a pool of worker processes (one
    per core, at most two) when there are many tickers. Every chart is written, and any
    failure raised, before the block ends."""
    workers = min(2, os.cpu_count() or 1)
    if tickers < CHARTS_APART_FROM or workers < 2:
        yield lambda plot, *args: plot(*args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pending = []
    # spawn: a fork of a process running TensorFlow's threads can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda plot, *args: pending.append(pool.submit(plot, *args))
        for done in pending:
            done.result()


def _write_forecasts(
    paths: Paths,
    ws: WindowSet,
    report: TickerReport,
    forecasts: dict[str, CandidateForecasts],
    draw: Callable[..., None],
    r: RegisterConfig,
) -> None:
    """The test-span forecasts as CSV (for ``dvc plots``) and one chart of the ticker's
    candidates: every network beside the strongest baseline of the span that chooses."""
    table = pd.DataFrame({"date": ws.dates[ws.test_idx], "actual": ws.prices[ws.test_idx]})
    for name, forecast in forecasts.items():
        table[name] = forecast.test
    scores = report.candidates
    span = next(iter(scores.values())).selection_span  # the span that chooses
    network, baseline = leaders(scores, span)
    # with register.fdr the choice waits for every ticker's p-value (the register stage):
    # the chart then bands the best network, or the best baseline, without naming a choice
    chosen = (
        None
        if r.fdr is not None
        else choose_candidate(scores, span, r.min_improvement, r.max_p_value)[0]
    )
    banded = chosen or network or baseline
    draw(
        plot_candidates,
        ws,
        ws.test_idx,
        {n: f.test for n, f in forecasts.items()},
        {n: c.kind for n, c in scores.items()},
        (network, baseline),
        span,
        paths.forecast_plot(ws.ticker),
        drawn_bands(ws, forecasts[banded].test, scores[banded].calibration, r.intervals),
        chosen,
    )
    paths.predictions.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.predictions / f"{ws.ticker}.csv", index=False)


def _write_backtest(
    reports: dict[str, TickerReport], paths: Paths, draw: Callable[..., None]
) -> None:
    """Per-fold metrics as CSV (for ``dvc plots``) and one bar chart per ticker."""
    paths.backtest_reports.mkdir(parents=True, exist_ok=True)
    for old in paths.backtest_reports.glob("*.csv"):
        old.unlink()
    for ticker, report in reports.items():
        rows = [
            {"ticker": ticker, "variant": name, **asdict(fold)}
            for name, c in report.candidates.items()
            for fold in c.folds
        ]
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame.to_csv(paths.backtest_reports / f"{ticker}.csv", index=False)
        title = f"{ticker}: walk-forward backtest"
        draw(plot_backtest, frame, title, paths.backtest_plot(ticker))
