"""Which candidate a run registers, and whether it becomes ``@champion``: the rules, in one
place, on typed scores (no MLflow here).

1. The best forecaster of the selection span (the backtest, else validation) is registered,
   a network or a baseline rule: a network only when it beats the best baseline.
2. It is promoted when it passes every gate on that span (gates are relative to baselines
   scored on the same rows) and beats the current champion scored on this run's test span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stockcast.config import RegisterConfig
from stockcast.evaluate import ratio
from stockcast.fdr import benjamini_hochberg
from stockcast.scores import CandidateScores


@dataclass
class Decision:
    """Whether a candidate becomes champion, and why."""

    promote: bool
    reason: str
    candidate_rmse: float
    champion_rmse: float | None = None
    previous_version: str | None = None


@dataclass(frozen=True)
class Gate:
    """One promotion gate: a metric of the selection span and its limit (None: off)."""

    metric: str
    limit: float | None
    strict: bool = False  # True: the value must be below the limit; False: at most it


def gates(r: RegisterConfig) -> tuple[Gate, ...]:
    """The configured gates, each relative to baselines scored on the same span."""
    return (
        Gate("rmse_vs_best_baseline", r.max_rmse_vs_best_baseline),
        Gate("rmse_vs_naive", r.max_rmse_vs_naive),
        Gate("mase", r.max_mase, strict=True),
    )


def leaders(candidates: dict[str, CandidateScores], span: str) -> tuple[str | None, str]:
    """(the best network, the best baseline) by RMSE in prices on ``span``; None for the
    network when no network has a finite score there.

    Raises:
        ValueError: no baseline has a score on ``span``.
    """

    def rmse(name: str) -> float:
        return candidates[name].on(span).rmse

    def of_kind(kind: str) -> list[str]:
        return [n for n, c in candidates.items() if c.kind == kind and math.isfinite(rmse(n))]

    baselines, networks = of_kind("baseline"), of_kind("network")
    if not baselines:
        raise ValueError(f"no baseline scored on {span}: nothing to compare the networks with")
    return (min(networks, key=rmse) if networks else None), min(baselines, key=rmse)


def one_sided_p(statistic: float, two_sided: float) -> float:
    """The p-value of "the network's loss is the smaller" from Diebold-Mariano's two-sided
    one (``statistic`` < 0: the network is ahead): half of it when the network is ahead, one
    minus half when it is behind, so a network significantly *worse* is never a discovery."""
    if not (math.isfinite(statistic) and math.isfinite(two_sided)):
        return math.nan
    return two_sided / 2 if statistic < 0 else 1.0 - two_sided / 2


def network_edges(reports: dict[str, dict[str, CandidateScores]], span: str) -> dict[str, float]:
    """Per ticker, the one-sided DM p-value of its best network against its best baseline on
    ``span`` (the family the false discovery rate is controlled over); NaN for a ticker with
    no scored network."""
    out = {}
    for ticker, candidates in reports.items():
        net, _ = leaders(candidates, span)
        scores = candidates[net].on(span) if net is not None else None
        out[ticker] = one_sided_p(scores.dm_stat, scores.dm_p_value) if scores else math.nan
    return out


def fdr_family(
    reports: dict[str, dict[str, CandidateScores]], span: str, r: RegisterConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """A run's tickers as one family of tests: each ticker's network edge
    (:func:`network_edges`) and, with ``register.fdr``, its Benjamini-Hochberg adjusted
    p-value (empty without it)."""
    edges = network_edges(reports, span)
    return edges, (benjamini_hochberg(edges) if r.fdr is not None else {})


@dataclass(frozen=True)
class Discoveries:
    """A run's networks chosen over the rule, across its tickers, and what chance gives."""

    tickers: int  # tickers with a network tested
    chosen: int  # tickers whose network passed
    by_chance: float  # how many would pass with no network better than its rule
    rule: str  # the test they passed, in words


def discoveries(edges: dict[str, float], chosen: int, r: RegisterConfig) -> Discoveries:
    """The run's ``chosen`` networks beside how many chance alone would give: with
    ``register.fdr`` q, Benjamini-Hochberg expects at most q of those chosen to be false;
    with a raw ``max_p_value`` a, a ticker whose network is no better than its rule passes
    with probability a / 2 (the DM test is two-sided, a win one side of it), so m a / 2 of
    the m tickers tested."""
    tested = sum(math.isfinite(p) for p in edges.values())
    if r.fdr is not None:
        return Discoveries(tested, chosen, r.fdr * chosen, f"BH-adjusted p <= {r.fdr}")
    if r.max_p_value is None:
        return Discoveries(tested, chosen, math.nan, "RMSE alone, no significance test")
    return Discoveries(tested, chosen, tested * r.max_p_value / 2, f"DM p < {r.max_p_value}")


def choose_candidate(
    candidates: dict[str, CandidateScores],
    span: str,
    min_improvement: float = 0.0,
    max_p_value: float | None = None,
    fdr: float | None = None,
    adjusted_p: float | None = None,
) -> tuple[str, str]:
    """The candidate to register: the best forecaster of ``span``, network or baseline.

    The best network (lowest RMSE in prices) is chosen over the best baseline only when its
    RMSE is below the baseline's by ``min_improvement`` (a fraction) and, with
    ``max_p_value``, the Diebold-Mariano p-value against it is below that; otherwise the best
    baseline is. A network without a finite score (a failed fold) cannot be chosen. Prices,
    not the scaled training loss: a log-return model's loss and a level model's are not on one
    scale. The test span never chooses.

    Args:
        candidates: every candidate of one ticker.
        span: ``backtest`` or ``val``.
        min_improvement: the share of the baseline's RMSE a network must win by.
        max_p_value: the p-value a network's win must be under; None: no test.
        fdr: ``register.fdr``: the network's Benjamini-Hochberg adjusted p-value across the
            run's tickers (``adjusted_p``, :func:`benjamini_hochberg` of
            :func:`network_edges`) must be at most this; it replaces ``max_p_value``.

    Returns:
        (the candidate's name, why it was chosen).
    """

    def rmse(name: str) -> float:
        return candidates[name].on(span).rmse

    net, base = leaders(candidates, span)
    if net is None:
        return base, f"best baseline on {span}; no network has a {span} score"
    versus = ratio(rmse(net), rmse(base))
    p_value = candidates[net].on(span).dm_p_value
    said = f"{net} {span} rmse {versus:.4f}x {base} (DM p={p_value:.3g})"
    if versus >= 1.0 - min_improvement:
        return base, f"{said}: the network does not beat the best baseline"
    if fdr is not None:
        if adjusted_p is None:
            raise ValueError("register.fdr needs the run's adjusted p-values (network_edges)")
        said = f"{said}, BH-adjusted p={adjusted_p:.3g} across the run's tickers"
        if not adjusted_p <= fdr:
            return base, f"{said}: not a discovery at FDR {fdr}"
        return net, f"{said}: the network beats the best baseline"
    if max_p_value is not None and not p_value < max_p_value:
        return base, f"{said}: not significant at {max_p_value}"
    return net, f"{said}: the network beats the best baseline"


def decide_promotion(
    candidate_rmse: float,
    champion_rmse: float | None,
    gate: dict[str, float],
    limits: tuple[Gate, ...],
    previous_version: str | None = None,
    gate_span: str = "backtest",
) -> Decision:
    """Promote only past every gate and ahead of the champion on the same test span.

    Args:
        candidate_rmse: the candidate's RMSE on this run's test span.
        champion_rmse: the current champion's RMSE on the same targets; None if there is none.
        gate: the candidate's gate metrics on the gate span, by name.
        limits: the gates; a missing value (a failed fold) rejects.
        previous_version: the current champion's version, recorded on promotion.
        gate_span: where ``gate`` was measured, for the reason text.
    """

    def reject(reason: str) -> Decision:
        return Decision(False, reason, candidate_rmse, champion_rmse, previous_version)

    active = [g for g in limits if g.limit is not None]
    for g in active:
        value = gate.get(g.metric, float("nan"))
        if math.isnan(value):
            return reject(f"{gate_span} {g.metric} missing (a fold failed?): cannot judge it")
        if not (value < g.limit if g.strict else value <= g.limit):
            return reject(
                f"{gate_span} {g.metric} {value:.4f} {'>=' if g.strict else '>'} {g.limit}"
            )
    passed = "".join(f"; {gate_span} {g.metric} {gate[g.metric]:.4f}" for g in active)
    if champion_rmse is None:
        return Decision(True, f"no champion yet{passed}", candidate_rmse, None, None)
    if candidate_rmse < champion_rmse:
        return Decision(
            True,
            f"test rmse {candidate_rmse:.4f} < champion v{previous_version} "
            f"{champion_rmse:.4f}{passed}",
            candidate_rmse,
            champion_rmse,
            previous_version,
        )
    return reject(
        f"test rmse {candidate_rmse:.4f} >= champion v{previous_version} "
        f"{champion_rmse:.4f} on the same span"
    )


def gate_values(scores: CandidateScores, span: str) -> dict[str, float]:
    """A candidate's gate metrics on the selection scored."""
    scored = scores.on(span)
    return {
        "rmse_vs_best_baseline": scored.rmse_vs_best_baseline,
        "rmse_vs_naive": scored.rmse_vs_naive,
        "mase": scored.mase,
    }
