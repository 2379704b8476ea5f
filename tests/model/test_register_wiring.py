"""The register stage's decision path on a real SQLite store, without a fit: which span
chooses, which gates the choice hears, and that only a promoted version moves @champion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stockcast import registry
from stockcast.evaluate import CandidateForecasts, baseline_candidates, score_candidates
from stockcast.scores import selection_span
from tests.model.baseline_run import CLEAN, baseline_run, config


def test_a_rejected_version_never_moves_the_champion(sqlite_store, tmp_path):
    run = baseline_run(tmp_path)
    first = run.register()["TEST"]
    assert first["promote"] and str(first["version"]) == "1"
    # new params, the same data, a rule that is not the champion's own (v1 as a version
    # registered before rules had an identity): a second version that only ties the champion
    sqlite_store.delete_model_version_tag("stockcast-TEST", "1", "forecaster")
    second = run.register(tags={**CLEAN, "params_hash": "p2"})["TEST"]
    assert str(second["version"]) == "2" and not second["promote"]
    assert str(sqlite_store.get_model_version_by_alias("stockcast-TEST", "champion").version) == "1"
    assert sqlite_store.get_model_version("stockcast-TEST", "2").tags["promotion"] == "rejected"


@pytest.mark.parametrize(("folds", "span"), [(3, "backtest"), (0, "val")])
def test_the_backtest_chooses_or_else_validation_never_the_test_span(folds, span):
    assert selection_span(config(backtest={"folds": folds}).backtest.folds) == span


def test_the_registered_version_says_the_span_that_chose_it(sqlite_store, tmp_path):
    baseline_run(tmp_path).register()
    version = sqlite_store.get_model_version("stockcast-TEST", "1")
    assert version.tags["selected_on"] == "val rmse"


def _with_network(run, shrink: float, noise: float) -> dict:
    """The baselines and a network that is ``last_close`` moved ``shrink`` of the way to the
    truth, plus noise: a small edge on every span."""
    ws = run.ws
    forecasts = baseline_candidates(ws, [], 5)
    rule, rng = forecasts["last_close"], np.random.default_rng(3)

    def nudge(predicted: np.ndarray, idx: np.ndarray) -> np.ndarray:
        actual = ws.prices[idx]
        return predicted + shrink * (actual - predicted) + rng.normal(0, noise, len(idx))

    forecasts["gru"] = CandidateForecasts(
        "network", nudge(rule.test, ws.test_idx), nudge(rule.val, ws.val_idx)
    )
    return score_candidates(ws, [], forecasts, (0.8, 0.95))


def _choose(scores: dict, **register) -> str:
    cfg = config(register={"max_p_value": None, **register})
    return registry.choose_registration(None, cfg.register, "val", "TEST", scores, {}).name


def test_min_improvement_reaches_the_choice(tmp_path):
    scores = _with_network(baseline_run(tmp_path), shrink=0.05, noise=0.0)
    edge = scores["gru"].val.rmse / scores["last_close"].val.rmse
    assert 0.9 < edge < 1.0  # the network leads by a few percent
    assert _choose(scores) == "gru"
    assert _choose(scores, min_improvement=0.2) == "last_close"


def test_max_p_value_reaches_the_choice(tmp_path):
    scores = _with_network(baseline_run(tmp_path), shrink=0.1, noise=0.3)
    assert scores["gru"].val.rmse < scores["last_close"].val.rmse
    assert scores["gru"].val.dm_p_value > 0.05  # a lead chance could give
    assert _choose(scores) == "gru"
    assert _choose(scores, max_p_value=0.05) == "last_close"


def test_the_champion_loads_as_a_pyfunc_and_a_model_without_one_is_none(sqlite_store, tmp_path):
    baseline_run(tmp_path).register()
    model = registry.load_champion(tmp_path, "stockcast-TEST")
    assert model is not None and model.metadata.metadata["variant"] == "last_close"
    assert registry.load_champion(tmp_path, "stockcast-NONE") is None


def test_the_champion_is_loaded_from_the_projects_own_store(sqlite_store, tmp_path, monkeypatch):
    """Without MLFLOW_TRACKING_URI the project's folder names the store, wherever the
    command runs from."""
    import mlflow

    baseline_run(tmp_path).register()
    mlflow.set_tracking_uri(None)  # MLflow's own setting (and the variable it sets) gone
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = registry.load_champion(tmp_path, "stockcast-TEST")
    assert model is not None and model.metadata.metadata["variant"] == "last_close"


@pytest.mark.parametrize("previous", ["", "none"])
def test_a_champion_that_replaced_nothing_cannot_be_rolled_back(sqlite_store, tmp_path, previous):
    from stockcast.errors import StockcastError

    baseline_run(tmp_path).register()
    sqlite_store.set_model_version_tag("stockcast-TEST", "1", "previous_champion", previous)
    with pytest.raises(StockcastError, match="v1 replaced no earlier champion"):
        registry.rollback(sqlite_store, "stockcast-TEST", "x")


def test_a_variants_models_live_under_its_ticker(tmp_path):
    from stockcast.paths import Paths

    assert Paths(tmp_path).variant_dir("SH600519", "gru") == tmp_path / "models/SH600519/gru"


def test_the_parent_run_says_who_won_and_holds_the_leaderboard(sqlite_store, tmp_path):
    """The runs list reads by itself: the parent's name leads with the verdict, its note is
    the leaderboard, also a logged table; every parameter has one name."""
    import json

    run = baseline_run(tmp_path)
    run.register()
    (experiment,) = sqlite_store.search_experiments(filter_string="name = 'stockcast'")
    runs = sqlite_store.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("stockcast.run") == "pipeline"]
    assert parent.info.run_name.startswith("TEST: ") and " is champion; " in parent.info.run_name
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**{parent.info.run_name.split(' · ')[0]}**")
    assert note.count("\n| TEST | ") == len(run.reports["TEST"].candidates)
    path = sqlite_store.download_artifacts(parent.info.run_id, "leaderboard.json", str(tmp_path))
    table = json.loads(open(path).read())
    assert table["columns"][:2] == ["ticker", "candidate"] and len(table["data"]) == 4
    (child,) = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert child.info.run_name.startswith("TEST-last_close-")
    params = child.data.params
    assert "window" not in params and params["window.window"] == str(run.cfg.window.window)


def test_logging_a_forecaster_asks_for_no_type_hints(sqlite_store, tmp_path):
    """The pyfunc's ``predict`` carries the type hints MLflow asks for on every log, load and
    serve (an OHLCV array in, a frame out), instead of a muted warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        baseline_run(tmp_path).register()
        registry.load_champion(tmp_path, "stockcast-TEST")
    assert not [w for w in caught if "type hints" in str(w.message)]


def test_make_ui_names_the_training_runs_page_in_the_classic_view(sqlite_store, tmp_path):
    from stockcast.cli import ui_link

    assert ui_link(5000, tmp_path) == (
        "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    )  # no run yet: the experiments list
    baseline_run(tmp_path).register()
    (experiment,) = sqlite_store.search_experiments(filter_string="name = 'stockcast'")
    assert experiment.tags["mlflow.experimentKind"] == "forecasting"
    assert ui_link(5001, tmp_path) == (
        f"http://127.0.0.1:5001/#/experiments/{experiment.experiment_id}/runs"
        "?workflowType=machine_learning&viewStateShareKey=stockcast"
    )
    # the view the link names: the span that chooses (validation for this run) leads
    view = json.loads(experiment.tags["mlflow.sharedViewState.stockcast"])
    metrics = [c for c in view["selectedColumns"] if c.startswith("metrics.")]
    assert metrics[0] == "metrics.`val_rmse_vs_best_baseline`", metrics
    assert [c["metricKey"] for c in view["compareRunCharts"]][:2] == [
        "val_rmse_vs_best_baseline",
        "val_rmse",
    ]


def test_an_experiment_from_before_the_view_gets_it_on_the_next_run(sqlite_store, tmp_path):
    """A store whose experiment predates the view (or holds another span's) is brought up to
    date by the next registration, without a second experiment."""
    from stockcast import store, tracking

    client = store.client_for(tmp_path)
    first = tracking.ensure_experiment(client, "stockcast", tmp_path)
    assert "mlflow.sharedViewState.stockcast" not in client.get_experiment(first).tags
    assert tracking.ensure_experiment(client, "stockcast", tmp_path, "backtest") == first
    tags = client.get_experiment(first).tags
    assert (
        json.loads(tags["mlflow.sharedViewState.stockcast"])["compareRunCharts"][0]["metricKey"]
        == "backtest_rmse_vs_best_baseline"
    )
    tracking.ensure_experiment(client, "stockcast", tmp_path, "val")
    tags = client.get_experiment(first).tags
    assert "val_rmse" in tags["mlflow.sharedViewState.stockcast"]
    assert "backtest_rmse" not in tags["mlflow.sharedViewState.stockcast"]


def test_a_rerun_of_the_same_registration_says_which_version_stands(sqlite_store, tmp_path, capsys):
    run = baseline_run(tmp_path)
    first = run.register()["TEST"]
    again = run.register()["TEST"]
    assert again["already_registered"] and again["model"] == "stockcast-TEST"
    assert again["version"] == first["version"] and again["variant"] == "last_close"
    assert again["promote"] is True and again["kind"] == "baseline"  # v1 is the champion
    stood = sqlite_store.get_model_version("stockcast-TEST", "1").tags["promotion_reason"]
    assert again["reason"] == (
        "already registered as v1 (same code, params, data and scores); "
        f"its decision stands: {stood}"
    )
    assert f"stockcast-TEST: last_close {again['reason']}\n" in capsys.readouterr().out
    assert set(again) == {*first, "already_registered"} and again["selection"] == first["selection"]
    assert again["candidate_rmse"] is None and again["champion_rmse"] is None
    sqlite_store.set_model_version_tag("stockcast-TEST", "1", "previous_champion", "0")
    assert run.register()["TEST"]["previous_version"] == "0"
    sqlite_store.delete_model_version_tag("stockcast-TEST", "1", "promotion_reason")
    assert run.register()["TEST"]["reason"].endswith("its decision stands: ?")


def test_a_warm_continuation_of_the_champion_that_loses_is_no_new_version(sqlite_store, tmp_path):
    """The daily job continues the champion's network; a continuation that does not beat the
    champion is not registered (no unpromoted copy a day); a cold run's is, as before."""
    run = baseline_run(tmp_path)
    first = run.register()["TEST"]
    client = sqlite_store
    v1 = client.get_model_version("stockcast-TEST", str(first["version"]))
    network = client.create_model_version(
        "stockcast-TEST", v1.source, v1.run_id, tags={"variant": "gru", "kind": "network"}
    )
    client.set_registered_model_alias("stockcast-TEST", "champion", network.version)
    scores = _with_network(run, shrink=-0.2, noise=0.0)  # worse than the rule it serves
    candidates = {"gru": registry.Candidate(scores["gru"], v1.source)}
    choice = registry.Choice("gru", "forced for the test", "", None)
    before = len(client.search_model_versions("name = 'stockcast-TEST'"))

    def register(start: str) -> dict:
        import mlflow

        return registry.register_best(
            mlflow, client, run.cfg.register, "val", run.ws, candidates,
            {"train_start": start}, choice,
        )  # fmt: skip

    kept = register("warm")
    assert {k: kept[k] for k in ("model", "variant", "kind", "selection", "promote")} == {
        "model": "stockcast-TEST",
        "variant": "gru",
        "kind": "network",
        "selection": "forced for the test",
        "promote": True,  # the champion stays champion
    }
    assert kept["candidate_rmse"] == pytest.approx(scores["gru"].test.rmse)
    assert kept["champion_rmse"] is not None and kept["champion_rmse"] <= kept["candidate_rmse"]
    assert kept["already_registered"] and str(kept["version"]) == str(network.version)
    assert kept["reason"].startswith(
        f"a warm continuation of the champion (v{network.version}, gru) that did not replace it"
    )
    assert len(client.search_model_versions("name = 'stockcast-TEST'")) == before
    # another variant than the champion's is no continuation of it: judged, registered
    import mlflow

    lstm = registry.register_best(
        mlflow, client, run.cfg.register, "val", run.ws,
        {"lstm": registry.Candidate(scores["gru"], v1.source)},
        {"train_start": "warm"}, registry.Choice("lstm", "forced", "", None),
    )  # fmt: skip
    assert "already_registered" not in lstm and not lstm["promote"]
    before += 1
    cold = register("cold")
    assert "already_registered" not in cold and not cold["promote"]
    assert len(client.search_model_versions("name = 'stockcast-TEST'")) == before + 1
    champion = client.get_model_version_by_alias("stockcast-TEST", "champion")
    assert str(champion.version) == str(network.version)


def test_a_warm_run_without_a_champion_registers_as_a_first_run_does(sqlite_store, tmp_path):
    run = baseline_run(tmp_path)
    first = run.register(tags={"train_start": "warm"})["TEST"]
    assert "already_registered" not in first and first["promote"] and str(first["version"]) == "1"
    # rejected by a gate with no champion at all: still a version, rejected, no champion
    strict = baseline_run(tmp_path, register={"max_rmse_vs_naive": 0.01})
    sqlite_store.delete_registered_model_alias("stockcast-TEST", "champion")
    out = strict.register(tags={"train_start": "warm"})["TEST"]
    assert "already_registered" not in out and not out["promote"]
    assert str(out["version"]) == "2" and "rmse_vs_naive" in out["reason"]
    assert sqlite_store.get_model_version("stockcast-TEST", "2").tags["promotion"] == "rejected"


def test_a_version_that_beats_the_champion_says_what_it_replaced_and_why_it_was_chosen(
    sqlite_store, tmp_path
):
    """register_best on its own: a candidate whose test RMSE is half the champion's (scored
    again on the same targets) becomes v2 and @champion; its tags say what it is, which span
    chose it and why, and the version it replaced; a rule without an identity and a run
    without a fingerprint leave those tags out."""
    from dataclasses import replace

    import mlflow

    run = baseline_run(tmp_path)
    first = run.register()["TEST"]
    assert sqlite_store.get_model_version("stockcast-TEST", "1").tags["previous_champion"] == "none"
    name = first["variant"]
    scores = dict(run.reports["TEST"].candidates)
    scores[name] = replace(
        scores[name], test=replace(scores[name].test, rmse=0.5 * scores[name].test.rmse)
    )
    candidates = {n: registry.Candidate(s, "models:/stockcast-TEST/1") for n, s in scores.items()}
    out = registry.register_best(
        mlflow, sqlite_store, run.cfg.register, "val", run.ws, candidates, {"git_commit": "abc"}
    )
    assert out["promote"] and str(out["version"]) == "2" and out["previous_version"] == "1"
    # the gates are judged on the span that chose (here val, as with backtest.folds: 0)
    assert "; val rmse_vs_naive " in out["reason"] and "backtest" not in out["reason"]
    assert out["champion_rmse"] == pytest.approx(2 * out["candidate_rmse"])
    assert str(sqlite_store.get_model_version_by_alias("stockcast-TEST", "champion").version) == "2"
    tags = sqlite_store.get_model_version("stockcast-TEST", "2").tags
    assert {k: tags[k] for k in ("variant", "kind", "selected_on", "selection")} == {
        "variant": name,
        "kind": "baseline",
        "selected_on": "val rmse",
        "selection": out["selection"],
    }
    assert out["selection"] and tags["previous_champion"] == "1" and tags["git_commit"] == "abc"
    assert (
        tags["promotion"] == "promoted" and "forecaster" not in tags and "fingerprint" not in tags
    )


def test_of_two_versions_with_one_fingerprint_the_first_is_the_registration(sqlite_store, tmp_path):
    run = baseline_run(tmp_path)
    run.register()
    fingerprint = sqlite_store.get_model_version("stockcast-TEST", "1").tags["fingerprint"]
    sqlite_store.delete_model_version_tag("stockcast-TEST", "1", "forecaster")  # not its own
    run.register(tags={**CLEAN, "params_hash": "p2"})  # v2, another fingerprint
    sqlite_store.set_model_version_tag("stockcast-TEST", "2", "fingerprint", fingerprint)
    found = registry._registered_as(sqlite_store, "stockcast-TEST", fingerprint)
    assert found is not None and str(found.version) == "1"


def test_with_fdr_the_version_records_the_adjusted_p_value_and_the_run_counts_discoveries(
    sqlite_store, tmp_path
):
    """register.fdr: each ticker's network is judged on its BH-adjusted p-value across the
    run's tickers; the version registered records it, and the parent run says how many
    tickers chose a network beside how many chance alone would give."""
    from dataclasses import replace

    from stockcast.scores import TickerReport

    # global scope: the fake network is not logged as a model (it has none)
    run = baseline_run(tmp_path, register={"fdr": 0.1}, train={"scope": "global"})
    scores = run.reports["TEST"].candidates
    rule = scores["last_close"]
    # a network a hair ahead of the rule on the span that chooses, nowhere near significant
    edge = replace(rule.val, rmse=rule.val.rmse * 0.999, dm_stat=-0.5, dm_p_value=0.6)
    gru = replace(rule, name="gru", kind="network", val=edge)
    run.reports["TEST"] = TickerReport("TEST", {**scores, "gru": gru})
    decision = run.register()["TEST"]
    assert decision["variant"] == "last_close"
    assert "BH-adjusted p=0.3 across the run's tickers" in decision["selection"]
    assert decision["selection"].endswith("not a discovery at FDR 0.1")
    version = sqlite_store.get_model_version("stockcast-TEST", decision["version"])
    assert version.tags["dm_p_adjusted"] == "0.3"  # one ticker: its one-sided p, 0.6 / 2
    (experiment,) = sqlite_store.search_experiments(filter_string="name = 'stockcast'")
    runs = sqlite_store.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("stockcast.run") == "pipeline"]
    assert parent.data.tags["networks_chosen"] == (
        "0 of 1 tickers chose a network (BH-adjusted p <= 0.1); chance alone: 0"
    )
    assert parent.data.metrics["networks_chosen"] == 0.0
    assert parent.data.metrics["networks_chosen_by_chance"] == 0.0


def test_a_champion_logged_before_models_recorded_their_context_is_scored_on_its_window(
    sqlite_store, tmp_path
):
    """A champion whose metadata has ``window`` and no ``context`` (logged by an older
    stockcast, taking the target's prices alone) is scored on windows of that length."""
    import mlflow

    from stockcast.columns import OHLCV

    run = baseline_run(tmp_path)
    ws = run.ws

    class LastPrice(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.asarray(model_input)[:, -1]

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="m", python_model=LastPrice(), metadata={"window": 5})
    version = mlflow.register_model(info.model_uri, "stockcast-TEST").version
    sqlite_store.set_registered_model_alias("stockcast-TEST", registry.CHAMPION, version)
    rmse, named = registry.champion_rmse(mlflow, sqlite_store, "stockcast-TEST", ws)
    idx = ws.test_idx
    last = ws.raw_inputs(idx, 5)[:, -1, OHLCV.index(ws.target)]
    assert named == str(version)
    assert rmse == pytest.approx(float(np.sqrt(np.mean((last - ws.prices[idx]) ** 2))))
