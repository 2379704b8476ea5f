"""Data errors a person can act on: which file, which params, what the check means in words,
which repairs were made, and ``stockcast validate`` reading params.yaml's own sources."""

from __future__ import annotations

from pathlib import Path

import yaml

from stockcast.cli import main
from tests.conftest import synthetic_prices, write_yahoo_csv


def _params(root: Path, **sections) -> None:
    params = {"data": {"sources": ["data/raw"]}, **sections}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_each_failing_ticker_names_the_file_it_came_from(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data/raw"
    folder.mkdir(parents=True)
    write_yahoo_csv(synthetic_prices(80, seed=1), folder / "GOOD.csv")
    bad = write_yahoo_csv(synthetic_prices(80, seed=2), folder / "BAD.csv")
    rows = bad.read_text().splitlines()
    cells = rows[7].split(",")
    cells[1] = "-3.5"  # a negative open
    rows[7] = ",".join(cells)
    bad.write_text("\n".join(rows) + "\n")
    code = main(["validate", str(folder), "--min-rows", "40"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "BAD (from data/raw/BAD.csv): FAILED" in out  # relative to where it was run
    assert "GOOD (from data/raw/GOOD.csv): passed" in out
    # the check in plain words beside its GX name, the column and the day
    assert "  - prices must be above zero [expect_column_values_to_be_between]: column open:" in out
    assert f"{cells[0]}: open=-3.5" in out


def test_too_few_rows_says_which_params_add_up_and_which_to_lower(
    tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_yahoo_csv(synthetic_prices(60), tmp_path / "SHORT.csv")
    _params(
        tmp_path,
        window={"window": 10, "val_days": 20, "test_days": 20},
        backtest={"folds": 2, "fold_days": 15},
    )
    code = main(["validate", str(tmp_path / "SHORT.csv")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert (
        "the series is too short for the configured spans "
        "[expect_column_values_to_be_between]: column rows: 60 rows; the configured spans need "
        "at least 90: "
        "window.test_days 20 + window.val_days 20 + 2 x window.window 10 (training windows) + "
        "backtest.folds 2 x backtest.fold_days 15. Use a longer history, or lower "
        "window.test_days, window.val_days, window.window or backtest.folds"
    ) in out


def test_an_unsafe_ticker_is_renamed_as_a_reported_repair(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = synthetic_prices(60).drop(columns="ticker")
    frame["Name"] = "../EVIL"
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame.to_csv(tmp_path / "all_stocks.csv", index=False)
    code = main(["validate", str(tmp_path / "all_stocks.csv"), "--min-rows", "40"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        f"repair: {tmp_path / 'all_stocks.csv'}: renamed ticker '../EVIL' to 'EVIL' "
        "(only letters, digits and . _ ^ - are safe in file and model names)"
    ) in out
    assert "EVIL (from" in out and "passed" in out


def test_validate_without_files_reads_the_configured_sources_and_mappings(
    tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    frame = synthetic_prices(60)
    frame["date"] = frame["date"].dt.strftime("%d.%m.%Y")
    frame.rename(
        columns={"date": "Tag", "open": "Eroeffnung", "high": "Hoch", "low": "Tief"}
        | {"close": "Schluss", "volume": "Umsatz"}
    ).drop(columns="ticker").to_csv(tmp_path / "dax.csv", index=False)
    mapping = {"date": "Tag", "open": "Eroeffnung", "high": "Hoch", "low": "Tief"}
    mapping |= {"close": "Schluss", "volume": "Umsatz"}
    source = {"path": "dax.csv", "ticker": "DAX", "columns": mapping, "date_format": "%d.%m.%Y"}
    _params(tmp_path, window={"window": 5, "val_days": 10, "test_days": 10})
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["data"]["sources"] = [source]
    params["backtest"] = {"folds": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code = main(["validate"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "DAX (from " in out and "dax.csv): passed" in out
    assert "60 rows" in out
