"""Who won, against what, and why, in words a runs list can show: a pipeline run's leaderboard
(every candidate of every ticker on the span that chooses, beside the best baseline there, and
its test RMSE), the decision on each registered candidate, and a one-line verdict."""

from __future__ import annotations

import math
import statistics
from typing import Any

from stockcast.promotion import leaders
from stockcast.scores import TickerReport

COLUMNS = (
    "ticker",
    "candidate",
    "kind",
    "span",
    "rmse",
    "x_best_baseline",
    "best_baseline",
    "dm_p_value",
    "test_rmse",
    "decision",
)


def rows(report: TickerReport, decision: dict[str, Any] | None, span: str) -> list[dict[str, Any]]:
    """One row per candidate of a ticker, best on ``span`` first; the registered one says
    what became of it (``champion``, or why it was not promoted)."""
    out = []
    for name, c in report.candidates.items():
        on = c.on(span)
        out.append(
            {
                "ticker": report.ticker,
                "candidate": name,
                "kind": c.kind,
                "span": span,
                "rmse": on.rmse,
                "x_best_baseline": on.rmse_vs_best_baseline,
                "best_baseline": on.best_baseline,
                "dm_p_value": on.dm_p_value,
                "test_rmse": c.test.rmse,
                "decision": _decision(name, decision),
            }
        )
    return sorted(out, key=lambda r: (math.isnan(r["rmse"]), r["rmse"]))


TICKER_COLUMNS = (
    "ticker",
    "registered",
    "kind",
    "decision",
    "span",
    "rmse",
    "x_best_baseline",
    "best_baseline",
    "best_network",
    "network_x_best_baseline",
    "network_dm_p_value",
    "network_dm_p_adjusted",
    "test_rmse",
    "test_coverage_80",
    "test_coverage_95",
)
NOTE_LIMIT = 7500  # MLflow cuts a tag at 8000 characters: the note stops before that


def ticker_row(
    report: TickerReport,
    decision: dict[str, Any] | None,
    span: str,
    adjusted_p: float = math.nan,
) -> dict[str, Any]:
    """A ticker in one row: the registered candidate (or, before registration, the best
    baseline) on ``span`` against the best baseline, its test RMSE and coverage, and the
    best network's edge with its DM p-value, adjusted across the run's tickers when
    ``register.fdr`` is set (NaN otherwise)."""
    network, baseline = leaders(report.candidates, span)
    name = (decision or {}).get("variant") or baseline
    chosen = report.candidates[name]
    on = chosen.on(span)
    edge = report.candidates[network].on(span) if network else None
    if not decision:
        said = ""
    elif decision.get("promote"):
        said = f"champion v{decision.get('version')}"
    else:
        said = f"v{decision.get('version')} not promoted"
    return {
        "ticker": report.ticker,
        "registered": name,
        "kind": chosen.kind,
        "decision": said,
        "span": span,
        "rmse": on.rmse,
        "x_best_baseline": on.rmse_vs_best_baseline,
        "best_baseline": baseline,
        "best_network": network or "",
        "network_x_best_baseline": edge.rmse_vs_best_baseline if edge else math.nan,
        "network_dm_p_value": edge.dm_p_value if edge else math.nan,
        "network_dm_p_adjusted": adjusted_p,
        "test_rmse": chosen.test.rmse,
        "test_coverage_80": chosen.test_coverage.get("80", math.nan),
        "test_coverage_95": chosen.test_coverage.get("95", math.nan),
    }


def ticker_board(
    reports: dict[str, TickerReport],
    decisions: dict[str, dict[str, Any]],
    span: str,
    adjusted: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Every ticker's row (:func:`ticker_row`), in ticker order: a leaderboard that stays
    readable at 500 tickers (``reports/leaderboard.csv``, the parent run's ``tickers.json``)."""
    return [
        ticker_row(reports[t], decisions.get(t), span, (adjusted or {}).get(t, math.nan))
        for t in sorted(reports)
    ]


def board(
    reports: dict[str, TickerReport], decisions: dict[str, dict[str, Any]], span: str
) -> list[dict[str, Any]]:
    """Every ticker's rows (:func:`rows`), ticker by ticker: a run's whole leaderboard."""
    return [row for t, r in reports.items() for row in rows(r, decisions.get(t), span)]


def decision_line(ticker: str, d: dict[str, Any]) -> str:
    """A ticker's registration in a line: the version, whether it is @champion and why, and
    how it was chosen."""
    verdict = "is @champion" if d["promote"] else "not promoted"
    return (
        f"{ticker}: v{d['version']} {d['variant']} ({d['kind']}) {verdict}: {d['reason']}; "
        f"chosen as {d['selection']}"
    )


def _decision(name: str, decision: dict[str, Any] | None) -> str:
    if not decision or decision.get("variant") != name:
        return ""
    if decision.get("promote"):
        return f"champion (version {decision.get('version')})"
    return f"registered (version {decision.get('version')}), not promoted: {decision.get('reason')}"


def verdict(report: TickerReport, decision: dict[str, Any] | None, span: str) -> str:
    """One ticker in a line: the registered candidate and whether it is champion, then the
    best network against the best baseline on ``span`` with the DM p-value."""
    said = report.ticker
    if decision:
        variant = decision.get("variant")
        said += (
            f": {variant} is champion"
            if decision.get("promote")
            else f": {variant} registered, champion kept"
        )
    network, baseline = leaders(report.candidates, span)
    if network is None:
        return f"{said}; no network scored on {span}"
    on = report.candidates[network].on(span)
    return (
        f"{said}; best network {network} {on.rmse_vs_best_baseline:.4f}x {baseline} "
        f"on {span} (DM p={on.dm_p_value:.2g})"
    )


def run_verdict(
    reports: dict[str, TickerReport], decisions: dict[str, dict[str, Any]], span: str
) -> str:
    """A pipeline run in a line: the one ticker's verdict, or for many how many tickers have a
    network for champion and how many changed champion."""
    if len(reports) == 1:
        ((ticker, report),) = reports.items()
        return verdict(report, decisions.get(ticker), span)
    networks = sum(
        1
        for t, d in decisions.items()
        if d.get("promote") and reports[t].candidates[d["variant"]].kind == "network"
    )
    promoted = sum(1 for d in decisions.values() if d.get("promote"))
    return f"{len(reports)} tickers: {promoted} new champion(s), {networks} of them networks"


def markdown(
    board: list[dict[str, Any]],
    headline: str,
    columns: tuple[str, ...] = COLUMNS,
    limit: int = NOTE_LIMIT,
) -> str:
    """The leaderboard as the run's description: the verdict, then a table of ``columns``,
    as many rows as fit in ``limit`` characters; a last line says how many rows are left
    out and where they all are."""
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    lines = [f"**{headline}**", "", head, rule]
    size = sum(len(line) + 1 for line in lines)
    rest = "\n_{} more rows: every row is in the logged tables (tickers.json, leaderboard.json)_"
    for done, row in enumerate(board):
        line = "| " + " | ".join(_cell(row[c]) for c in columns) + " |"
        if size + len(line) + 1 + len(rest) + 10 > limit:
            lines.append(rest.format(len(board) - done))
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "/")


TERMINAL_ROWS = 20  # a terminal's summary shows this many tickers; the rest are in the CSV


def terminal(
    board: list[dict[str, Any]],
    decisions: dict[str, dict[str, Any]],
    limit: int = TERMINAL_ROWS,
    rest_in: str = "reports/leaderboard.csv",
) -> str:
    """The end of a run in a terminal: per ticker (:func:`ticker_board`'s rows) the champion,
    the best network against the best baseline on the span that chooses with its DM p-value,
    and whether the registered version was promoted or why not; aligned columns, at most
    ``limit`` tickers, then how many more and where they are."""
    header = ("ticker", "champion", "best network against the best baseline", "decision")
    lines = []
    for row in board[:limit]:
        d = decisions.get(row["ticker"]) or {}
        network = row["best_network"]
        if network:
            p = row["network_dm_p_adjusted"]
            p_said = f"adjusted p={p:.2g}" if p == p else f"DM p={row['network_dm_p_value']:.2g}"
            edge = (
                f"{network} {row['network_x_best_baseline']:.4f}x {row['best_baseline']} "
                f"on {row['span']} ({p_said})"
            )
        else:
            edge = f"no network scored on {row['span']}"
        if ": " in d.get("selection", ""):  # why the network was or was not chosen
            edge += f": {d['selection'].split(': ', 1)[1]}"
        if not d:
            decided, champion = "nothing registered", "-"
        elif d.get("promote"):
            decided = f"promoted: {d.get('reason', '')}"
            champion = f"{d.get('variant')} v{d.get('version')}"
            if d.get("already_registered"):  # the champion's own forecaster, chosen again
                decided = f"kept: {d.get('reason', '')}"
            else:
                champion += " (new)"
        else:
            decided = f"v{d.get('version')} {d.get('variant')} not promoted: {d.get('reason', '')}"
            champion = f"v{d['previous_version']} kept" if d.get("previous_version") else "kept"
        lines.append((row["ticker"], champion, edge, decided))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(3)]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in [header, *lines]
    ]
    if len(board) > limit:
        out.append(f"... and {len(board) - limit} more tickers: every one is in {rest_in}")
    return "\n".join(out)


def headline_figures(reports: dict[str, TickerReport], span: str) -> tuple[dict[str, float], str]:
    """What a pipeline's parent run shows in the runs list, under the same names as its
    candidates' (:func:`stockcast.ui_view.headline_metrics`): the best network's figures on
    ``span`` against the best baseline there, and its test RMSE. With many tickers, the
    median over the tickers of each one's best network, of the ratio and the DM p-value only
    (RMSEs in different currencies and price levels have no median). Returns the figures and
    a line saying which they are."""
    best = [(n, r.candidates[n]) for r in reports.values() if (n := leaders(r.candidates, span)[0])]
    if not best:
        return {}, "no network was scored"
    edges = ("rmse_vs_best_baseline", "dm_p_value")
    if len(reports) == 1:
        ((name, network),) = best
        on = network.on(span)
        figures = {f"{span}_{k}": float(getattr(on, k)) for k in (*edges, "rmse")}
        figures["test_rmse"] = network.test.rmse
        said = f"the best network's ({name}) on {span}, against the best baseline"
    else:
        ons = [network.on(span) for _, network in best]
        figures = {f"{span}_{k}": _finite_median([getattr(on, k) for on in ons]) for k in edges}
        said = (
            f"the median over {len(best)} tickers of each one's best network "
            f"on {span}, against its best baseline"
        )
    return {k: v for k, v in figures.items() if math.isfinite(v)}, said


def _finite_median(values: list[float]) -> float:
    """The median of the finite values; NaN when there is none."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan
