"""Stage evaluate: every candidate, network or baseline rule, scored on the same rows.

``reports/metrics.json`` holds per ticker ``baselines`` (their test-span scores, flat) and
one entry per candidate (:class:`stockcast.scores.CandidateScores`, flat). Selection and
promotion read only the ``val_*`` and ``backtest_*`` metrics; the test span is for the report.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from stockcast.config import Config
from stockcast.evaluate import (
    CandidateForecasts,
    baseline_candidates,
    plot_backtest,
    plot_forecast,
    predict_prices,
    score_candidates,
)
from stockcast.paths import Paths, read_json, write_json
from stockcast.scores import TickerReport
from stockcast.stages.train import read_backtest_summary, read_summary
from stockcast.train import TrainResult
from stockcast.windows import WindowSet, read_folds, read_windows


def run(cfg: Config, paths: Paths) -> dict[str, TickerReport]:
    """Score every ticker's candidates; write metrics, forecasts, plots and fold reports."""
    trained, backtest = read_summary(paths), read_backtest_summary(paths)
    reports = {}
    for ws in read_windows(paths.processed):
        folds = read_folds(paths.processed, ws.ticker)
        mine = trained[ws.ticker]
        forecasts = {
            **network_forecasts(ws, folds, mine, backtest.get(ws.ticker, {})),
            **baseline_candidates(ws, folds, cfg.features.moving_average),
        }
        scores = score_candidates(ws, folds, forecasts, cfg.register.intervals)
        errors = {v: r.error for v, r in mine.items() if not r.ok}
        reports[ws.ticker] = TickerReport(ws.ticker, scores, errors)
        _write_forecasts(paths, ws, reports[ws.ticker], forecasts)
    _write_backtest(reports, paths)
    write_json(paths.metrics, {t: r.to_json() for t, r in reports.items()})
    return reports


def read_reports(paths: Paths) -> dict[str, TickerReport]:
    """What the evaluate stage wrote, typed."""
    return {t: TickerReport.from_json(t, raw) for t, raw in read_json(paths.metrics).items()}


def network_forecasts(
    ws: WindowSet,
    folds: list[WindowSet],
    trained: dict[str, TrainResult],
    backtest: dict[str, list[TrainResult]],
) -> dict[str, CandidateForecasts]:
    """Each trained network's forecasts in prices; each fold by its own fold model (None
    for a fold whose fit failed)."""
    from stockcast.models import import_keras

    keras = import_keras()

    def load(result: TrainResult) -> object:
        return keras.saving.load_model(result.model_path, compile=False)

    out = {}
    for variant, result in trained.items():
        if not result.ok:
            continue
        model = load(result)
        fits = {r.fold: r for r in backtest.get(variant, []) if r.ok}
        out[variant] = CandidateForecasts(
            "network",
            predict_prices(model, ws, ws.test_idx),
            predict_prices(model, ws, ws.val_idx),
            tuple(
                predict_prices(load(fits[k]), fold, fold.test_idx) if k in fits else None
                for k, fold in enumerate(folds, start=1)
            ),
        )
    return out


def _write_forecasts(
    paths: Paths, ws: WindowSet, report: TickerReport, forecasts: dict[str, CandidateForecasts]
) -> None:
    """The test-span forecasts as CSV (for ``dvc plots``) and a plot per candidate."""
    table = pd.DataFrame({"date": ws.dates[ws.test_idx], "actual": ws.prices[ws.test_idx]})
    for name, forecast in forecasts.items():
        table[name] = forecast.test
        widths = report.candidates[name].interval_halfwidths
        path = paths.plots / f"{ws.ticker}_{name}.png"
        plot_forecast(
            ws, ws.test_idx, forecast.test, f"{ws.ticker} {name}: test span", path, widths
        )
    paths.predictions.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.predictions / f"{ws.ticker}.csv", index=False)


def _write_backtest(reports: dict[str, TickerReport], paths: Paths) -> None:
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
        plot_backtest(frame, title, paths.plots / f"{ticker}_backtest.png")
