"""The forecast ledger: append-only, scored when the truth arrives, live metrics by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stockcast import ledger
from stockcast.evaluate import diebold_mariano

NOW = pd.Timestamp("2026-12-01 10:00", tz="UTC")
LEVELS = ["80", "95"]


def row(made_on: str, target: str, version: str, forecast: float, close: float, **kw) -> dict:
    values = {
        "forecast": forecast,
        "lower_80": forecast - 1,
        "upper_80": forecast + 1,
        "lower_95": forecast - 2,
        "upper_95": forecast + 2,
        **kw,
    }
    return ledger.forecast_row(
        "AAA",
        pd.Timestamp(made_on),
        pd.Timestamp(target),
        version,
        "last_close",
        values,
        close,
        NOW,
    )


def prices(days: dict[str, float], ticker: str = "AAA") -> pd.DataFrame:
    return pd.DataFrame(
        {"ticker": ticker, "date": pd.to_datetime(list(days)), "open": list(days.values())}
    )


def test_a_second_forecast_for_the_same_target_and_version_keeps_the_first(tmp_path):
    path = tmp_path / "forecasts.csv"
    first = ledger.append_forecasts(path, [row("2026-01-05", "2026-01-06", "3", 10.0, 9.5)], LEVELS)
    before = path.read_bytes()
    again = ledger.append_forecasts(
        path,
        [
            row("2026-01-05", "2026-01-06", "3", 99.0, 9.5),  # same key, another value: kept out
            row("2026-01-05", "2026-01-06", "4", 11.0, 9.5),  # another version: a new row
        ],
        LEVELS,
    )
    assert (first.added, first.kept) == (1, 0)
    assert (again.added, again.kept) == (1, 1)
    after = path.read_bytes()
    assert after.startswith(before)  # appended after the bytes, nothing rewritten
    frame = ledger.read(path)
    assert list(frame["model_version"]) == ["3", "4"]
    assert list(frame["forecast"]) == ["10.0", "11.0"]
    assert list(frame.columns) == ledger.forecast_columns(LEVELS)


def test_rows_repeated_within_one_append_count_once(tmp_path):
    path = tmp_path / "forecasts.csv"
    same = row("2026-01-05", "2026-01-06", "3", 10.0, 9.5)
    done = ledger.append_forecasts(path, [same, dict(same, forecast="12.0")], LEVELS)
    assert (done.added, done.kept) == (1, 1)
    assert list(ledger.read(path)["forecast"]) == ["10.0"]


def test_a_ledger_with_other_columns_is_named_not_mixed(tmp_path):
    path = tmp_path / "forecasts.csv"
    ledger.append_forecasts(path, [row("2026-01-05", "2026-01-06", "3", 10.0, 9.5)], LEVELS)
    before = path.read_bytes()
    narrow = {k: v for k, v in row("2026-01-06", "2026-01-07", "3", 10.0, 9.5).items()}
    narrow = {k: v for k, v in narrow.items() if not k.endswith("_95")}
    with pytest.raises(ValueError, match=r"missing \['lower_95', 'upper_95'\]"):
        ledger.append_forecasts(path, [narrow], ["80"])
    assert path.read_bytes() == before


def test_a_row_without_a_band_is_refused(tmp_path):
    bad = row("2026-01-05", "2026-01-06", "3", 10.0, 9.5)
    del bad["upper_95"]
    with pytest.raises(ValueError, match=r"without \['upper_95'\]"):
        ledger.append_forecasts(tmp_path / "f.csv", [bad], LEVELS)
    assert not (tmp_path / "f.csv").exists()


def test_actuals_are_the_first_trading_day_after_the_forecast_day(tmp_path):
    forecasts = pd.DataFrame(
        [
            row("2026-01-02", "2026-01-05", "3", 10.0, 9.0),  # Friday: Monday is a holiday
            row("2026-01-06", "2026-01-07", "3", 12.0, 11.0),  # its day has not come yet
        ]
    )
    data = prices({"2026-01-02": 9.2, "2026-01-06": 10.5})  # the 5th never traded
    actuals_path = tmp_path / "actuals.csv"
    done = ledger.record_actuals(actuals_path, forecasts, data, "open", NOW)
    assert done.added == 1 and done.revisions == []
    actuals = ledger.read(actuals_path)
    assert actuals[["made_on", "actual_date", "actual"]].values.tolist() == [
        ["2026-01-02", "2026-01-06", "10.5"]
    ]
    # The next ingest brings the 7th: the open row is scored, the first is not rewritten.
    before = actuals_path.read_bytes()
    more = prices({"2026-01-02": 9.2, "2026-01-06": 10.5, "2026-01-07": 12.5})
    assert ledger.record_actuals(actuals_path, forecasts, more, "open", NOW).added == 1
    assert actuals_path.read_bytes().startswith(before)
    assert list(ledger.read(actuals_path)["actual"]) == ["10.5", "12.5"]


def test_a_revised_actual_is_reported_and_not_applied(tmp_path):
    forecasts = pd.DataFrame([row("2026-01-05", "2026-01-06", "3", 10.0, 9.0)])
    path = tmp_path / "actuals.csv"
    ledger.record_actuals(
        path, forecasts, prices({"2026-01-05": 9, "2026-01-06": 10.5}), "open", NOW
    )
    before = path.read_bytes()
    revised = prices({"2026-01-05": 9, "2026-01-06": 10.75})
    done = ledger.record_actuals(path, forecasts, revised, "open", NOW)
    assert done.added == 0
    assert done.revisions == [
        "AAA 2026-01-06: open revised from 10.5 to 10.75 by the provider; the ledger keeps the "
        "value first recorded"
    ]
    assert path.read_bytes() == before
    same = ledger.record_actuals(path, forecasts, prices({"2026-01-06": 10.5}), "open", NOW)
    assert same.revisions == []
    gone = ledger.record_actuals(path, forecasts, prices({"2026-01-07": 11.0}), "open", NOW)
    assert gone.revisions == [
        "AAA 2026-01-06: recorded open 10.5 is no longer in the data (the next day after "
        "2026-01-05 is now 2026-01-07); the recorded value is kept"
    ]


def test_the_table_scores_each_forecast_by_hand(tmp_path):
    forecasts = pd.DataFrame(
        [
            row("2026-01-05", "2026-01-06", "3", 10.0, 9.0),  # actual 10.5: in 80 (9..11)
            row("2026-01-06", "2026-01-07", "3", 10.0, 10.5),  # actual 11.5: 95 only (8..12)
            row("2026-01-07", "2026-01-08", "3", 10.0, 11.5),  # open
        ]
    )
    path = tmp_path / "actuals.csv"
    data = prices({"2026-01-05": 9, "2026-01-06": 10.5, "2026-01-07": 11.5})
    ledger.record_actuals(path, forecasts, data, "open", NOW)
    table = ledger.table(forecasts, ledger.read(path))
    assert table["error"].tolist()[:2] == [0.5, 1.5] and math.isnan(table["error"].iloc[2])
    assert table["hit_80"].tolist()[:2] == [True, False] and table["hit_80"].isna().iloc[2]
    assert table["hit_95"].tolist()[:2] == [True, True]
    assert table["baseline_forecast"].tolist() == [9.0, 10.5, 11.5]


def scored(errors: list[float], rule_errors: list[float], width: float = 1.0) -> pd.DataFrame:
    n = len(errors)
    actual = np.full(n, 100.0)
    frame = pd.DataFrame(
        {
            "ticker": "AAA",
            "model_version": "3",
            "variant": "gru",
            "made_on": [f"2026-01-{d:02d}" for d in range(1, n + 1)],
            "actual_date": [f"2026-02-{d:02d}" for d in range(1, n + 1)],
            "recorded_at": "x",
            "actual": actual,
            "forecast": actual - np.array(errors),
            "baseline_forecast": actual - np.array(rule_errors),
        }
    )
    frame["lower_80"], frame["upper_80"] = frame["forecast"] - width, frame["forecast"] + width
    frame["hit_80"] = (frame["actual"] - frame["forecast"]).abs() <= width
    return frame


def test_live_metrics_by_hand():
    errors = [1.0, -2.0, 0.5, 3.0]
    rule = [1.0, 1.0, -1.0, 1.0]
    out = ledger.live_metrics(scored(errors, rule), min_dm_days=5)
    rmse = math.sqrt((1 + 4 + 0.25 + 9) / 4)
    assert out["live_rmse_20"] == pytest.approx(rmse)
    assert out["live_last_close_rmse_20"] == pytest.approx(1.0)
    assert out["live_rmse_20_vs_last_close"] == pytest.approx(rmse)
    assert out["live_coverage_80"] == pytest.approx(0.5)  # |1| and |0.5| inside +-1
    assert out["scored_days"] == 4
    assert "live_dm_p_value" not in out  # 4 scored days < 5


def test_live_rmse_looks_at_the_last_days_only():
    errors = [10.0] * 40 + [1.0] * 20
    out = ledger.live_metrics(scored(errors, [1.0] * 60), min_dm_days=20)
    assert out["live_rmse_20"] == pytest.approx(1.0)
    assert out["live_rmse_60"] == pytest.approx(math.sqrt((40 * 100 + 20) / 60))
    e, r = np.array(errors), np.ones(60)
    assert out["live_dm_p_value"] == pytest.approx(diebold_mariano(e, r)[1])


def test_open_rows_are_not_scored():
    frame = scored([1.0, 2.0], [1.0, 1.0])
    frame.loc[1, "actual"] = np.nan
    out = ledger.live_metrics(frame)
    assert out["scored_days"] == 1 and out["live_rmse_20"] == pytest.approx(1.0)


def test_history_has_one_point_per_scored_day_stamped_with_that_day():
    points = ledger.history(scored([1.0, 3.0, 2.0], [1.0, 1.0, 1.0]))
    assert [day for day, _ in points] == list(
        pd.to_datetime(["2026-02-01", "2026-02-02", "2026-02-03"])
    )
    assert points[0][1]["live_rmse_20"] == pytest.approx(1.0)
    assert points[1][1]["live_rmse_20"] == pytest.approx(math.sqrt(5))
    after = ledger.history(
        scored([1.0, 3.0, 2.0], [1.0, 1.0, 1.0]), since=pd.Timestamp("2026-02-02")
    )
    assert [day for day, _ in after] == [pd.Timestamp("2026-02-03")]
    assert after[0][1]["live_rmse_20"] == pytest.approx(math.sqrt(14 / 3))


def test_summary_per_version_and_what_was_served():
    a = scored([1.0, 1.0], [2.0, 2.0])
    b = scored([3.0, 3.0], [2.0, 2.0]).assign(model_version="4", recorded_at="y")
    out = ledger.summary(pd.concat([a, b]))
    by = out.set_index("model_version")
    assert by.loc["3", "live_rmse_20"] == pytest.approx(1.0)
    assert by.loc["4", "live_rmse_20"] == pytest.approx(3.0)
    # served: per day the last recorded forecast (v4, recorded later)
    assert by.loc["served", "live_rmse_20"] == pytest.approx(3.0)
    assert by.loc["served", "forecasts"] == 2


def test_an_empty_ledger_has_an_empty_table_and_summary(tmp_path):
    forecasts = ledger.read(tmp_path / "forecasts.csv")
    actuals = ledger.read(tmp_path / "actuals.csv")
    assert ledger.table(forecasts, actuals).empty
