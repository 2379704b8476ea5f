"""What ``make pipeline`` does to spend less wall time while no model fits (issue 13)."""

from __future__ import annotations

import sys

from flows.plan import stage_settings
from flows.warmup import AFTER_TRAIN, BEFORE_VALIDATE, preload


def test_preload_imports_in_the_background_and_leaves_a_failing_module_to_its_stage():
    sys.modules.pop("colorsys", None)
    thread = preload(("stockcast_no_such_module", "colorsys"))
    thread.join(timeout=30)
    assert not thread.is_alive() and thread.daemon
    assert "colorsys" in sys.modules  # the module after the failing one still imported
    assert "stockcast_no_such_module" not in sys.modules


def test_what_is_preloaded_are_modules_the_later_stages_import():
    import importlib.util

    for module in (*BEFORE_VALIDATE, *AFTER_TRAIN):
        assert importlib.util.find_spec(module) is not None, module


def test_a_stage_flow_runs_without_a_heartbeat_and_the_pipeline_flow_keeps_its_own():
    from prefect.settings import get_current_settings

    assert get_current_settings().flows.heartbeat_frequency is not None
    with stage_settings():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency is not None


def test_preload_then_calls_the_follow_up_and_survives_its_failure():
    called = []

    def fail() -> None:
        called.append("fail")
        raise RuntimeError("no store")

    preload((), then=fail).join(timeout=30)
    preload(("json",), then=lambda: called.append("ok")).join(timeout=30)
    assert called == ["fail", "ok"]


def test_prepare_store_creates_the_projects_tracking_store(tmp_path, monkeypatch):
    import mlflow

    from stockcast.tracking import prepare_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    try:
        prepare_store(tmp_path)
    finally:
        mlflow.set_tracking_uri(before)
    assert (tmp_path / "mlflow.db").stat().st_size > 0


def test_stockcast_run_help_names_the_command_and_reads_as_plain_text():
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "flows.repro", "--help"], capture_output=True, text=True
    ).stdout
    assert shown.startswith("usage: stockcast run ")
    assert "``" not in shown and ":mod:" not in shown and "python -m flows.repro" not in shown
