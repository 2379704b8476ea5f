"""Many tickers judged honestly: the false discovery rate across a run's tickers
(``register.fdr``, Benjamini-Hochberg over each ticker's one-sided DM p-value)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stockcast.config import ConfigError, config_from_dict
from stockcast.evaluate import diebold_mariano
from stockcast.fdr import benjamini_hochberg
from stockcast.promotion import (
    choose_candidate,
    discoveries,
    network_edges,
    one_sided_p,
)
from stockcast.scores import CandidateScores, SpanScores


def test_benjamini_hochberg_against_a_hand_computed_example():
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.2, "e": math.nan}
    # ranked: a 0.01, c 0.03, b 0.04, d 0.2 (m = 4; e has no test and is no member)
    # m p / rank: 0.04, 0.06, 0.0533, 0.2; each the minimum of itself and those above it
    adjusted = benjamini_hochberg(p)
    assert adjusted["a"] == pytest.approx(0.04)
    assert adjusted["c"] == pytest.approx(4 * 0.04 / 3)
    assert adjusted["b"] == pytest.approx(4 * 0.04 / 3)
    assert adjusted["d"] == pytest.approx(0.2)
    assert math.isnan(adjusted["e"])
    # at q = 0.05 only a is a discovery (b's 0.04 > 3/4 * 0.05); at 0.06, a, b and c
    assert sorted(k for k, v in adjusted.items() if v <= 0.05) == ["a"]
    assert sorted(k for k, v in adjusted.items() if v <= 0.06) == ["a", "b", "c"]
    assert benjamini_hochberg({"x": 0.9, "y": 0.95}) == {"x": 0.95, "y": 0.95}
    assert benjamini_hochberg({}) == {}


def test_a_network_significantly_worse_is_no_discovery():
    assert one_sided_p(-2.0, 0.04) == pytest.approx(0.02)  # ahead: half the two-sided p
    assert one_sided_p(2.0, 0.04) == pytest.approx(0.98)  # behind: never a discovery
    assert math.isnan(one_sided_p(math.nan, 0.5))


def _scores(net_rmse: float, stat: float, p: float) -> dict[str, CandidateScores]:
    base = SpanScores.missing()
    rule = SpanScores(**{**base.__dict__, "rmse": 10.0})
    net = SpanScores(**{**base.__dict__, "rmse": net_rmse, "dm_stat": stat, "dm_p_value": p})
    return {
        "last_close": CandidateScores("last_close", "baseline", rule, rule, rule),
        "gru": CandidateScores("gru", "network", net, net, net),
    }


def test_with_fdr_the_adjusted_p_value_decides_and_the_reason_says_so():
    scores = _scores(9.0, -2.5, 0.01)
    name, why = choose_candidate(scores, "backtest", fdr=0.1, adjusted_p=0.08)
    assert name == "gru" and "BH-adjusted p=0.08 across the run's tickers" in why
    name, why = choose_candidate(scores, "backtest", fdr=0.1, adjusted_p=0.12)
    assert name == "last_close" and why.endswith("not a discovery at FDR 0.1")
    # fdr replaces the raw test: a raw p of 0.01 passes max_p_value 0.05, not the FDR
    name, _ = choose_candidate(scores, "backtest", 0.0, 0.05, fdr=0.1, adjusted_p=0.5)
    assert name == "last_close"
    with pytest.raises(ValueError, match="adjusted p-values"):
        choose_candidate(scores, "backtest", fdr=0.1)
    # a network that does not beat the rule's RMSE is not chosen, whatever its p-value
    name, why = choose_candidate(_scores(10.5, 2.0, 0.01), "backtest", fdr=0.1, adjusted_p=0.0)
    assert name == "last_close" and "does not beat" in why


def test_the_edges_are_each_tickers_best_network_one_sided():
    reports = {"A": _scores(9.0, -2.0, 0.04), "B": _scores(11.0, 2.0, 0.04)}
    edges = network_edges(reports, "backtest")
    assert edges == {"A": pytest.approx(0.02), "B": pytest.approx(0.98)}


def test_register_fdr_must_be_a_rate():
    cfg = config_from_dict({"data": {"sources": ["x.csv"]}, "register": {"fdr": 0.1}})
    assert cfg.register.fdr == 0.1
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"register\.fdr"):
            config_from_dict({"data": {"sources": ["x.csv"]}, "register": {"fdr": bad}})


def test_on_100_random_walks_the_share_choosing_a_network_stays_under_the_fdr():
    """No "network" here is better than last_close: its errors are drawn as the rule's are.
    The raw test at 0.05 still picks some by chance; at FDR 0.1 the share chosen stays at or
    under 0.1, and the run's report says how many chance alone would give."""
    rng = np.random.default_rng(11)
    reports, raw_chosen = {}, 0
    for k in range(100):
        prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
        actual, rule = prices[1:], prices[:-1]
        # no skill: its errors are drawn like the rule's (a day's move), independently
        net = actual * np.exp(rng.normal(0, 0.01, len(rule)))
        stat, p = diebold_mariano(net - actual, rule - actual)
        rmse = float(np.sqrt(np.mean((net - actual) ** 2)))
        base = float(np.sqrt(np.mean((rule - actual) ** 2)))
        scores = _scores(rmse * 10 / base, stat, p)  # the rule's RMSE is 10 in _scores
        reports[f"T{k}"] = scores
        raw_chosen += choose_candidate(scores, "backtest", 0.0, 0.05)[0] == "gru"
    edges = network_edges(reports, "backtest")
    adjusted = benjamini_hochberg(edges)
    chosen = sum(
        choose_candidate(s, "backtest", fdr=0.1, adjusted_p=adjusted[t])[0] == "gru"
        for t, s in reports.items()
    )
    assert chosen / len(reports) <= 0.1, (chosen, raw_chosen)
    cfg = config_from_dict({"data": {"sources": ["x.csv"]}, "register": {"fdr": 0.1}})
    found = discoveries(edges, chosen, cfg.register)
    assert found.tickers == 100 and found.by_chance == pytest.approx(0.1 * chosen)
    raw = config_from_dict({"data": {"sources": ["x.csv"]}, "register": {"max_p_value": 0.05}})
    assert discoveries(edges, raw_chosen, raw.register).by_chance == pytest.approx(2.5)
    assert raw_chosen >= 1, raw_chosen  # chance fires without the FDR (this seed: see above)
