"""``make compare``: the workspace, ``HEAD`` and every DVC experiment side by side, from
``dvc exp show --json``: the params that differ between them and the headline metrics (per
network, its RMSE against the best baseline on the span that chooses; the test RMSE of the
best candidate there), in a table that fits 120 columns."""

from __future__ import annotations

import json
import math
from typing import Any

METRICS = "reports/metrics.json"
PARAMS = "params.yaml"
WIDTH = 120


def runs(shown: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, data) of every row ``dvc exp show --json`` holds: the workspace, each baseline
    commit and the experiments derived from it."""
    out = []
    for entry in shown:
        if entry.get("data"):
            name = entry.get("name") or ("workspace" if entry.get("rev") == "workspace" else "")
            out.append((name or str(entry.get("rev", ""))[:7], entry["data"]))
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                if rev.get("data"):
                    out.append((rev.get("name") or str(rev.get("rev", ""))[:7], rev["data"]))
    return out


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def _params(data: dict[str, Any]) -> dict[str, Any]:
    return _flat((data.get("params") or {}).get(PARAMS, {}).get("data") or {})


def _metrics(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return (data.get("metrics") or {}).get(METRICS, {}).get("data") or {}


def headline(metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The figures a person compares first, over the tickers (their mean with several):
    each network's RMSE against the best baseline on the span that chooses (the backtest,
    else validation), and the test RMSE of the best candidate on that span."""
    sums: dict[str, list[float]] = {}
    for candidates in metrics.values():
        scored = {n: c for n, c in candidates.items() if isinstance(c, dict) and "kind" in c}
        span = "backtest" if any("backtest_rmse" in c for c in scored.values()) else "val"
        for name, c in scored.items():
            if c.get("kind") == "network":
                value = c.get(f"{span}_rmse_vs_best_baseline")
                sums.setdefault(f"{name} x best", []).append(_number(value))
        best = min(scored, key=lambda n: _number(scored[n].get(f"{span}_rmse")), default=None)
        if best is not None:
            sums.setdefault("best test_rmse", []).append(_number(scored[best].get("test_rmse")))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def table(shown: list[dict[str, Any]], width: int = WIDTH) -> str:
    """The rows side by side: name, the params that differ between rows, the headline
    metrics; columns that do not fit ``width`` are named below the table instead."""
    rows = runs(shown)
    if not rows:
        return "no runs to compare: run make pipeline, then make exp SET=key=value"
    params = [_params(data) for _, data in rows]
    keys = sorted({k for p in params for k in p})
    changed = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in params}) > 1]
    figures = [headline(_metrics(data)) for _, data in rows]
    names = list(dict.fromkeys(k for f in figures for k in f))
    header = ["run", *changed, *names]
    body = [
        [name, *(_cell(p.get(k)) for k in changed), *(_cell(f.get(k)) for k in names)]
        for (name, _), p, f in zip(rows, params, figures, strict=True)
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    shown_cols, used, left_out = [], 0, []
    for i, w in enumerate(widths):
        if used + w + 2 <= width or i == 0:
            shown_cols.append(i)
            used += w + 2
        else:
            left_out.append(header[i])
    lines = ["  ".join(r[i].rjust(widths[i]) if i else r[i].ljust(widths[i]) for i in shown_cols)
             for r in [header, *body]]  # fmt: skip
    lines.insert(1, "  ".join("-" * widths[i] for i in shown_cols))
    if not changed:
        lines.append("(no param differs between these runs)")
    if left_out:
        lines.append(f"(not shown, too wide for {width} columns: {', '.join(left_out)})")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)
