"""Live skill as MLflow metric history, and decay acted on, against a real SQLite store."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from stockcast import ledger, live
from stockcast.registry import CHAMPION, replace_with_rule
from stockcast.stages import forecast
from tests.conftest import json_receiver
from tests.model.baseline_run import baseline_run
from tests.unit.test_decay import served


def scored_rows(version: str, bias_from: int = 60) -> pd.DataFrame:
    frame = served(bias_from=bias_from, n=30).assign(
        model_version=version, variant="x", recorded_at="2026-01-01T00:00:00Z"
    )
    frame["lower_80"], frame["upper_80"] = frame["forecast"] - 1, frame["forecast"] + 1
    frame["hit_80"] = (frame["actual"] >= frame["lower_80"]) & (
        frame["actual"] <= frame["upper_80"]
    )
    return frame.assign(ticker="TEST")


def test_live_skill_is_metric_history_one_point_per_day_logged_once(tmp_path, sqlite_store):
    run = baseline_run(tmp_path)
    version = str(run.register()["TEST"]["version"])
    table = scored_rows(version)
    first = table.iloc[:20]
    assert live.log_history(run.cfg, run.paths.root, first) == {"TEST": 20}
    client = sqlite_store
    (live_run,) = client.search_runs(
        [client.get_experiment_by_name("stockcast").experiment_id],
        filter_string=f"tags.`{live.LIVE_TAG}` = 'TEST'",
    )
    assert live_run.info.run_name == "live-TEST"
    points = client.get_metric_history(live_run.info.run_id, "live_rmse_20")
    days = [pd.Timestamp(p.timestamp, unit="ms") for p in points]
    assert days == list(pd.to_datetime(first["actual_date"]))  # the trading day is the time
    assert [p.step for p in points] == list(range(1, 21))
    expected = ledger.live_metrics(first)["live_rmse_20"]
    assert points[-1].value == pytest.approx(expected)

    # Again with 10 more days: only the new days are logged, on the same run.
    assert live.log_history(run.cfg, run.paths.root, table) == {"TEST": 10}
    assert len(client.get_metric_history(live_run.info.run_id, "live_rmse_20")) == 30
    # The version's own training run carries its history too.
    source = client.get_model_version("stockcast-TEST", version).run_id
    assert len(client.get_metric_history(source, "live_coverage_80")) == 30
    assert live.log_history(run.cfg, run.paths.root, table) == {"TEST": 0}


def _versions(run, client) -> tuple[str, str]:
    """A last_close version and a newer network champion of TEST (real versions, made from
    the baseline run's logged model)."""
    first = client.get_model_version("stockcast-TEST", str(run.register()["TEST"]["version"]))
    rule = client.create_model_version(
        "stockcast-TEST", first.source, first.run_id, tags={"variant": "last_close"}
    )
    network = client.create_model_version(
        "stockcast-TEST", first.source, first.run_id, tags={"variant": "gru"}
    )
    client.set_registered_model_alias("stockcast-TEST", CHAMPION, network.version)
    return rule.version, network.version


def test_a_decayed_network_champion_is_replaced_by_the_rule_and_the_operator_told(
    tmp_path, sqlite_store, monkeypatch
):
    run = baseline_run(tmp_path)
    client = sqlite_store
    rule, network = _versions(run, client)
    bad = scored_rows(network, bias_from=5)
    reading = live.decay("TEST", bad, run.cfg.monitor)
    assert reading is not None and reading.decayed
    seen = forecast.Monitoring(ledger.Recorded(0), {}, [reading], pd.DataFrame())
    with json_receiver() as (port, got):
        monkeypatch.setenv("STOCKCAST_NOTIFY_URL", f"json://127.0.0.1:{port}/n")
        notes = forecast.act_on_decay(run.cfg, run.paths.root, seen, logging.getLogger("t"))
    now = client.get_model_version_by_alias("stockcast-TEST", CHAMPION)
    assert now.version == rule
    assert now.tags["restored_as_rule"] == reading.message(run.cfg.monitor)
    assert now.tags["previous_champion"] == str(network)  # a rollback goes back to it
    replaced = client.get_model_version("stockcast-TEST", network).tags["replaced_by_rule"]
    assert replaced == reading.message(run.cfg.monitor)
    assert f"stockcast-TEST: @champion moved to the last_close rule (v{rule})." in notes
    assert [(g["title"], g["type"]) for g in got] == [
        ("stockcast: TEST champion decayed", "warning")
    ]
    # The rule is champion now: nothing more to move.
    assert replace_with_rule(client, "stockcast-TEST", "last_close", "again") is None


def test_with_on_decay_warn_the_champion_stays(tmp_path, sqlite_store):
    run = baseline_run(tmp_path, monitor={"on_decay": "warn"})
    client = sqlite_store
    _, network = _versions(run, client)
    reading = live.decay("TEST", scored_rows(network, bias_from=5), run.cfg.monitor)
    seen = forecast.Monitoring(ledger.Recorded(0), {}, [reading], pd.DataFrame())
    notes = forecast.act_on_decay(run.cfg, run.paths.root, seen, logging.getLogger("t"))
    assert client.get_model_version_by_alias("stockcast-TEST", CHAMPION).version == network
    assert notes == [f"**Decay:** {reading.message(run.cfg.monitor)}."]
