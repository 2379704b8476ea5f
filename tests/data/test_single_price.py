"""A series with a date and one price column (an index level, an FX rate, a fund's NAV, the
tutorials' airline passengers), daily, weekly or monthly: through ingest, the gate and the
window stage, with the checks it cannot take reported as skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stockcast import evaluate
from stockcast.config import config_from_dict
from stockcast.errors import ConfigError
from stockcast.paths import Paths
from stockcast.stages import ingest, validate, window
from stockcast.validate import step_days
from tests.conftest import PROJECT

TODAY = pd.Timestamp("2026-11-22")


def _monthly(path: Path, months: int = 144) -> pd.Series:
    """An airline-passengers-like series: trend, a yearly season, multiplicative noise."""
    rng = np.random.default_rng(1949)
    k = np.arange(months)
    level = (110 + 2.4 * k) * (1 + 0.15 * np.sin(2 * np.pi * (k % 12) / 12))
    level *= np.exp(rng.normal(0, 0.02, months))
    dates = pd.date_range("1949-01-01", periods=months, freq="MS")
    pd.DataFrame({"Month": dates.strftime("%Y-%m"), "Passengers": level.round(1)}).to_csv(
        path, index=False
    )
    return pd.Series(level.round(1), index=dates)


def _config(**features) -> object:
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["data"] = {
        "target": "close",
        "sources": [
            {
                "path": "data/raw/airline.csv",
                "ticker": "AIRLINE",
                "columns": {"date": "Month", "close": "Passengers"},
                "date_format": "%Y-%m",
            }
        ],
    }
    raw["window"] = {"window": 12, "val_days": 24, "test_days": 24}
    raw["backtest"] = {"folds": 1, "fold_days": 24}
    raw["features"].update(features)
    return config_from_dict(raw)


@pytest.fixture
def project(tmp_path: Path) -> Paths:
    (tmp_path / "data/raw").mkdir(parents=True)
    _monthly(tmp_path / "data/raw/airline.csv")
    return Paths(tmp_path)


def test_a_monthly_single_price_series_goes_through_the_gate_and_into_windows(project):
    cfg = _config(anchor="target", inputs=[])
    result = ingest.run(cfg, project)
    assert result.absent == {"AIRLINE": ["open", "high", "low", "volume"]}
    assert any("no open, high, low, volume column(s)" in r for r in result.repairs)
    report = validate.run(cfg, project, today=TODAY)
    (ticker,) = report.results
    assert ticker.success, report.summary()
    # monthly steps are no gaps; the checks on absent columns are skipped, and said so
    assert ticker.warnings == []
    assert ticker.absent == ["high", "low", "open", "volume"]
    assert "expect_column_pair_values_a_to_be_greater_than_b(high, low)" in ticker.skipped
    assert "expect_column_values_to_not_be_null(volume)" in ticker.skipped
    assert not any(s.endswith("(close)") for s in ticker.skipped)  # the price is checked
    assert "skipped 20 expectations on high, low, open, volume" in report.summary()
    saved = json.loads((project.validation_reports / "validation.json").read_text())
    assert saved["results"][0]["skipped"] == ticker.skipped

    (ws,) = window.run(cfg, project)
    assert ws.ticker == "AIRLINE" and ws.scaled.shape[1] == 1 and np.isfinite(ws.scaled).all()
    assert len(ws.test_idx) == 24
    rules = evaluate.baselines(ws, ws.test_idx)
    # no close: no last_close rule; a monthly series: the value a year back
    assert set(rules) == {"naive", "drift", "moving_average", "seasonal_naive"}
    actual = ws.prices[ws.test_idx]
    assert np.allclose(rules["naive"], ws.prices[ws.test_idx - 1])
    assert np.allclose(rules["seasonal_naive"], ws.prices[ws.test_idx - 12])
    assert np.isfinite(evaluate.regression_metrics(actual, rules["drift"])["rmse"])


def test_the_default_inputs_on_a_series_without_them_name_the_settings_to_change(project):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    assert raw["features"]["inputs"] == ["intraday"]  # what a user would start from
    cfg = config_from_dict(
        {
            **yaml.safe_load((PROJECT / "params.yaml").read_text()),
            "data": {
                "target": "open",
                "sources": [
                    {
                        "path": "data/raw/airline.csv",
                        "ticker": "AIRLINE",
                        "columns": {"date": "Month", "open": "Passengers"},
                        "date_format": "%Y-%m",
                    }
                ],
            },
            "window": {"window": 12, "val_days": 24, "test_days": 24},
            "backtest": {"folds": 0, "fold_days": 24},
        }
    )
    ingest.run(cfg, project)
    validate.run(cfg, project, today=TODAY)
    with pytest.raises(ConfigError) as err:
        window.run(cfg, project)
    said = str(err.value)
    assert "AIRLINE has no close column (its source maps only open)" in said
    assert "features.anchor: close" in said and "features.inputs: intraday" in said
    assert "features.anchor: target and features.inputs: []" in said


def test_a_mapping_needs_the_target_and_a_date():
    base = yaml.safe_load((PROJECT / "params.yaml").read_text())
    source = {"path": "x.csv", "columns": {"date": "Month", "close": "Passengers"}}
    with pytest.raises(ConfigError, match="has no 'open', the forecast target"):
        config_from_dict({**base, "data": {"target": "open", "sources": [source]}})
    with pytest.raises(ConfigError, match="needs date and at least the target price"):
        config_from_dict(
            {**base, "data": {"sources": [{"path": "x.csv", "columns": {"close": "P"}}]}}
        )


@pytest.mark.parametrize(
    ("freq", "step", "missing", "warned"),
    [
        ("B", 1, 5, False),  # a week of holidays in a daily series
        ("B", 1, 15, True),  # three weeks gone
        ("W-FRI", 7, 1, False),  # one week missing from a weekly series: 14 days
        ("W-FRI", 7, 3, True),  # four weeks without a row
        ("MS", 31, 1, True),  # a month missing from a monthly series
    ],
)
def test_the_gap_warning_follows_the_series_frequency(tmp_path, freq, step, missing, warned):
    from stockcast.validate import validate_prices

    dates = pd.date_range("2010-01-01", periods=200, freq=freq)
    dates = dates.delete(range(100, 100 + missing))
    price = 100 + np.sin(np.arange(len(dates)) / 5)
    frame = pd.DataFrame(
        {
            "date": dates,
            "ticker": "X",
            "open": np.nan,
            "high": np.nan,
            "low": np.nan,
            "close": price,
            "volume": np.nan,
        }
    )
    assert step_days(frame["date"]) == step
    report = validate_prices(
        frame, 50, tmp_path, today=TODAY, absent={"X": ["open", "high", "low", "volume"]}
    )
    gaps = [w for w in report.results[0].warnings if w.column == "gap_days"]
    assert bool(gaps) is warned, report.summary()
    assert report.success


@pytest.mark.parametrize(("every", "step"), [("D", 1), ("2D", 1), ("3D", 1), ("4D", 4), ("7D", 7)])
def test_a_step_of_up_to_three_days_is_daily(every, step):
    """Rows two or three days apart are a daily series with gaps (trading days, holidays),
    so its gap warning keeps the daily threshold; from four days on the step is the series'."""
    dates = pd.Series(pd.date_range("2020-01-01", periods=30, freq=every))
    assert step_days(dates) == step


def test_the_suites_move_warning_defaults_to_a_quarter():
    """``build_suite`` called without ``max_daily_move`` warns past a 25 % move, as
    ``validate.max_daily_move`` does by default."""
    import great_expectations as gx

    from stockcast.validate import build_suite

    gx.get_context(mode="ephemeral")  # a suite is built inside a context
    suite = build_suite(100, TODAY)
    moves = [
        e.configuration.kwargs
        for e in suite.expectations
        if e.configuration.kwargs.get("column") == "daily_move"
    ]
    assert moves and all(kw["max_value"] == 0.25 for kw in moves)
