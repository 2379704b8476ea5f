"""The daily job's forecast against a real registry: the champion's next day into the ledger,
once per version and target, scored when the next row arrives."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stockcast import ledger, registry
from stockcast.intervals import window_volatility
from stockcast.paths import write_parquet
from stockcast.stages import forecast
from tests.conftest import synthetic_prices
from tests.model.baseline_run import baseline_run

NOW = pd.Timestamp("2026-12-01 10:00", tz="UTC")


@pytest.fixture
def champion_run(tmp_path, sqlite_store):
    run = baseline_run(tmp_path)
    decisions = run.register()
    assert decisions["TEST"]["promote"]
    return run, decisions["TEST"]


def test_the_champion_forecasts_the_next_day_once_per_version(champion_run):
    run, decision = champion_run
    frame = synthetic_prices(200, "TEST")
    write_parquet(frame.iloc[:-1], run.paths.validated)
    made = forecast.forecast_all(run.cfg, run.paths, now=NOW)
    assert made.missing == [] and made.appended == ledger.Appended(1, 0)
    (row,) = made.rows
    day = frame["date"].iloc[-2]
    assert row["made_on"] == f"{day:%Y-%m-%d}"
    assert row["target_date"] == f"{day + pd.offsets.BDay(1):%Y-%m-%d}"
    assert row["model_version"] == str(decision["version"])
    assert row["variant"] == decision["variant"]
    assert float(row["baseline_forecast"]) == frame["close"].iloc[-2]
    f = {k: float(v) for k, v in row.items() if k.startswith(("lower", "upper", "forecast"))}
    assert f["lower_95"] <= f["lower_80"] <= f["forecast"] <= f["upper_80"] <= f["upper_95"]
    assert f["lower_80"] < f["upper_80"]
    # the adaptive band (register.interval_method) from the last days' volatility, its days
    # capped at the window less one
    champion = registry.load_champion_version(run.paths.root, "stockcast-TEST")
    cal = champion.calibration
    assert (cal.method, cal.days) == ("adaptive", 9)
    sigma = window_volatility(frame["open"].to_numpy()[-12:-1], cal.days)[0]
    assert math.log(f["upper_80"] / f["forecast"]) == pytest.approx(cal.multiplier(0.8) * sigma)

    # A second run the same day (same version, same target): nothing new, nothing rewritten.
    before = run.paths.forecast_ledger.read_bytes()
    again = forecast.forecast_all(run.cfg, run.paths, now=NOW + pd.Timedelta(hours=1))
    assert again.appended == ledger.Appended(0, 1)
    assert run.paths.forecast_ledger.read_bytes() == before

    # Nothing to score until the next row arrives; then it is scored from the data.
    assert forecast.score(run.cfg, run.paths, now=NOW).added == 0
    write_parquet(frame, run.paths.validated)
    chart = run.paths.root / "reports/live/TEST.png"
    # what the daily job does: read the ledger before its fits, publish while they run
    read = forecast.read_ledger(run.cfg, run.paths, now=NOW)
    assert read.recorded.added == 1 and read.logged == {} and read.decays == []
    assert not chart.exists()
    assert forecast.publish(run.cfg, run.paths, read) == {"TEST": 1}
    assert chart.read_bytes()[:4] == b"\x89PNG"
    seen = forecast.monitor(run.cfg, run.paths, now=NOW)  # both at once: nothing new now
    assert seen.recorded.added == 0 and seen.logged == {"TEST": 0} and seen.decays == []
    served = seen.summary.set_index("model_version").loc["served"]
    assert served["scored_days"] == 1
    table = forecast.scored_table(run.paths)
    assert table["actual"].tolist() == [frame["open"].iloc[-1]]
    assert table["error"].iloc[0] == pytest.approx(frame["open"].iloc[-1] - f["forecast"])


def test_a_ticker_without_a_champion_is_named(tmp_path, sqlite_store):
    run = baseline_run(tmp_path)
    write_parquet(synthetic_prices(200, "TEST"), run.paths.validated)
    made = forecast.forecast_all(run.cfg, run.paths, now=NOW)
    assert made.missing == ["stockcast-TEST"] and made.rows == []
    assert not run.paths.forecast_ledger.exists()
