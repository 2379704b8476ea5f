"""The ingest and validate stages on a temporary project: what a failure keeps and skips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stockcast.config import config_from_dict
from stockcast.errors import ValidationFailed
from stockcast.paths import Paths
from stockcast.stages import ingest, validate, window
from tests.conftest import PROJECT, synthetic_prices, write_yahoo_csv

TODAY = pd.Timestamp("2026-11-22")


def _config(on_failure: str):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["data"]["sources"] = [{"path": "data/raw"}]
    raw["validate"]["on_failure"] = on_failure
    raw["window"] = {"window": 10, "val_days": 30, "test_days": 30}
    raw["backtest"] = {"folds": 2, "fold_days": 20}  # needs 80 + 40 = 120 of the 150 rows
    return config_from_dict(raw)


@pytest.fixture
def project(tmp_path: Path) -> Paths:
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    write_yahoo_csv(synthetic_prices(150, "GOOD"), raw / "GOOD.csv")
    write_yahoo_csv(synthetic_prices(150, "BAD", seed=3), raw / "BAD.csv")
    return Paths(tmp_path)


def _break(paths: Paths) -> None:
    path = paths.root / "data/raw/BAD.csv"
    lines = path.read_text().splitlines()
    cells = lines[4].split(",")
    cells[3] = str(float(cells[2]) * 2)  # Low above High
    lines[4] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_stop_keeps_the_last_validated_table(project: Paths):
    cfg = _config("stop")
    ingest.run(cfg, project)
    validate.run(cfg, project, today=TODAY)
    digest = hashlib.md5(project.validated.read_bytes()).hexdigest()
    _break(project)
    ingest.run(cfg, project)
    with pytest.raises(ValidationFailed) as err:
        validate.run(cfg, project, today=TODAY)
    assert "validation failed for ['BAD']" in str(err.value)
    assert "BAD (from data/raw/BAD.csv): FAILED" in err.value.report
    assert "GOOD (from data/raw/GOOD.csv): passed" in err.value.report
    assert hashlib.md5(project.validated.read_bytes()).hexdigest() == digest
    assert '"success": false' in (project.validation_reports / "validation.json").read_text()


def test_skip_ticker_trains_on_the_tickers_that_pass(project: Paths):
    cfg = _config("skip_ticker")
    _break(project)
    ingest.run(cfg, project)
    report = validate.run(cfg, project, today=TODAY)
    assert report.failed_tickers == ["BAD"]
    validated = pd.read_parquet(project.validated)
    assert validated["ticker"].unique().tolist() == ["GOOD"]
    sets = window.run(cfg, project)
    assert [ws.ticker for ws in sets] == ["GOOD"]


def test_window_stage_writes_backtest_folds_that_end_at_the_test_span(project: Paths):
    from stockcast import transforms
    from stockcast.windows import MinMaxScaler, read_folds

    # a jump on row 85: inside the main model's training rows (1..89), after every fold's
    raw = project.root / "data/raw/GOOD.csv"
    lines = raw.read_text().splitlines()
    cells = lines[1 + 85].split(",")
    for column in (1, 2):  # Open and High up 8%
        cells[column] = str(float(cells[column]) * 1.08)
    lines[1 + 85] = ",".join(cells)
    raw.write_text("\n".join(lines) + "\n")
    cfg = _config("stop")
    ingest.run(cfg, project)
    validate.run(cfg, project, today=TODAY)
    (ws,) = [w for w in window.run(cfg, project) if w.ticker == "GOOD"]
    folds = read_folds(project.processed, "GOOD")
    assert [len(f.prices) for f in folds] == [100, 120]  # 150 - 30 test, minus 20 per fold
    assert folds[-1].dates[-1] < ws.dates[ws.test_idx[0]]  # never into the test span
    f = cfg.features

    def fitted_on_training_rows(w, test_days: int) -> MinMaxScaler:
        target = transforms.feature_matrix(w.ohlcv, "open", f.target_transform, f.inputs, f.anchor)
        return MinMaxScaler.fit(target[1 : len(w.prices) - test_days - 30, 0])

    assert ws.scaler == fitted_on_training_rows(ws, 30)
    for fold in folds:  # each refitted on its own training rows, which lack the jump
        assert fold.scaler == fitted_on_training_rows(fold, 20)
        assert fold.scaler.high < ws.scaler.high


def test_drift_and_train_records_as_stage_shells(project: Paths):
    from stockcast.stages import drift
    from stockcast.stages.train import read_backtest_summary, read_summary, write_summary
    from stockcast.train import TrainResult

    cfg = _config("stop")
    ingest.run(cfg, project)
    validate.run(cfg, project, today=TODAY)
    report = drift.run(cfg, project)
    assert json.loads(project.drift.read_text())["tickers"] == report["tickers"]
    assert {d["ticker"] for d in report["tickers"]} == {"BAD", "GOOD"}
    assert set(report["newest_day"]) == {"BAD", "GOOD"}
    results = [
        TrainResult("GOOD", "gru", fold=0, best_val_loss=0.1),
        TrainResult("GOOD", "gru", fold=1, error="boom"),
    ]
    main = write_summary(results, project)
    assert read_summary(project) == main == {"GOOD": {"gru": results[0]}}
    assert read_backtest_summary(project) == {"GOOD": {"gru": [results[1]]}}
