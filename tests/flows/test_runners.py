"""The whole pipeline with the ``processes`` runner and ``train.scope: global``: both as the
README promises them, on two tickers, from ``make pipeline`` to a champion per ticker."""

from __future__ import annotations

import filecmp
import json

import pytest
from mlflow import MlflowClient

from stockcast.config import VARIANTS
from tests.flows.project import make_project, pipeline

pytestmark = pytest.mark.e2e


def test_processes_runner_with_one_global_model_per_variant(tmp_path):
    import yaml

    env = make_project(
        tmp_path,
        execution={"runner": "processes", "max_workers": 2},
        train={"scope": "global", "variants": ["simple_rnn", "gru"]},
    )
    # a second ticker: the same days at half the price with its own noise-free drift
    raw = (tmp_path / "data/raw/SH600519.csv").read_text().splitlines()
    header = raw[0].split(",")
    price_columns = [i for i, c in enumerate(header) if c in ("open", "high", "low", "close")]
    rows = []
    for k, line in enumerate(raw[1:]):
        cells = line.split(",")
        for i in price_columns:
            cells[i] = f"{float(cells[i]) * 0.5 * (1 + 0.0005 * k):.3f}"
        rows.append(",".join(cells))
    (tmp_path / "data/raw/HALF.csv").write_text("\n".join([raw[0], *rows]) + "\n")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["data"]["sources"].append({"path": "data/raw/HALF.csv", "ticker": "HALF"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    result = pipeline(tmp_path, env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    said = result.stdout + result.stderr
    # each global fit is logged once, not once for every ticker it serves
    assert said.count("_global/gru fold 0: best val_loss") == 1
    assert "HALF/gru fold 0: best val_loss" not in said
    assert "each global model serves all 2 tickers" in said
    summary = json.loads((tmp_path / "models/train.json").read_text())
    assert sorted(summary) == ["HALF", "SH600519"]
    for variant in ("simple_rnn", "gru"):
        records = [summary[t][variant] for t in ("HALF", "SH600519")]
        assert all(r["error"] is None for r in records)
        # one network trained in a worker process, shared by both tickers
        assert all(r["worker"].startswith("global: ") for r in records)
        assert records[0]["worker"] == records[1]["worker"]
        assert "MainProcess" not in records[0]["worker"]
        assert filecmp.cmp(records[0]["model_path"], records[1]["model_path"], shallow=False)
    assert set(VARIANTS) - {"simple_rnn", "gru"} == {"lstm"}
    assert not (tmp_path / "models/SH600519/lstm").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    for ticker in ("HALF", "SH600519"):
        champion = client.get_model_version_by_alias(f"stockcast-{ticker}", "champion")
        assert champion.tags["promotion"] == "promoted"
