"""The daily job's forecast and score: every ticker's next trading day from its ``@champion``
into the forecast ledger, and every open forecast scored from the validated table.

Not a DVC stage: the ledger is a record of what was served, appended to by each run (and
each ``stockcast predict``), never rebuilt from the data (see :mod:`stockcast.ledger`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from stockcast import ledger
from stockcast.columns import OHLCV
from stockcast.config import Config
from stockcast.errors import StockcastError
from stockcast.evaluate import level_name
from stockcast.paths import Paths

# (root, registered model name) -> its @champion (stockcast.registry.Champion) or None
ChampionLoader = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Forecasts:
    """One run's forecasts: the ledger rows made, what the append did, tickers without a
    champion, and each champion as it forecast (its bands nudged by the ledger)."""

    rows: list[dict[str, str]]
    appended: ledger.Appended
    missing: list[str] = field(default_factory=list)
    champions: dict[str, Any] = field(default_factory=dict)


def levels(cfg: Config) -> list[str]:
    return [level_name(level) for level in cfg.register.intervals]


def validated(paths: Paths) -> pd.DataFrame:
    if not paths.validated.exists():
        raise StockcastError(f"{paths.validated} not found: run `make pipeline` first")
    return pd.read_parquet(paths.validated)


def next_trading_day(day: pd.Timestamp) -> pd.Timestamp:
    """The weekday after ``day``: the expected target. A holiday's forecast is scored on the
    first trading day that arrives after ``made_on``, whatever its date."""
    return pd.Timestamp(day) + pd.offsets.BDay(1)


def forecast_all(
    cfg: Config,
    paths: Paths,
    load: ChampionLoader | None = None,
    now: pd.Timestamp | None = None,
) -> Forecasts:
    """Forecast each ticker's next trading day with its champion and append it to the ledger."""
    from stockcast.registry import load_champion_version
    from stockcast.serving import forecast

    load = load or load_champion_version
    now = now or pd.Timestamp.now(tz="UTC")
    names = levels(cfg)
    rows, missing, champions = [], [], {}
    served_so_far = scored_table(paths)
    for ticker, group in validated(paths).groupby("ticker", sort=True):
        name = cfg.register.model_name(str(ticker))
        found = load(paths.root, name)
        if found is None:
            missing.append(name)
            continue
        # the champion's latest calibration (recalibrated by a run that confirmed it), its
        # miscoverage nudged by every day it has served
        found = champions[name] = nudged(found, str(ticker), served_so_far, cfg.register.intervals)
        version, model = found.version, found.model
        group = group.sort_values("date")
        ohlcv = group[list(OHLCV)].to_numpy()
        values = forecast(model, ohlcv, 1, cfg.data.target, found.bands)[0]
        day = pd.Timestamp(group["date"].iloc[-1])
        bands = {
            f"{side}_{level}": values.get(f"{side}_{level}", float("nan"))
            for level in names
            for side in ("lower", "upper")
        }
        rows.append(
            ledger.forecast_row(
                str(ticker),
                made_on=day,
                target_date=next_trading_day(day),
                model_version=version,
                variant=str((model.metadata.metadata or {}).get("variant", "?")),
                values={"forecast": values["forecast"], **bands},
                baseline_forecast=float(group["close"].iloc[-1]),
                recorded_at=now,
            )
        )
    appended = (
        ledger.append_forecasts(paths.forecast_ledger, rows, names)
        if rows
        else ledger.Appended(0, 0)
    )
    return Forecasts(rows, appended, missing, champions)


def nudged(champion: Any, ticker: str, table: pd.DataFrame, levels: tuple[float, ...]) -> Any:
    """``champion`` (a :class:`stockcast.registry.Champion`) with its adaptive bands'
    miscoverage nudged, per level, by each scored day this version served ``ticker`` (the
    ledger's hits, oldest first): adaptive conformal inference run on what was served, so a
    run of misses widens tomorrow's band. Other bands are returned as they are."""
    cal = champion.calibration
    if cal is None or cal.method != "adaptive" or table.empty:
        return champion
    mine = table[
        (table["ticker"] == ticker)
        & (table["model_version"].astype(str) == str(champion.version))
        & table["actual"].notna()
    ].sort_values("made_on")
    for level in levels:
        column = f"hit_{level_name(level)}"
        if column in mine:
            cal = cal.after(level, [bool(h) for h in mine[column].dropna()])
    return replace(champion, calibration=cal)


def score(cfg: Config, paths: Paths, now: pd.Timestamp | None = None) -> ledger.Recorded:
    """Record the realised value of every open forecast the validated table now holds."""
    forecasts = ledger.read(paths.forecast_ledger)
    if forecasts.empty:
        return ledger.Recorded(0)
    return ledger.record_actuals(
        paths.actuals_ledger,
        forecasts,
        validated(paths),
        cfg.data.target,
        now or pd.Timestamp.now(tz="UTC"),
    )


def scored_table(paths: Paths) -> pd.DataFrame:
    """The ledger joined with its realised values (see :func:`stockcast.ledger.table`)."""
    return ledger.table(ledger.read(paths.forecast_ledger), ledger.read(paths.actuals_ledger))


@dataclass(frozen=True)
class Monitoring:
    """One run's look at the ledger: values recorded, days logged to MLflow, decay read."""

    recorded: ledger.Recorded
    logged: dict[str, int]
    decays: list[Any]  # stockcast.live.Decay, per ticker with enough scored days
    summary: pd.DataFrame
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # the scored ledger it read

    @property
    def decayed(self) -> list[Any]:
        return [d for d in self.decays if d.decayed]


def monitor(cfg: Config, paths: Paths, now: pd.Timestamp | None = None) -> Monitoring:
    """Score the open forecasts, log live skill to MLflow, read the decay rule per ticker:
    :func:`read_ledger`, then :func:`publish`."""
    seen = read_ledger(cfg, paths, now)
    return replace(seen, logged=publish(cfg, paths, seen))


def read_ledger(cfg: Config, paths: Paths, now: pd.Timestamp | None = None) -> Monitoring:
    """Score the open forecasts and read the decay rule per ticker (no MLflow, no chart:
    what the day's decisions need, before its fits; ``logged`` stays empty)."""
    from stockcast import live

    recorded = score(cfg, paths, now)
    table = scored_table(paths)
    if table.empty:
        return Monitoring(recorded, {}, [], pd.DataFrame())
    decays = []
    for ticker, rows in ledger.served(table).groupby("ticker", sort=True):
        if (found := live.decay(str(ticker), rows, cfg.monitor)) is not None:
            decays.append(found)
    summary = ledger.summary(table, cfg.monitor.min_dm_days)
    return Monitoring(recorded, {}, decays, summary, table)


def publish(cfg: Config, paths: Paths, seen: Monitoring) -> dict[str, int]:
    """Live skill as MLflow metric history and each ticker's chart of what was served (the
    daily job runs this while its networks fit), from the ledger ``seen`` read. Returns the
    days logged per ticker."""
    from stockcast import live

    table = seen.table
    if table.empty:
        return {}
    logged = live.log_history(cfg, paths.root, table)
    for ticker, rows in ledger.served(table).groupby("ticker", sort=True):
        chart = paths.live_plot(str(ticker))
        if seen.recorded.added or not chart.exists():
            live.plot(rows, str(ticker), chart)
    return logged


def act_on_decay(cfg: Config, root: Any, seen: Monitoring, log: Any) -> list[str]:
    """Notify of each decayed champion (Apprise, ``schedule.notify``) and, with
    ``monitor.on_decay: retrain``, move a decayed network's ``@champion`` back to the
    ``last_close`` rule, the reason on both versions. Returns the notes for the summary."""
    from stockcast import ops
    from stockcast.registry import replace_with_rule
    from stockcast.store import client_for

    notes = []
    for reading in seen.decayed:
        text = reading.message(cfg.monitor)
        notes.append(f"**Decay:** {text}.")
        if cfg.monitor.on_decay == "retrain":
            name = cfg.register.model_name(reading.ticker)
            moved = replace_with_rule(client_for(root), name, "last_close", text)
            if moved:
                notes.append(f"{name}: @champion moved to the last_close rule (v{moved}).")
            notes.append(f"{reading.ticker}: retrained now (monitor.on_decay: retrain).")
        try:
            ops.notify(
                cfg.schedule.notify,
                f"stockcast: {reading.ticker} champion decayed",
                text,
                "WARNING",
            )
        except Exception as exc:  # noqa: BLE001 - the notice must never stop the run
            log.error("could not send the decay notice: %s", exc)
    for note in notes:
        log.warning(note)
    return notes
