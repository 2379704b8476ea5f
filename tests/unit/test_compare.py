"""``make compare``'s table from what ``dvc exp show --json`` printed for a real experiment
(``data/exp_show.json``: a workspace, its commit and one experiment of ``-S window.window=30``)."""

from __future__ import annotations

import json
from pathlib import Path

from stockcast.compare import headline, runs, table

SHOWN = json.loads((Path(__file__).parent / "data/exp_show.json").read_text())


def test_every_run_is_a_row_named_as_dvc_names_it():
    names = [name for name, _ in runs(SHOWN)]
    assert names[0] == "workspace" and len(names) == 3
    assert names[1] == "master" and names[2] not in ("workspace", "master")


def test_the_table_shows_the_changed_param_and_a_number_per_headline_metric():
    lines = table(SHOWN).splitlines()
    header = lines[0].split()
    assert header == ["run", "window.window", "gru", "x", "best", "lstm", "x", "best", "best",
                      "test_rmse"]  # fmt: skip
    master = next(line for line in lines if line.startswith("master")).split()
    assert master[1] == "60" and master[2:] == ["0.9970", "1.0040", "11.2500"]
    experiment = lines[-1].split()
    assert experiment[1] == "30" and experiment[2] == "0.4985"
    assert all(len(line) <= 120 for line in lines)


def test_a_narrow_terminal_names_the_columns_it_leaves_out():
    lines = table(SHOWN, width=40).splitlines()
    assert all(len(line) <= 40 for line in lines[:-1])
    assert lines[-1].startswith("(not shown, too wide for 40 columns: ")
    assert "best test_rmse" in lines[-1]


def test_headline_is_the_networks_edge_on_the_span_that_chooses_and_the_best_test_rmse():
    metrics = {
        "A": {
            "baselines": {"naive_rmse": 3.0},
            "gru": {"kind": "network", "val_rmse": 2.0, "val_rmse_vs_best_baseline": 1.1,
                    "test_rmse": 5.0},
            "naive": {"kind": "baseline", "val_rmse": 1.8, "val_rmse_vs_best_baseline": 1.0,
                      "test_rmse": 4.0},
        },
        "B": {
            "gru": {"kind": "network", "val_rmse": 1.0, "val_rmse_vs_best_baseline": 0.9,
                    "test_rmse": 2.0},
            "naive": {"kind": "baseline", "val_rmse": 1.1, "val_rmse_vs_best_baseline": 1.0,
                      "test_rmse": 3.0},
        },
    }  # fmt: skip
    got = headline(metrics)
    assert got == {"gru x best": (1.1 + 0.9) / 2, "best test_rmse": (4.0 + 2.0) / 2}


def test_no_runs_says_what_to_do():
    assert table([]).startswith("no runs to compare: run make pipeline")
