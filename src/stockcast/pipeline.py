"""Each DVC stage as a plain function: read the previous stage's files, write its own.

Outputs are written to a temporary name and renamed, so a crash leaves the last good file.
The Prefect flows in ``flows/`` call these; nothing here knows of Prefect.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast import sources
from stockcast.config import Config
from stockcast.errors import ValidationFailed
from stockcast.ingest import IngestResult, combine
from stockcast.windows import WindowSet, make_windows, read_windows, write_windows


@dataclass(frozen=True)
class Paths:
    """Where every stage reads and writes, relative to the project root."""

    root: Path

    @property
    def ingested(self) -> Path:
        return self.root / "data/interim/ingested.parquet"

    @property
    def validated(self) -> Path:
        return self.root / "data/interim/validated.parquet"

    @property
    def validation_reports(self) -> Path:
        return self.root / "reports/validation"

    @property
    def drift(self) -> Path:
        return self.root / "reports/drift.json"

    @property
    def processed(self) -> Path:
        return self.root / "data/processed"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def metrics(self) -> Path:
        return self.root / "reports/metrics.json"

    @property
    def plots(self) -> Path:
        return self.root / "reports/plots"

    @property
    def predictions(self) -> Path:
        return self.root / "reports/predictions"

    @property
    def registry(self) -> Path:
        return self.root / "reports/registry.json"

    @property
    def train_summary(self) -> Path:
        return self.models / "train.json"

    @property
    def backtest_summary(self) -> Path:
        return self.models / "backtest.json"

    @property
    def backtest_reports(self) -> Path:
        return self.root / "reports/backtest"

    def variant_dir(self, ticker: str, variant: str) -> Path:
        return self.models / ticker / variant


def write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def read_sources(cfg: Config, paths: Paths) -> IngestResult:
    """Every configured source (files, folders, globs, URLs) as one canonical table, in memory."""
    d = cfg.data
    results = [
        r
        for s in d.sources
        for r in sources.load(s, paths.root, d.date_order, d.fetch_timeout, d.fetch_retries)
    ]
    return combine(results, d.tickers)


def ingest(cfg: Config, paths: Paths) -> IngestResult:
    """Stage 1: every source → one canonical table at ``data/interim/ingested.parquet``."""
    result = read_sources(cfg, paths)
    write_parquet(result.frame, paths.ingested)
    write_json(
        paths.ingested.with_name("ingest.json"),
        {
            "rows": len(result.frame),
            "tickers": sorted(result.frame["ticker"].unique()),
            "repairs": result.repairs,
        },
    )
    return result


def drift(cfg: Config, paths: Paths) -> dict[str, Any]:
    """Stage 3: the newest returns against the training span, per ticker (``reports/drift.json``).

    Recorded on every run; ``drift.on_drift`` decides in the ``retrain`` flow whether drift
    is what triggers retraining or only a warning.
    """
    from stockcast.ops import detect_drift, drift_report

    frame = pd.read_parquet(paths.validated)
    report = drift_report(detect_drift(frame, cfg.data.target, cfg))
    report["newest_day"] = {
        str(t): pd.Timestamp(d).date().isoformat()
        for t, d in frame.groupby("ticker")["date"].max().items()
    }
    write_json(paths.drift, report)
    return report


def validate(cfg: Config, paths: Paths, today: pd.Timestamp | None = None) -> Any:
    """Stage 2: the Great Expectations gate.

    On success the table is published as ``data/interim/validated.parquet``. On failure
    (``on_failure: stop``) :class:`ValidationFailed` is raised and the last validated table
    stays as it was; with ``skip_ticker`` the failing tickers are left out instead.
    """
    from stockcast.validate import validate_prices

    frame = pd.read_parquet(paths.ingested)
    v = cfg.validate
    report = validate_prices(
        frame,
        cfg.min_rows,
        paths.validation_reports,
        today,
        v.max_daily_move,
        v.max_gap_days,
    )
    failed = report.failed_tickers
    if failed and (cfg.validate.on_failure == "stop" or len(failed) == frame["ticker"].nunique()):
        raise ValidationFailed(f"validation failed for {failed}\n{report.summary()}")
    write_parquet(frame[~frame["ticker"].isin(failed)], paths.validated)
    return report


def window(cfg: Config, paths: Paths) -> list[WindowSet]:
    """Stage 3: per ticker spans, scaler fitted on training rows, windows under data/processed.

    Also writes each backtest fold as ``<TICKER>.fold<k>.npz``: the ticker's rows up to the
    fold's end, with the fold's evaluation rows as its "test" span, so the scaler and the
    transform are refitted on the fold's own training rows.
    """
    frame = pd.read_parquet(paths.validated)
    w, f = cfg.window, cfg.features
    shape = (f.target_transform, f.inputs, f.anchor)
    sets, folds = [], {}
    for _, group in frame.groupby("ticker", sort=True):
        group = group.reset_index(drop=True)
        ws = make_windows(group, cfg.data.target, w.window, w.val_days, w.test_days, *shape)
        sets.append(ws)
        folds[ws.ticker] = [
            make_windows(
                group.iloc[:end],
                cfg.data.target,
                w.window,
                w.val_days,
                cfg.backtest.fold_days,
                *shape,
            )
            for end in cfg.backtest.fold_ends(len(group), w.test_days)
        ]
    staging = paths.processed.with_name(paths.processed.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    write_windows(sets, staging, folds)
    _swap_dir(staging, paths.processed)
    return sets


def share_global_models(results: list[Any], tickers: list[str], paths: Paths) -> list[Any]:
    """Give every ticker a copy of each global model (``train.scope: global``).

    Evaluation and registration then work per ticker as usual: each ticker's pyfunc wraps
    the shared network with that ticker's own scaler and transform.
    """
    from dataclasses import replace

    shared = []
    for r in results:
        for ticker in tickers:
            out = paths.variant_dir(ticker, r.variant) / (f"fold{r.fold}" if r.fold else "")
            model_path = None
            if r.ok and r.model_path:
                out.mkdir(parents=True, exist_ok=True)
                tmp = out / "model.tmp.keras"
                shutil.copy2(r.model_path, tmp)
                tmp.replace(out / "model.keras")
                model_path = str(out / "model.keras")
            shared.append(
                replace(r, ticker=ticker, model_path=model_path, worker=f"global: {r.worker}")
            )
    return shared


def write_train_summary(results: list[Any], paths: Paths) -> dict[str, dict[str, Any]]:
    """Record every fit's outcome, failures too: main models in ``models/train.json``,
    backtest folds in ``models/backtest.json``. Returns the main models' outcomes."""
    main: dict[str, dict[str, Any]] = {}
    folds: dict[str, dict[str, list[Any]]] = {}
    for r in sorted(results, key=lambda r: (r.ticker, r.variant, r.fold)):
        if r.fold == 0:
            main.setdefault(r.ticker, {})[r.variant] = r
        else:
            folds.setdefault(r.ticker, {}).setdefault(r.variant, []).append(r)
    write_json(
        paths.train_summary, {t: {v: asdict(r) for v, r in vs.items()} for t, vs in main.items()}
    )
    write_json(
        paths.backtest_summary,
        {t: {v: [asdict(r) for r in rs] for v, rs in vs.items()} for t, vs in folds.items()},
    )
    return main


def read_train_summary(paths: Paths) -> dict[str, dict[str, Any]]:
    """The train stage's main models: ticker -> variant -> TrainResult."""
    from stockcast.train import TrainResult

    raw = json.loads(paths.train_summary.read_text(encoding="utf-8"))
    return {t: {v: TrainResult(**r) for v, r in vs.items()} for t, vs in raw.items()}


def read_backtest_summary(paths: Paths) -> dict[str, dict[str, list[Any]]]:
    """The backtest fits: ticker -> variant -> [TrainResult per fold]."""
    from stockcast.train import TrainResult

    if not paths.backtest_summary.exists():
        return {}
    raw = json.loads(paths.backtest_summary.read_text(encoding="utf-8"))
    return {t: {v: [TrainResult(**r) for r in rs] for v, rs in vs.items()} for t, vs in raw.items()}


def evaluate(cfg: Config, paths: Paths) -> dict[str, dict[str, Any]]:
    """Stage 5: every candidate, network or baseline, scored on the same rows.

    ``reports/metrics.json`` holds, per ticker, ``baselines`` (their test-span scores, flat)
    and one entry per candidate (``kind``: network | baseline) with its backtest,
    validation and test metrics, its RMSE against the strongest baseline of each span with
    the Diebold-Mariano test, its conformal interval half-widths and their test coverage.
    Selection and promotion use only the ``val_*`` and ``backtest_*`` metrics; the test span
    is scored once, for the report.
    """
    from stockcast.evaluate import baseline_scores
    from stockcast.windows import read_folds

    trained = read_train_summary(paths)
    backtest = read_backtest_summary(paths)
    report: dict[str, dict[str, Any]] = {}
    fold_rows: list[dict[str, Any]] = []
    for ws in read_windows(paths.processed):
        folds = read_folds(paths.processed, ws.ticker)
        forecasts, errors = _forecasts(
            cfg, ws, folds, trained[ws.ticker], backtest.get(ws.ticker, {})
        )
        entry: dict[str, Any] = {
            "baselines": baseline_scores(ws, ws.test_idx, cfg.features.moving_average)
        }
        entry.update({variant: {"error": error} for variant, error in errors.items()})
        for name, forecast in forecasts.items():
            scores, rows = _score_candidate(cfg, ws, folds, forecasts, name)
            entry[name] = scores
            fold_rows += [{"ticker": ws.ticker, "variant": name, **row} for row in rows]
            plot_path = paths.plots / f"{ws.ticker}_{name}.png"
            _plot(ws, forecast["test"], scores, f"{ws.ticker} {name}: test span", plot_path)
        report[ws.ticker] = entry
        table = pd.DataFrame({"date": ws.dates[ws.test_idx], "actual": ws.prices[ws.test_idx]})
        for name, forecast in forecasts.items():
            table[name] = forecast["test"]
        paths.predictions.mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.predictions / f"{ws.ticker}.csv", index=False)
    _write_backtest(pd.DataFrame(fold_rows), paths)
    write_json(paths.metrics, report)
    return report


Forecasts = dict[str, dict[str, Any]]  # candidate -> kind, test, val, backtest (per fold)


def _forecasts(
    cfg: Config,
    ws: WindowSet,
    folds: list[WindowSet],
    trained: dict[str, Any],
    backtest: dict[str, list[Any]],
) -> tuple[Forecasts, dict[str, str]]:
    """Every candidate's forecasts in prices: the baseline rules and the trained networks
    (each fold by its own fold model; None for a fold that failed). Also the failed ones."""
    import keras

    from stockcast.evaluate import baselines, predict_prices

    ma = cfg.features.moving_average
    spans = {
        "test": baselines(ws, ws.test_idx, ma),
        "val": baselines(ws, ws.val_idx, ma),
        "backtest": [baselines(fold, fold.test_idx, ma) for fold in folds],
    }
    out: Forecasts = {
        rule: {
            "kind": "baseline",
            "test": spans["test"][rule],
            "val": spans["val"][rule],
            "backtest": [per_fold[rule] for per_fold in spans["backtest"]],
        }
        for rule in spans["test"]
    }
    errors = {}
    for variant, result in trained.items():
        if not result.ok:
            errors[variant] = result.error
            continue
        model = keras.saving.load_model(result.model_path, compile=False)
        fits = {r.fold: r for r in backtest.get(variant, []) if r.ok}
        out[variant] = {
            "kind": "network",
            "result": result,
            "test": predict_prices(model, ws, ws.test_idx),
            "val": predict_prices(model, ws, ws.val_idx),
            "backtest": [
                predict_prices(
                    keras.saving.load_model(fits[k].model_path, compile=False), fold, fold.test_idx
                )
                if k in fits
                else None
                for k, fold in enumerate(folds, start=1)
            ],
        }
    return out, errors


def _score_candidate(
    cfg: Config, ws: WindowSet, folds: list[WindowSet], forecasts: Forecasts, name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One candidate's metrics on every span, against the strongest baseline of each; the
    conformal intervals from the selection span's residuals, their coverage on the test span."""
    import numpy as np

    from stockcast.evaluate import (
        against_best_baseline,
        conformal_quantiles,
        coverage,
        regression_metrics,
        score,
    )

    mine = forecasts[name]
    rules = [n for n, f in forecasts.items() if f["kind"] == "baseline"]
    out: dict[str, Any] = {"kind": mine["kind"]}
    for span, idx in (("test", ws.test_idx), ("val", ws.val_idx)):
        out.update(score(ws, mine[span], idx, span))
        base = {r: forecasts[r][span] for r in rules}
        out.update(against_best_baseline(ws.prices[idx], mine[span], base, span))
    rows = [
        _fold_row(k, fold, predicted)
        for k, (fold, predicted) in enumerate(zip(folds, mine["backtest"], strict=True), start=1)
        if predicted is not None
    ]
    out.update(_fold_summary(rows, cfg.backtest.folds))
    calibration = (ws.prices[ws.val_idx], mine["val"])
    if folds:
        actual = np.concatenate([f.prices[f.test_idx] for f in folds])
        naive = np.concatenate([f.naive(f.test_idx) for f in folds])
        complete = all(p is not None for p in mine["backtest"])
        pooled = np.concatenate(mine["backtest"]) if complete else np.full(len(actual), np.nan)
        base = {r: np.concatenate(forecasts[r]["backtest"]) for r in rules}
        out["backtest_rmse"] = regression_metrics(actual, pooled)["rmse"]
        out["backtest_rmse_vs_naive"] = (
            out["backtest_rmse"] / regression_metrics(actual, naive)["rmse"]
        )
        out.update(against_best_baseline(actual, pooled, base, "backtest"))
        calibration = (actual, pooled)
    for level, width in conformal_quantiles(*calibration, cfg.register.intervals).items():
        out[f"interval_halfwidth_{level}"] = width
        out[f"test_coverage_{level}"] = coverage(ws.prices[ws.test_idx], mine["test"], width)
    return out, rows


def _fold_row(k: int, fold: WindowSet, predicted: Any) -> dict[str, Any]:
    """A fold's scores (in prices, its own naive beside) for ``reports/backtest``."""
    from stockcast.evaluate import score

    scores = score(fold, predicted, fold.test_idx, "fold")
    return {
        "fold": k,
        "mase": scores["fold_mase"],
        "rmse_vs_naive": scores["fold_rmse_vs_naive"],
        "rmse": scores["fold_rmse"],
        "first_date": str(fold.dates[fold.test_idx[0]]),
    }


def _plot(ws: WindowSet, predicted: Any, scores: dict[str, Any], title: str, path: Path) -> None:
    from stockcast.evaluate import plot_forecast
    from stockcast.tracking import half_widths

    plot_forecast(ws, ws.test_idx, predicted, title, path, half_widths(scores))


def _fold_summary(rows: list[dict[str, float]], expected: int) -> dict[str, float]:
    """Mean and standard deviation over folds; NaN when a fold is missing (not promotable)."""
    import numpy as np

    out: dict[str, float] = {"backtest_folds": float(len(rows))}
    complete = expected > 0 and len(rows) == expected
    for key in ("mase", "rmse_vs_naive", "rmse"):
        values = np.array([r[key] for r in rows], dtype="float64")
        out[f"backtest_{key}_mean"] = float(values.mean()) if complete else float("nan")
        out[f"backtest_{key}_std"] = float(values.std()) if complete else float("nan")
    return out


def _write_backtest(rows: pd.DataFrame, paths: Paths) -> None:
    """Per-fold metrics as CSV (for ``dvc plots``) and one bar chart per ticker."""
    from stockcast.evaluate import plot_backtest

    paths.backtest_reports.mkdir(parents=True, exist_ok=True)
    for old in paths.backtest_reports.glob("*.csv"):
        old.unlink()
    if rows.empty:
        return
    for ticker, group in rows.groupby("ticker"):
        group.to_csv(paths.backtest_reports / f"{ticker}.csv", index=False)
        plot_backtest(
            group, f"{ticker}: walk-forward backtest", paths.plots / f"{ticker}_backtest.png"
        )


def _swap_dir(new: Path, target: Path) -> None:
    """Replace ``target`` by ``new`` with renames only, keeping ``target`` until the last step."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def register(cfg: Config, paths: Paths, run_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Stage 6: log the run to MLflow, register each ticker's best variant, gate ``@champion``.

    One parent run per pipeline run; one child run per (ticker, variant). The variant with the
    lowest validation loss is registered as a new version of ``<prefix>-<TICKER>``; the alias
    moves only if :func:`stockcast.tracking.decide_promotion` says so. The decision and its
    reason are tags on the version; ``reports/registry.json`` records them too.

    Args:
        cfg: the configuration.
        paths: project paths.
        run_tags: extra tags for every run (e.g. the orchestrator's run id).
    """
    import mlflow
    from mlflow import MlflowClient

    from stockcast import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri(paths.root))
    client = MlflowClient()
    experiment_id = tracking.ensure_experiment(client, cfg.register.experiment, paths.root)
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    sets = read_windows(paths.processed)
    trained = read_train_summary(paths)
    tags = {**tracking.lineage_tags(cfg, paths.root), **(run_tags or {})}
    decisions: dict[str, Any] = {}
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name="pipeline",
        tags={**tags, "ticker": ",".join(ws.ticker for ws in sets)},
    ) as parent:
        mlflow.log_params(tracking.flat_params(cfg))
        if paths.validation_reports.exists():  # JSON result and HTML Data Docs
            mlflow.log_artifacts(str(paths.validation_reports), artifact_path="validation")
        ingest_report = paths.ingested.with_name("ingest.json")
        if ingest_report.exists():  # the repairs made on the way in
            mlflow.log_artifact(str(ingest_report), artifact_path="validation")
        if paths.drift.exists():  # new data against the training span
            mlflow.log_artifact(str(paths.drift), artifact_path="drift")
            report = json.loads(paths.drift.read_text(encoding="utf-8"))
            mlflow.set_tag("drift", str(report["drift"]))
            for d in report["tickers"]:
                mlflow.log_metrics(
                    {
                        f"{d['ticker']}.drift_ks_p_value": d["ks_p_value"],
                        f"{d['ticker']}.drift_levene_p_value": d["levene_p_value"],
                        f"{d['ticker']}.drift_volatility_ratio": d["volatility_ratio"],
                    }
                )
        for ws in sets:
            candidates = {}
            for name, scores in metrics[ws.ticker].items():
                if name == "baselines":
                    continue
                with mlflow.start_run(
                    experiment_id=experiment_id,
                    nested=True,
                    parent_run_id=parent.info.run_id,
                    run_name=f"{ws.ticker}-{name}",
                    tags={**tags, "ticker": ws.ticker, "variant": name},
                ):
                    result = trained[ws.ticker].get(name)
                    if "error" in scores:
                        mlflow.set_tag("error", scores["error"])
                        mlflow.end_run(status="FAILED")
                        continue
                    plot = paths.plots / f"{ws.ticker}_{name}.png"
                    uri = tracking.log_candidate(mlflow, ws, name, scores, cfg, result, plot)
                    candidates[name] = (scores, uri)
            fold_plot = paths.plots / f"{ws.ticker}_backtest.png"
            if fold_plot.exists():
                mlflow.log_artifact(str(fold_plot), artifact_path="backtest")
            base = metrics[ws.ticker]["baselines"]
            mlflow.log_metrics({f"{ws.ticker}.{k}": v for k, v in base.items()})
            decisions[ws.ticker] = _register_best(mlflow, client, cfg, ws, candidates, tags)
    write_json(paths.registry, decisions)
    return decisions


def _register_best(
    mlflow: Any,
    client: Any,
    cfg: Config,
    ws: WindowSet,
    candidates: dict[str, tuple[dict[str, Any], str]],
    tags: dict[str, str],
) -> dict[str, Any]:
    """Register the best forecaster of the selection span, network or baseline, and move
    ``@champion`` to it if it passes the gates and beats the current champion."""
    from stockcast import tracking

    source = "backtest" if cfg.backtest.folds else "val"
    r = cfg.register
    name, why = tracking.choose_candidate(
        {n: c[0] for n, c in candidates.items()}, source, r.min_improvement, r.max_p_value
    )
    scores, uri = candidates[name]
    model_name = r.model_name(ws.ticker)
    current = tracking.champion_rmse(mlflow, client, model_name, ws)
    version = mlflow.register_model(
        uri,
        model_name,
        tags={
            "variant": name,
            "kind": scores["kind"],
            "selected_on": f"{source} rmse",
            "selection": why,
            **tags,
        },
    )
    mase = "backtest_mase_mean" if source == "backtest" else "val_mase"
    gate = {
        "rmse_vs_best_baseline": scores.get(f"{source}_rmse_vs_best_baseline", float("nan")),
        "rmse_vs_naive": scores.get(f"{source}_rmse_vs_naive", float("nan")),
        "mase": scores.get(mase, float("nan")),
    }
    decision = tracking.decide_promotion(
        scores["test_rmse"],
        current[0] if current else None,
        gate,
        tracking.gates(cfg),
        current[1] if current else None,
        source,
    )
    for key, value in {
        "promotion": "promoted" if decision.promote else "rejected",
        "promotion_reason": decision.reason,
        "previous_champion": decision.previous_version or "none",
    }.items():
        client.set_model_version_tag(model_name, version.version, key, value)
    if decision.promote:  # the very last step: a failure before it never moves the alias
        client.set_registered_model_alias(model_name, tracking.CHAMPION, version.version)
    return {
        "model": model_name,
        "version": version.version,
        "variant": name,
        "kind": scores["kind"],
        "selection": why,
        **asdict(decision),
    }
