"""The registry as users read it, on a real MLflow store with baseline candidates (no fits):
a rerun of the same code, params, data and scores is "already registered", every version
says what it scored and why it was or was not promoted, runs have readable names, and
``stockcast rollback`` works as a command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stockcast import packaging, registry, tracking
from stockcast.config import config_from_dict
from stockcast.evaluate import baseline_candidates, score_candidates
from stockcast.windows import make_windows
from tests.conftest import synthetic_prices

WIDTHS = {"80": 0.01, "95": 0.02}
SPAN = "val"  # backtest.folds: 0 below: validation chooses
CLEAN = {"git_commit": "abc123", "git_dirty": "False", "params_hash": "p1", "dvc_dataset_md5": "d1"}


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield mlflow, MlflowClient()
    mlflow.set_tracking_uri(None)


def _candidates(mlflow, ws):
    forecasts = baseline_candidates(ws, [], 5)
    scores = score_candidates(ws, [], forecasts, (0.8, 0.95))
    out = {}
    for rule, s in scores.items():
        with mlflow.start_run():
            out[rule] = registry.Candidate(
                s, packaging.log_forecaster(mlflow, ws, None, WIDTHS, rule)
            )
    return out


def test_the_same_registration_twice_is_already_registered(store):
    mlflow, client = store
    ws = make_windows(synthetic_prices(200, "TEST"), "open", 10, 40, 40)
    cfg = config_from_dict({"data": {"sources": ["x.csv"]}, "backtest": {"folds": 0}})
    candidates = _candidates(mlflow, ws)
    first = registry.register_best(mlflow, client, cfg.register, SPAN, ws, candidates, CLEAN)
    assert str(first["version"]) == "1" and first["promote"] and "already_registered" not in first
    version = client.get_model_version("stockcast-TEST", "1")
    chosen = candidates[first["variant"]].scores.test
    assert version.description.startswith(f"{first['variant']} (baseline). Test RMSE ")
    assert f"Test RMSE {chosen.rmse:.4f}" in version.description
    assert f"({chosen.best_baseline})" in version.description
    assert "Promoted: no champion yet" in version.description

    again = registry.register_best(mlflow, client, cfg.register, SPAN, ws, candidates, CLEAN)
    assert again["already_registered"] and str(again["version"]) == "1" and again["promote"]
    assert again["reason"].startswith("already registered as v1 (same code, params, data")
    assert len(client.search_model_versions("name = 'stockcast-TEST'")) == 1

    # uncommitted code, other params or other data: registered anew
    for changed in ({"git_dirty": "True"}, {"params_hash": "p2"}, {"dvc_dataset_md5": "d2"}):
        tags = {**CLEAN, **changed}
        out = registry.register_best(mlflow, client, cfg.register, SPAN, ws, candidates, tags)
        assert "already_registered" not in out, changed
    assert len(client.search_model_versions("name = 'stockcast-TEST'")) == 4
    second = client.get_model_version("stockcast-TEST", "2")
    assert "Not promoted: test rmse" in second.description  # a tie with champion v1


def _rules(ws, ma_window=5):
    return {
        r: packaging.forecaster_id(r, ws, ma_window)
        for r in ("naive", "drift", "moving_average", "last_close")
    }


def _day(mlflow, client, cfg, rows: int):
    """A run on ``rows`` days: its windows, its baseline candidates (with their identities)
    and the registration it chooses."""
    ws = make_windows(synthetic_prices(rows, "TEST"), "open", 10, 40, 40)
    candidates = {
        n: registry.Candidate(c.scores, c.model_uri, _rules(ws)[n])
        for n, c in _candidates(mlflow, ws).items()
    }
    scores = {n: c.scores for n, c in candidates.items()}
    choice = registry.choose_registration(
        client, cfg.register, SPAN, "TEST", scores, {}, _rules(ws)
    )
    return ws, candidates, choice


def test_the_champions_own_rule_chosen_again_is_no_new_version(store):
    """A daily run on a day more of data (no fingerprint match) that chooses the champion's
    own rule registers nothing; the champion's intervals are recalibrated instead."""
    mlflow, client = store
    cfg = config_from_dict({"data": {"sources": ["x.csv"]}, "backtest": {"folds": 0}})
    ws, candidates, choice = _day(mlflow, client, cfg, 200)
    assert not choice.own and choice.earlier is None  # no champion yet
    first = registry.register_best(mlflow, client, cfg.register, SPAN, ws, candidates, {}, choice)
    version = client.get_model_version("stockcast-TEST", str(first["version"]))
    assert version.tags["forecaster"] == _rules(ws)[first["variant"]]

    # the next day: one more row, the same rule chosen
    ws2, later, choice = _day(mlflow, client, cfg, 201)
    scores2 = {n: c.scores for n, c in later.items()}
    assert choice.name == first["variant"], "the synthetic day changed the winning rule"
    assert choice.own and str(choice.earlier.version) == str(first["version"])
    run_tags = {"prefect_flow_run_id": "run-7"}
    out = registry.register_best(mlflow, client, cfg.register, SPAN, ws2, later, run_tags, choice)
    assert out["promote"] and out["already_registered"] and out["version"] == first["version"]
    chosen = later[first["variant"]].scores
    assert {k: out[k] for k in ("model", "variant", "kind", "selection")} == {
        "model": "stockcast-TEST",
        "variant": first["variant"],
        "kind": "baseline",
        "selection": choice.why,
    }
    assert out["candidate_rmse"] == out["champion_rmse"] == chosen.test.rmse
    tags = client.get_model_version("stockcast-TEST", str(first["version"])).tags
    assert tags["confirmed_by_run"] == "run-7"
    assert json.loads(tags[registry.RECALIBRATED]) == json.loads(
        json.dumps({**chosen.calibration.to_dict(), "widths": chosen.interval_halfwidths})
    )
    assert out["reason"] == (
        f"the champion's own forecaster ({first['variant']}, the same rule and params) as "
        f"v{first['version']}: not registered again; it stays @champion, its intervals "
        "recalibrated on this run's residuals"
    )
    assert len(client.search_model_versions("name = 'stockcast-TEST'")) == 1
    widths = later[first["variant"]].scores.interval_halfwidths
    recalibrated = client.get_model_version("stockcast-TEST", str(first["version"])).tags
    assert json.loads(recalibrated[registry.RECALIBRATED])["widths"] == pytest.approx(widths)
    champion = registry.load_champion_version(Path.cwd(), "stockcast-TEST")
    assert champion.version == str(first["version"]) and champion.half_widths == pytest.approx(
        widths
    )
    # the daily forecasts draw the bands of this run's calibration, not those logged at v1
    mine = later[first["variant"]].scores.calibration
    assert champion.calibration.scores == pytest.approx(mine.scores, rel=1e-5)
    assert champion.bands is champion.calibration

    # a run without a Prefect flow run (a test, a script) says so with "?"
    registry.register_best(mlflow, client, cfg.register, SPAN, ws2, later, {}, choice)
    assert (
        client.get_model_version("stockcast-TEST", str(first["version"])).tags["confirmed_by_run"]
        == "?"
    )

    # another rule's params (a moving average of other days) is another forecaster
    other = registry.choose_registration(
        client, cfg.register, SPAN, "TEST", scores2, {}, _rules(ws2, ma_window=10)
    )
    assert other.own == (first["variant"] not in ("moving_average",))


def test_a_fingerprint_needs_clean_known_code_and_data():
    scores = None  # never reached: each case below is refused before the scores are read
    assert registry.registration_fingerprint({**CLEAN, "git_dirty": "True"}, "gru", scores) == ""
    assert registry.registration_fingerprint({**CLEAN, "git_commit": "unknown"}, "x", scores) == ""
    assert registry.registration_fingerprint({**CLEAN, "dvc_dataset_md5": ""}, "x", scores) == ""
    # a tag that is missing is as unknown as one that says so
    for tag in ("git_commit", "git_dirty", "dvc_dataset_md5"):
        without = {k: v for k, v in CLEAN.items() if k != tag}
        assert registry.registration_fingerprint(without, "x", scores) == "", tag


def test_a_run_without_a_params_hash_still_has_a_fingerprint():
    class Flat:  # the one thing a fingerprint reads of the scores
        def flat(self) -> dict[str, float]:
            return {"test_rmse": 1.5}

    without = {k: v for k, v in CLEAN.items() if k != "params_hash"}
    fingerprint = registry.registration_fingerprint(without, "x", Flat())
    assert len(fingerprint) == 16
    assert fingerprint != registry.registration_fingerprint(CLEAN, "x", Flat())


def test_pipeline_run_names_read_well():
    at = 1_790_000_000  # 2026-09-21 (local time decides the clock reading)
    name = tracking.pipeline_run_name(["SH600519"], "0123456789", at)
    assert name.endswith(" SH600519 params 0123456") and name.startswith("2026-09-2")
    many = tracking.pipeline_run_name(["A", "B", "C", "D"], "ff", at)
    assert many.endswith(" A B +2 params ff")


def test_rollback_as_a_command(store, tmp_path: Path, capsys):
    from stockcast.cli import main

    mlflow, client = store
    ws = make_windows(synthetic_prices(200, "TEST"), "open", 10, 40, 40)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"sources": ["x.csv"]}}))
    assert main(["rollback", "--ticker", "TEST"]) == 1
    assert "stockcast-TEST has no @champion to roll back" in capsys.readouterr().err
    with mlflow.start_run():
        uri = packaging.log_forecaster(mlflow, ws, None, WIDTHS, "naive")
    for _ in range(2):
        mlflow.register_model(uri, "stockcast-TEST")
    client.set_model_version_tag("stockcast-TEST", "2", "previous_champion", "1")
    client.set_registered_model_alias("stockcast-TEST", "champion", "2")
    assert main(["rollback", "--ticker", "TEST", "--reason", "bad fills"]) == 0
    assert (
        "stockcast-TEST: @champion moved back from v2 to v1 (bad fills)" in capsys.readouterr().out
    )
    assert str(client.get_model_version_by_alias("stockcast-TEST", "champion").version) == "1"
    # each version says what happened to it, for a person reading the registry later
    assert client.get_model_version("stockcast-TEST", "2").tags["rolled_back"] == "bad fills"
    restored = client.get_model_version("stockcast-TEST", "1").tags
    assert restored["restored_by_rollback_from"] == "2"
    assert main(["rollback", "--ticker", "TEST"]) == 1  # v1 replaced nothing
    assert "v1 replaced no earlier champion" in capsys.readouterr().err


class _Echo:
    """A pyfunc's model logged without the ``intervals`` metadata stockcast's models carry."""

    def predict(self, context, model_input, params=None):
        return model_input


def test_the_champion_is_read_from_the_projects_store_and_may_carry_no_intervals(
    tmp_path: Path, monkeypatch
):
    """With no ``MLFLOW_TRACKING_URI`` the project root names the store; a champion logged
    without intervals has no half-widths (not a crash)."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert registry.load_champion_version(tmp_path, "stockcast-X") is None  # no model yet
    echo = type("Echo", (_Echo, mlflow.pyfunc.PythonModel), {})
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="m", python_model=echo())
        version = mlflow.register_model(info.model_uri, "stockcast-X")
        client = mlflow.MlflowClient()
        client.set_registered_model_alias("stockcast-X", "champion", version.version)
        mlflow.set_tracking_uri(None)  # only the root passed below can name the store
        champion = registry.load_champion_version(tmp_path, "stockcast-X")
    finally:
        mlflow.set_tracking_uri(None)
    assert champion is not None and champion.version == str(version.version)
    assert champion.half_widths == {}


def test_the_champions_widths_are_its_logged_ones_until_a_later_run_recalibrates_them(
    tmp_path: Path, monkeypatch
):
    """``half_widths`` come from the model's ``intervals`` metadata; a version tagged by a
    later run with plain widths (a fixed-width model's recalibration) serves those, with no
    calibration."""
    import json

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    echo = type("Echo", (_Echo, mlflow.pyfunc.PythonModel), {})
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="m", python_model=echo(), metadata={"intervals": {"0.8": 1.5, "0.95": 3}}
            )
        version = mlflow.register_model(info.model_uri, "stockcast-W").version
        client = mlflow.MlflowClient()
        client.set_registered_model_alias("stockcast-W", "champion", version)
        logged = registry.load_champion_version(tmp_path, "stockcast-W")
        later = json.dumps({"0.8": 2.25, "0.95": 4.5})
        client.set_model_version_tag("stockcast-W", version, registry.RECALIBRATED, later)
        recalibrated = registry.load_champion_version(tmp_path, "stockcast-W")
    finally:
        mlflow.set_tracking_uri(None)
    assert logged is not None and logged.half_widths == {"0.8": 1.5, "0.95": 3.0}
    assert recalibrated is not None and recalibrated.version == str(version)
    assert recalibrated.half_widths == {"0.8": 2.25, "0.95": 4.5}
    assert recalibrated.calibration is None
