"""The verdict and the leaderboard a pipeline run's parent shows: by hand on small reports."""

from __future__ import annotations

from dataclasses import replace

from stockcast import leaderboard
from stockcast.scores import CandidateScores, SpanScores, TickerReport


def _report(ticker: str = "AAA", **rmse: float) -> TickerReport:
    kinds = {"naive": "baseline", "last_close": "baseline"}
    best = min((n for n in rmse if n in kinds), key=rmse.get)
    out = {}
    for name, value in rmse.items():
        span = replace(
            SpanScores.missing(best),
            rmse=value,
            rmse_vs_best_baseline=value / rmse[best],
            dm_p_value=0.25,
        )
        test = replace(span, rmse=value * 2)
        out[name] = CandidateScores(name, kinds.get(name, "network"), test, span, span)
    return TickerReport(ticker, out)


def test_rows_are_every_candidate_best_first_with_the_decision_on_the_registered_one():
    report = _report(naive=4.0, last_close=2.0, gru=2.2, lstm=1.9)
    decision = {"variant": "lstm", "promote": True, "version": 3}
    rows = leaderboard.rows(report, decision, "backtest")
    assert [r["candidate"] for r in rows] == ["lstm", "last_close", "gru", "naive"]
    assert rows[0]["x_best_baseline"] == 1.9 / 2.0 and rows[0]["best_baseline"] == "last_close"
    assert rows[0]["test_rmse"] == 3.8 and rows[0]["span"] == "backtest"
    assert rows[0]["decision"] == "champion (version 3)"
    assert all(r["decision"] == "" for r in rows[1:])
    rejected = {"variant": "lstm", "promote": False, "version": 4, "reason": "ties the champion"}
    (row,) = [r for r in leaderboard.rows(report, rejected, "backtest") if r["candidate"] == "lstm"]
    assert row["decision"] == "registered (version 4), not promoted: ties the champion"


def test_the_verdict_names_the_champion_and_the_best_network_against_the_best_baseline():
    report = _report(naive=4.0, last_close=2.0, gru=2.2, lstm=2.1)
    said = leaderboard.verdict(report, {"variant": "last_close", "promote": True}, "val")
    assert said == (
        "AAA: last_close is champion; best network lstm 1.0500x last_close on val (DM p=0.25)"
    )
    kept = leaderboard.verdict(report, {"variant": "lstm", "promote": False}, "val")
    assert kept.startswith("AAA: lstm registered, champion kept; best network lstm")
    only_rules = _report(naive=4.0, last_close=2.0, gru=float("nan"))
    assert leaderboard.verdict(only_rules, None, "val") == "AAA; no network scored on val"


def test_a_run_of_many_tickers_counts_its_new_champions():
    reports = {t: _report(t, naive=4.0, last_close=2.0, gru=1.0) for t in ("A", "B", "C")}
    decisions = {
        "A": {"variant": "gru", "promote": True},
        "B": {"variant": "last_close", "promote": True},
        "C": {"variant": "gru", "promote": False},
    }
    said = leaderboard.run_verdict(reports, decisions, "val")
    assert said == "3 tickers: 2 new champion(s), 1 of them networks"
    one = leaderboard.run_verdict({"A": reports["A"]}, decisions, "val")
    assert one.startswith("A: gru is champion")


def test_the_markdown_table_has_a_row_per_candidate_and_no_stray_pipes():
    report = _report(naive=4.0, last_close=2.0, gru=float("nan"))
    decision = {"variant": "last_close", "promote": False, "version": 1, "reason": "a | b"}
    board = leaderboard.rows(report, decision, "val")
    text = leaderboard.markdown(board, "headline")
    lines = text.splitlines()
    assert lines[0] == "**headline**" and lines[2].startswith("| ticker | candidate |")
    assert len(lines) == 4 + 3
    assert all(line.count("|") == len(leaderboard.COLUMNS) + 1 for line in lines[2:])
    assert lines[-1].split(" | ")[4] == "-"  # the network's missing score, last


def test_a_decision_reads_as_one_line_and_a_runs_board_is_every_tickers_rows():
    d = {"version": 2, "variant": "gru", "kind": "network", "promote": False}
    d.update(reason="ties the champion", selection="best network")
    assert leaderboard.decision_line("AAA", d) == (
        "AAA: v2 gru (network) not promoted: ties the champion; chosen as best network"
    )
    reports = {t: _report(t, naive=4.0, last_close=2.0, gru=1.0) for t in ("A", "B")}
    board = leaderboard.board(reports, {"A": {"variant": "gru", "promote": True}}, "val")
    assert [r["ticker"] for r in board] == ["A"] * 3 + ["B"] * 3
    assert [r["decision"] for r in board if r["decision"]] == ["champion (version None)"]


def test_the_evaluate_line_names_the_span_that_chooses_and_never_prints_nan():
    from dataclasses import replace

    from stockcast.scores import CandidateScores, SpanScores

    base = SpanScores.missing("last_close")
    test = replace(base, rmse=11.25, rmse_vs_best_baseline=1.0132, dm_p_value=0.04)
    val = replace(base, rmse=7.0, rmse_vs_best_baseline=0.9969)
    # no folds: validation chooses, and the backtest is not there to print
    no_folds = CandidateScores("gru", "network", test, val, None)
    assert no_folds.line("SH600519") == (
        "SH600519/gru (network): test_rmse 11.250 = 1.0132x last_close (DM p=0.04); "
        "val 0.9969x last_close"
    )
    # folds expected, one failed: the backtest chooses and says it was not scored
    failed = CandidateScores("gru", "network", test, val, base, expected_folds=3)
    assert failed.line("X").endswith("; backtest not scored")
    assert "nan" not in failed.line("X")


def test_a_tickers_row_says_what_was_registered_and_the_networks_edge():
    import math

    from stockcast.leaderboard import TICKER_COLUMNS, ticker_board

    reports = {
        "B": _report("B", naive=12.0, last_close=10.0, gru=9.9),
        "A": _report("A", naive=12.0, last_close=10.0, gru=9.9),
    }
    decisions = {"A": {"variant": "last_close", "promote": True, "version": "3"}}
    rows = ticker_board(reports, decisions, "backtest", {"A": 0.4, "B": 0.9})
    assert [r["ticker"] for r in rows] == ["A", "B"] and set(rows[0]) == set(TICKER_COLUMNS)
    a, b = rows
    assert a["registered"] == "last_close" and a["decision"] == "champion v3"
    assert a["best_network"] == "gru" and a["network_dm_p_adjusted"] == 0.4
    gru = reports["A"].candidates["gru"].on("backtest")
    assert a["network_x_best_baseline"] == gru.rmse_vs_best_baseline
    assert b["decision"] == "" and b["registered"] == b["best_baseline"]  # not registered yet
    assert math.isnan(ticker_board(reports, {}, "backtest")[0]["network_dm_p_adjusted"])


def test_a_note_of_many_tickers_stops_before_mlflows_limit_and_says_where_the_rest_is():
    from stockcast.leaderboard import TICKER_COLUMNS, markdown, ticker_board

    reports = {
        f"T{k:03d}": _report(f"T{k:03d}", naive=12.0, last_close=10.0, gru=9.9) for k in range(500)
    }
    rows = ticker_board(reports, {}, "backtest")
    note = markdown(rows, "500 tickers", TICKER_COLUMNS)
    assert len(note) <= 7500
    shown = note.count("\n| T")
    assert 10 < shown < 500
    assert note.endswith(
        f"_{500 - shown} more rows: every row is in the logged tables "
        "(tickers.json, leaderboard.json)_"
    )
    small = markdown(rows[:3], "3 tickers", TICKER_COLUMNS)
    assert small.count("\n| T") == 3 and "more rows" not in small


def test_the_register_stage_writes_the_tickers_leaderboard_as_csv(tmp_path):
    import pandas as pd

    from stockcast.config import config_from_dict
    from stockcast.paths import Paths
    from stockcast.stages.register import write_leaderboard

    reports = {}
    for t in ("B", "A"):
        report = _report(t, naive=12.0, last_close=10.0, gru=9.9)
        gru = report.candidates["gru"]
        ahead = replace(gru.backtest, dm_stat=-1.0)  # the network ahead of the rule
        reports[t] = TickerReport(t, {**report.candidates, "gru": replace(gru, backtest=ahead)})
    cfg = config_from_dict({"data": {"sources": ["x.csv"]}, "register": {"fdr": 0.1}})
    write_leaderboard(
        cfg, Paths(tmp_path), reports, {"A": {"variant": "gru", "promote": False, "version": "2"}}
    )
    table = pd.read_csv(tmp_path / "reports/leaderboard.csv")
    assert list(table.columns) == list(leaderboard.TICKER_COLUMNS)
    assert table["ticker"].tolist() == ["A", "B"]
    assert table.loc[0, "registered"] == "gru" and table.loc[0, "decision"] == "v2 not promoted"
    # fdr set: each network's p-value adjusted across the two tickers (both 0.25 two-sided,
    # the network ahead: one-sided 0.125 each, adjusted 0.125)
    assert table["network_dm_p_adjusted"].tolist() == [0.125, 0.125]


def _row(ticker: str, network: str = "gru", edge: float = 0.9969, p: float = 0.832) -> dict:
    return {
        "ticker": ticker,
        "span": "backtest",
        "best_baseline": "last_close",
        "best_network": network,
        "network_x_best_baseline": edge,
        "network_dm_p_value": p,
        "network_dm_p_adjusted": float("nan"),
    }


def test_the_terminal_table_says_per_ticker_the_champion_the_networks_edge_and_why():
    decisions = {
        "AAA": {
            "variant": "last_close",
            "version": 1,
            "promote": True,
            "reason": "no champion yet",
            "selection": "gru backtest rmse 0.9969x last_close (DM p=0.832): not significant",
        },
        "BBB": {
            "variant": "lstm",
            "version": 4,
            "promote": False,
            "reason": "ties the champion",
            "previous_version": "2",
            "selection": "lstm backtest rmse 0.9x last_close (DM p=0.01): chosen",
        },
    }
    board = [_row("AAA"), _row("BBB", "lstm", 0.9, 0.01), _row("CCC", "", float("nan"))]
    lines = leaderboard.terminal(board, decisions).splitlines()
    assert lines[0].split()[:2] == ["ticker", "champion"]
    aaa, bbb, ccc = lines[1:]
    assert aaa.startswith("AAA") and "last_close v1 (new)" in aaa
    assert "gru 0.9969x last_close on backtest (DM p=0.83): not significant" in aaa
    assert aaa.endswith("promoted: no champion yet")
    assert "v2 kept" in bbb and bbb.endswith("v4 lstm not promoted: ties the champion")
    assert "lstm 0.9000x last_close on backtest (DM p=0.01): chosen" in bbb
    assert "no network scored on backtest" in ccc and ccc.endswith("nothing registered")
    # the columns line up: each row's edge starts where the header's does
    at = lines[0].index("best network")
    assert aaa[at:].startswith("gru") and bbb[at:].startswith("lstm")


def test_the_terminal_table_of_many_tickers_stops_and_says_where_the_rest_are():
    board = [_row(f"T{i:03d}") for i in range(500)]
    lines = leaderboard.terminal(board, {}, limit=20, rest_in="reports/leaderboard.csv")
    assert len(lines.splitlines()) == 1 + 20 + 1
    assert lines.splitlines()[-1] == (
        "... and 480 more tickers: every one is in reports/leaderboard.csv"
    )


def test_the_terminal_table_shows_the_fdr_adjusted_p_when_there_is_one():
    row = {**_row("AAA"), "network_dm_p_adjusted": 0.2}
    assert "(adjusted p=0.2)" in leaderboard.terminal([row], {})


def test_the_parent_run_shows_the_best_networks_figures_under_the_candidates_names():
    report = _report(naive=4.0, last_close=2.0, gru=2.2, lstm=2.1)
    figures, said = leaderboard.headline_figures({"AAA": report}, "backtest")
    assert figures == {
        "backtest_rmse_vs_best_baseline": 2.1 / 2.0,
        "backtest_dm_p_value": 0.25,
        "backtest_rmse": 2.1,
        "test_rmse": 4.2,
    }
    assert "lstm" in said


def test_many_tickers_parent_shows_the_median_edge_and_no_rmse_across_price_levels():
    reports = {
        "AAA": _report("AAA", last_close=2.0, gru=1.0),
        "BBB": _report("BBB", last_close=10.0, gru=11.0),
        "CCC": _report("CCC", last_close=100.0, gru=300.0),
    }
    figures, said = leaderboard.headline_figures(reports, "backtest")
    assert figures == {"backtest_rmse_vs_best_baseline": 1.1, "backtest_dm_p_value": 0.25}
    assert said.startswith("the median over 3 tickers")
    none, why = leaderboard.headline_figures({"AAA": _report(last_close=1.0)}, "backtest")
    assert none == {} and why == "no network was scored"
