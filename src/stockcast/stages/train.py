"""Stage train, its records: every fit written where the stage builds ``models/`` (aside,
swapped in whole when the stage succeeds), what every fit left behind
(``models/train.json``, ``models/backtest.json``) and the global model copied to every
ticker. The fits themselves are planned by :func:`stockcast.train.plan_fits` and run by the
flow, in parallel, anywhere: they receive their windows and return their model as data."""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path

from stockcast.paths import Paths, atomic_write, read_json, write_json
from stockcast.train import MAIN_MODEL, FitJob, Fitted, TrainResult, model_dir

Trained = dict[str, dict[str, TrainResult]]  # ticker -> variant -> the main model's result


def keep_fit(fitted: Fitted, job: FitJob, folder: Path, models: Path) -> TrainResult:
    """Write one fit (its model, record and any traceback) into ``folder``, the models
    folder being built; its ``model_path`` names the file's place in ``models`` once the
    built folder is swapped in."""
    out = folder / job.out
    out.mkdir(parents=True, exist_ok=True)
    model_path = None
    if (model := fitted.model) is not None:
        atomic_write(out / "model.keras", lambda tmp: tmp.write_bytes(model))
        model_path = str(models / job.out / "model.keras")
    if fitted.traceback:
        (out / "error.txt").write_text(fitted.traceback, encoding="utf-8")
    result = replace(fitted.result, model_path=model_path)
    result.save(out / "result.json")
    return result


def share_global_models(
    results: list[TrainResult], tickers: list[str], paths: Paths, folder: Path | None = None
) -> list[TrainResult]:
    """Give every ticker a copy of each global model (``train.scope: global``).

    Evaluation and registration then work per ticker as usual: each ticker's pyfunc wraps
    the shared network with that ticker's own scaler and transform. ``folder`` is where the
    models folder is being built (``paths.models`` itself by default).
    """
    folder = folder or paths.models
    shared = []
    for r in results:
        for ticker in tickers:
            where = model_dir(ticker, r.variant, r.fold)
            model_path = None
            if r.ok and r.model_path:
                source = folder / Path(r.model_path).relative_to(paths.models)
                atomic_write(
                    folder / where / "model.keras", lambda tmp, s=source: shutil.copy2(s, tmp)
                )
                model_path = str(paths.models / where / "model.keras")
            shared.append(
                replace(r, ticker=ticker, model_path=model_path, worker=f"global: {r.worker}")
            )
    return shared


def write_summary(results: list[TrainResult], paths: Paths, folder: Path | None = None) -> Trained:
    """Record every fit's outcome, failures too: main models in ``models/train.json``,
    backtest folds in ``models/backtest.json`` (in ``folder``, where the models folder is
    being built, when given). Returns the main models' outcomes."""
    folder = folder or paths.models
    main: Trained = {}
    folds: dict[str, dict[str, list[TrainResult]]] = {}
    for r in sorted(results, key=lambda r: (r.ticker, r.variant, r.fold)):
        if r.fold == MAIN_MODEL:
            main.setdefault(r.ticker, {})[r.variant] = r
        else:
            folds.setdefault(r.ticker, {}).setdefault(r.variant, []).append(r)
    write_json(
        folder / paths.train_summary.name,
        {t: {v: asdict(r) for v, r in vs.items()} for t, vs in main.items()},
    )
    write_json(
        folder / paths.backtest_summary.name,
        {t: {v: [asdict(r) for r in rs] for v, rs in vs.items()} for t, vs in folds.items()},
    )
    return main


def read_summary(paths: Paths) -> Trained:
    """The main models: ticker -> variant -> TrainResult."""
    raw = read_json(paths.train_summary)
    return {t: {v: TrainResult(**r) for v, r in vs.items()} for t, vs in raw.items()}


def read_backtest_summary(paths: Paths) -> dict[str, dict[str, list[TrainResult]]]:
    """The backtest fits: ticker -> variant -> [TrainResult per fold]."""
    if not paths.backtest_summary.exists():
        return {}
    raw = read_json(paths.backtest_summary)
    return {t: {v: [TrainResult(**r) for r in rs] for v, rs in vs.items()} for t, vs in raw.items()}
