"""The champion a run leaves: window, train, evaluate and register stages in-process on
synthetic series whose best forecaster is known, with a real MLflow store in tmp_path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockcast.config import config_from_dict
from stockcast.paths import Paths, write_parquet
from stockcast.promotion import Gate, choose_candidate, decide_promotion
from stockcast.stages import evaluate, register, window
from stockcast.stages.train import write_summary
from stockcast.train import fit_variant
from stockcast.windows import read_folds, read_windows

pytestmark = pytest.mark.fits  # trains networks: `make mutate` leaves these out


def _frame(opens: np.ndarray, closes: np.ndarray) -> pd.DataFrame:
    n = len(opens)
    return pd.DataFrame(
        {
            "date": pd.bdate_range("2012-01-02", periods=n),
            "ticker": "SYN",
            "open": opens,
            "high": np.maximum(opens, closes) * 1.002,
            "low": np.minimum(opens, closes) * 0.998,
            "close": closes,
            "volume": np.full(n, 1e5),
        }
    )


def _cfg(**features):
    return config_from_dict(
        {
            "data": {"sources": ["unused.csv"]},
            "window": {"window": 10, "val_days": 150, "test_days": 150},
            "backtest": {"folds": 2, "fold_days": 100},
            "features": {"target_transform": "log_return", **features},
            "train": {"variants": ["gru"], "units": [16], "epochs": 30, "patience": 5},
        }
    )


def _train(cfg, paths: Paths) -> None:
    results = []
    for ws in read_windows(paths.processed):
        for fold, data in enumerate([ws, *read_folds(paths.processed, ws.ticker)]):
            for variant in cfg.train.variants:
                out = paths.variant_dir(ws.ticker, variant) / (f"fold{fold}" if fold else "")
                results.append(replace(fit_variant(data, variant, cfg.train, 7, out), fold=fold))
    write_summary(results, paths)


def _run(root: Path, frame: pd.DataFrame, cfg) -> tuple[dict, dict]:
    paths = Paths(root)
    write_parquet(frame, paths.validated)
    window.run(cfg, paths)
    _train(cfg, paths)
    report = evaluate.run(cfg, paths)["SYN"]
    heard: list[str] = []
    decisions = register.run(cfg, paths, progress=heard.append)
    assert heard == ["logged and registered 1 of 1 tickers"]  # where a long stage is
    return report.candidates, decisions["SYN"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # SQLite at the project root
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_trending_series_fails_the_old_mase_gate_and_passes_the_new_one(store):
    rng = np.random.default_rng(3)
    closes = 20 * np.exp(np.cumsum(rng.normal(0.003, 0.012, 800)))  # x10 over the series
    opens = np.r_[closes[0], closes[:-1]] * np.exp(rng.normal(0, 0.004, 800))
    cfg = _cfg()
    cfg = replace(cfg, train=replace(cfg.train, epochs=2))
    entry, decision = _run(store, _frame(opens, closes), cfg)
    chosen = entry[decision["variant"]]
    mase = chosen.fold_mean("mase")  # the old gate: mean backtest MASE below 1
    assert mase > 1.0  # scaled by the cheap early years
    old = (Gate("mase", 1.0, strict=True),)
    assert not decide_promotion(chosen.test.rmse, None, {"mase": mase}, old).promote
    assert decision["promote"] is True and "no champion yet" in decision["reason"]


def test_when_last_close_is_exact_the_champion_is_the_last_close_baseline(store):
    import mlflow

    rng = np.random.default_rng(4)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, 700)))
    opens = np.r_[closes[0], closes[:-1]]  # every open is the previous close
    entry, decision = _run(store, _frame(opens, closes), _cfg())
    assert decision["variant"] == "last_close" and decision["kind"] == "baseline"
    assert decision["promote"] is True
    assert entry["last_close"].test.rmse == pytest.approx(0.0, abs=1e-9)
    assert entry["gru"].backtest.rmse_vs_best_baseline > 1.0  # the network is said to lose
    model = mlflow.pyfunc.load_model("models:/stockcast-SYN@champion")
    assert model.metadata.metadata["kind"] == "baseline"
    (ws,) = read_windows(Paths(store).processed)
    out = model.predict(ws.raw_inputs(ws.test_idx[-5:]))
    np.testing.assert_allclose(out["forecast"], ws.prices[ws.test_idx[-5:]])


def test_a_network_that_learns_structure_beats_every_baseline_and_becomes_champion(store):
    rng = np.random.default_rng(5)
    returns = np.zeros(900)
    for t in range(1, 900):  # AR(1) in daily returns: momentum a network can learn
        returns[t] = 0.7 * returns[t - 1] + rng.normal(0, 0.01)
    opens = 100 * np.exp(np.cumsum(returns))
    entry, decision = _run(store, _frame(opens, opens), _cfg())
    assert decision["variant"] == "gru" and decision["kind"] == "network", decision
    assert decision["promote"] is True
    assert entry["gru"].backtest.rmse_vs_best_baseline < 0.95
    assert entry["gru"].backtest.dm_p_value < 0.05
    assert entry["gru"].test.rmse_vs_best_baseline < 1.0


def test_test_span_prices_change_no_choice_and_no_interval_width(tmp_path: Path):
    rng = np.random.default_rng(6)
    closes = 30 * np.exp(np.cumsum(rng.normal(0.001, 0.015, 700)))
    opens = np.r_[closes[0], closes[:-1]] * np.exp(rng.normal(0, 0.006, 700))
    cfg = _cfg()
    cfg = replace(cfg, train=replace(cfg.train, epochs=2))
    paths = Paths(tmp_path)
    frame = _frame(opens, closes)
    write_parquet(frame, paths.validated)
    window.run(cfg, paths)
    _train(cfg, paths)
    before = evaluate.run(cfg, paths)["SYN"].candidates
    shocked = frame.copy()
    test_rows = shocked.index >= len(frame) - 150
    for column in ("open", "high", "low", "close"):
        shocked.loc[test_rows, column] *= rng.uniform(0.7, 1.3, test_rows.sum())
    write_parquet(shocked, paths.validated)
    window.run(cfg, paths)  # the trained models stay: they never saw the test span
    after = evaluate.run(cfg, paths)["SYN"].candidates
    assert choose_candidate(before, "backtest") == choose_candidate(after, "backtest")
    for name, scores in before.items():
        assert scores.interval_halfwidths and (
            scores.interval_halfwidths == after[name].interval_halfwidths
        )
        assert scores.backtest.rmse == after[name].backtest.rmse
        assert scores.test.rmse != after[name].test.rmse  # the shock did reach the test
