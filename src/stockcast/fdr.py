"""The false discovery rate over a family of tests: a run's tickers, each tested once (a
network's edge over the rule, new data against the training span). No other stockcast
import, so any stage can use it without depending on the others' code."""

from __future__ import annotations

import math


def benjamini_hochberg(p_values: dict[str, float]) -> dict[str, float]:
    """Benjamini-Hochberg adjusted p-values (by key): ``min over j >= i of m p_(j) / j`` over
    the p-values ranked ascending, at most 1. Rejecting every key whose adjusted p-value is
    at most ``q`` controls the false discovery rate at ``q`` for independent (or positively
    dependent) tests. A NaN p-value (no test) is left out of the family and stays NaN."""
    tested = sorted((p, k) for k, p in p_values.items() if math.isfinite(p))
    m = len(tested)
    out = {k: math.nan for k in p_values}
    running = 1.0
    for rank in range(m, 0, -1):
        p, key = tested[rank - 1]
        running = min(running, m * p / rank)
        out[key] = running
    return out
