"""The champion's live skill in MLflow and the decay rule that acts on it.

Scored ledger rows (:mod:`stockcast.ledger`) become MLflow metric history, one point per
trading day with that day as its timestamp, so the UI's charts plot live skill over time:

- on a run per ticker, ``live-<ticker>`` (tag ``stockcast.live``), the forecasts served
  (the champion of each day, whichever version it was);
- on each version's own training run, that version's forecasts.

A point already logged is never logged again: each run's history continues after its last
day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast import ledger
from stockcast.config import Config, MonitorConfig

LIVE_TAG = "stockcast.live"
PROBE = "live_rmse_20"  # the metric whose history says which days a run has


@dataclass(frozen=True)
class Decay:
    """The decay rule's reading of the served forecasts' last ``days`` scored days."""

    ticker: str
    days: int
    ratio: float
    p_value: float | None
    decayed: bool

    def message(self, cfg: MonitorConfig) -> str:
        p = "" if self.p_value is None else f", Diebold-Mariano p = {self.p_value:.3g}"
        verdict = "decayed" if self.decayed else "holding"
        bound = f"{cfg.max_rmse_vs_last_close:g}"
        if cfg.max_p_value is not None:
            bound += f" with p < {cfg.max_p_value:g}"
        return (
            f"{self.ticker}: live RMSE over the last {self.days} scored day(s) is "
            f"{self.ratio:.3f}x last_close's{p}: {verdict} (decay past {bound})"
        )


def decay(ticker: str, served: pd.DataFrame, cfg: MonitorConfig) -> Decay | None:
    """Whether the forecasts served for ``ticker`` have decayed: over the last ``cfg.days``
    scored days their RMSE is above ``max_rmse_vs_last_close`` times the rule's on the same
    days and, when ``max_p_value`` is set, the Diebold-Mariano test says it is not chance.
    None until ``cfg.days`` days are scored."""
    from stockcast.evaluate import diebold_mariano, ratio

    done = served[served["actual"].notna()].sort_values("made_on").tail(cfg.days)
    if len(done) < cfg.days:
        return None
    errors = (done["actual"] - done["forecast"]).to_numpy(dtype="float64")
    rule = (done["actual"] - done["baseline_forecast"]).to_numpy(dtype="float64")
    times = ratio(ledger.rmse(errors), ledger.rmse(rule))
    p_value = float(diebold_mariano(errors, rule)[1]) if cfg.max_p_value is not None else None
    worse = times > cfg.max_rmse_vs_last_close
    significant = p_value is None or p_value < (cfg.max_p_value or 1.0)
    return Decay(ticker, len(done), times, p_value, worse and significant)


def _live_run(client: Any, experiment_id: str, ticker: str) -> str:
    """The id of the ticker's ``live-<ticker>`` run, created (and ended) the first time."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{LIVE_TAG}` = '{ticker}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=f"live-{ticker}",
        tags={
            LIVE_TAG: ticker,
            "mlflow.note.content": (
                f"The forecasts served for {ticker} (each day's @champion), scored against "
                "the realised price and the last_close rule on the same days: one point per "
                "trading day. `stockcast ledger --summary` prints the same figures."
            ),
        },
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _last_day(client: Any, run_id: str) -> pd.Timestamp | None:
    points = client.get_metric_history(run_id, PROBE)
    if not points:
        return None
    return pd.Timestamp(max(p.timestamp for p in points), unit="ms")


def log_points(client: Any, run_id: str, rows: pd.DataFrame, min_dm_days: int) -> int:
    """Log the live metrics of ``rows`` day by day after the run's last logged day."""
    from mlflow.entities import Metric

    since = _last_day(client, run_id)
    metrics = []
    for day, values in ledger.history(rows, min_dm_days, since=since):
        stamp = int(pd.Timestamp(day).value // 1_000_000)
        step = int(values["scored_days"])
        metrics += [
            Metric(key, float(v), stamp, step)
            for key, v in values.items()
            if key != "scored_days" and math.isfinite(v)
        ]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    return len({m.timestamp for m in metrics})


def log_history(cfg: Config, root: Path, table: pd.DataFrame) -> dict[str, int]:
    """Every ticker's live metrics as MLflow metric history (see the module docstring).

    Returns:
        per ticker, the days newly logged on its ``live-<ticker>`` run.
    """
    from mlflow.exceptions import MlflowException

    from stockcast import store
    from stockcast.tracking import ensure_experiment

    client = store.client_for(root)
    experiment_id = ensure_experiment(client, cfg.register.experiment, root)
    min_dm = cfg.monitor.min_dm_days
    logged = {}
    for ticker, rows in ledger.served(table).groupby("ticker", sort=True):
        if rows["actual"].notna().any():
            logged[str(ticker)] = log_points(
                client, _live_run(client, experiment_id, ticker), rows, min_dm
            )
    for (ticker, version), rows in table.groupby(["ticker", "model_version"], sort=True):
        if not rows["actual"].notna().any():
            continue
        try:
            run_id = client.get_model_version(cfg.register.model_name(ticker), version).run_id
        except MlflowException:  # a version of another store (the ledger outlives stores)
            continue
        if run_id:
            log_points(client, run_id, rows, min_dm)
    return logged


def markdown(made: list[dict[str, str]], summary: pd.DataFrame, notes: list[str]) -> str:
    """The ledger's part of the retrain summary: today's forecasts and live skill."""
    lines = ["## Forecasts", ""]
    if made:
        levels = ledger.levels_of(made[0])
        bands = " | ".join(f"{lv}% band" for lv in levels)
        lines += [
            f"| ticker | for | version | variant | forecast | {bands} | last_close rule |",
            "|---|---|---|---|---|" + "---|" * len(levels) + "---|",
        ]
        for r in made:
            cells = " | ".join(
                f"{float(r[f'lower_{lv}']):.2f} – {float(r[f'upper_{lv}']):.2f}" for lv in levels
            )
            lines.append(
                f"| {r['ticker']} | {r['target_date']} | v{r['model_version']} | {r['variant']} "
                f"| {float(r['forecast']):.2f} | {cells} | {float(r['baseline_forecast']):.2f} |"
            )
    else:
        lines.append("No forecast: no ticker has a @champion yet.")
    lines += ["", "## Live skill (forecast ledger)", ""]
    if summary.empty or not (summary["scored_days"] > 0).any():
        lines.append("No forecast scored yet: each is scored when its day's price arrives.")
    else:
        lines += [
            "| ticker | version | scored | RMSE 20 d | × last_close | RMSE 60 d | × last_close "
            "| coverage 80 / 95 | DM p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in summary.to_dict("records"):
            lines.append(
                f"| {s['ticker']} | {s['model_version']} {s['variant']} | {int(s['scored_days'])} "
                f"| {s['live_rmse_20']:.3f} | {s['live_rmse_20_vs_last_close']:.3f} "
                f"| {s['live_rmse_60']:.3f} | {s['live_rmse_60_vs_last_close']:.3f} "
                f"| {s.get('live_coverage_80', math.nan):.2f} / "
                f"{s.get('live_coverage_95', math.nan):.2f} "
                f"| {_p(s.get('live_dm_p_value'))} |"
            )
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _p(value: Any) -> str:
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"
    )


def plot(rows: pd.DataFrame, ticker: str, path: Path) -> Path:
    """The forecasts served for ``ticker`` with their bands, the realised values and the
    ``last_close`` rule's forecasts, by target day."""
    from stockcast.evaluate import _figure, _save

    rows = rows.sort_values("made_on")
    day = pd.to_datetime(rows["target_date"])
    fig, ax = _figure(10, 4, 1)
    for level, alpha in zip(ledger.levels_of(rows.columns)[::-1], (0.15, 0.3), strict=False):
        ax.fill_between(
            day, rows[f"lower_{level}"], rows[f"upper_{level}"], alpha=alpha, color="tab:blue",
            label=f"{level}% band", step="mid",
        )  # fmt: skip
    ax.plot(day, rows["forecast"], "o-", color="tab:blue", ms=3, lw=1, label="forecast served")
    ax.plot(day, rows["baseline_forecast"], "x", color="tab:gray", ms=4, label="last_close rule")
    done = rows["actual"].notna()
    ax.plot(
        pd.to_datetime(rows["actual_date"][done]), rows["actual"][done], "s", color="black",
        ms=3, label="realised",
    )  # fmt: skip
    scored = int(done.sum())
    hits = ", ".join(
        f"{lv}%: {rows[f'hit_{lv}'][done].astype(float).mean():.0%}"
        for lv in ledger.levels_of(rows.columns)
    ) if scored else "none scored yet"  # fmt: skip
    ax.set_title(f"{ticker}: forecasts served, {scored} scored (inside the band {hits})")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
