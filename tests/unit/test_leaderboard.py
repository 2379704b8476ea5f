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
