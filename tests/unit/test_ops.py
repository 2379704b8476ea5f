"""Daily operation pieces: the run lock, new-data check, drift tests, lineage, summary, webhook."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest

from flows.server import free_port
from stockcast import ops
from stockcast.config import config_from_dict
from stockcast.drift import detect_drift
from stockcast.errors import RunLocked
from stockcast.lineage import dvc_lineage, git_revision
from stockcast.ops import new_data, post_webhook, progress_points, run_lock, summary_markdown
from tests.conftest import json_receiver, synthetic_prices


def _cfg(**drift):
    return config_from_dict(
        {
            "data": {"sources": ["x.csv"]},
            "window": {"window": 10, "val_days": 50, "test_days": 60},
            "backtest": {"folds": 0},
            "drift": {"recent_days": 60, **drift},
        }
    )


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path):
    with run_lock(tmp_path, "first run"):
        with pytest.raises(RunLocked, match=r"in progress \(first run, pid \d+"):
            with run_lock(tmp_path, "second run"):
                pass
    with run_lock(tmp_path, "third run"):  # released on exit
        pass


def test_the_lock_is_held_across_processes_and_freed_when_the_holder_dies(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from stockcast.ops import run_lock\n"
        f"with run_lock(Path({str(tmp_path)!r}), 'child'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match="child"):
            with run_lock(tmp_path, "parent"):
                pass
    finally:
        child.kill()  # a crash: no cleanup code runs
        child.wait()
    with run_lock(tmp_path, "parent", wait_seconds=5):
        pass


def test_new_data_names_only_tickers_with_a_newer_day(tmp_path):
    old = pd.concat([synthetic_prices(100, "AAA"), synthetic_prices(100, "BBB")])
    old.to_parquet(tmp_path / "ingested.parquet")
    assert new_data(old, tmp_path / "ingested.parquet").tickers == []
    assert (
        "no source has a new trading day" in new_data(old, tmp_path / "ingested.parquet").message()
    )
    newer = pd.concat([synthetic_prices(101, "AAA"), synthetic_prices(100, "BBB")])
    found = new_data(newer, tmp_path / "ingested.parquet")
    assert found.tickers == ["AAA"] and "AAA 2015-05-22 -> 2015-05-25" in found.message()
    assert new_data(old, tmp_path / "missing.parquet").tickers == ["AAA", "BBB"]


def _frame_with_returns(returns: np.ndarray, ticker: str = "T") -> pd.DataFrame:
    prices = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    frame = synthetic_prices(len(prices), ticker)
    frame["open"] = prices
    return frame


def test_drift_is_flagged_when_volatility_jumps_and_not_on_the_same_process():
    rng = np.random.default_rng(1)
    calm = rng.normal(0, 0.01, 700)
    same = detect_drift(_frame_with_returns(calm), "open", _cfg())[0]
    assert not same.drift and same.ks_p_value > 0.01 and same.recent_days == 60
    # the training span is every row before validation and test (n - 110)
    assert same.reference_days == 700 + 1 - 110 - 1
    wild = np.concatenate([calm[:-60], rng.normal(0, 0.05, 60)])
    jumped = detect_drift(_frame_with_returns(wild), "open", _cfg())[0]
    assert jumped.drift and jumped.levene_p_value < 1e-6 and jumped.volatility_ratio > 3


def test_drift_across_many_tickers_controls_false_discoveries():
    """200 unchanged random walks and one whose volatility jumps: unadjusted tests at 0.01
    flag a few walks by chance; adjusted across the tickers only the jump drifts, and one
    ticker alone is judged on its own p-value."""
    from stockcast.drift import log_lines

    rng = np.random.default_rng(7)
    walks = [_frame_with_returns(rng.normal(0, 0.01, 700), f"W{k:03d}") for k in range(200)]
    calm = rng.normal(0, 0.01, 700)
    jump = _frame_with_returns(np.concatenate([calm[:-60], rng.normal(0, 0.05, 60)]), "JUMP")
    found = detect_drift(pd.concat([*walks, jump], ignore_index=True), "open", _cfg())
    by_chance = [d.ticker for d in found if min(d.ks_p_value, d.levene_p_value) < 0.01]
    assert len(by_chance) >= 3 and "JUMP" in by_chance  # what the tests alone would flag
    assert [d.ticker for d in found if d.drift] == ["JUMP"]
    jumped = next(d for d in found if d.ticker == "JUMP")
    assert jumped.adjusted_p_value < 0.01 <= min(d.adjusted_p_value for d in found if not d.drift)
    report = {"tickers": [d.__dict__ for d in found]}
    lines = log_lines(report, 0.01)
    assert [line for line, drifted in lines if drifted][0].startswith("JUMP drift=True")
    assert len(lines) == 2  # 201 tickers: the drifted one and the count, not 201 lines
    assert lines[-1][0].startswith(
        f"drift in 1 of 201 tickers: Benjamini-Hochberg at 0.01 across them ({len(by_chance)}"
        " below 0.01 before adjusting"
    )
    (alone,) = detect_drift(walks[0], "open", _cfg())
    assert alone.adjusted_p_value == min(alone.ks_p_value, alone.levene_p_value)


def test_drift_p_value_threshold_comes_from_params():
    rng = np.random.default_rng(2)
    shifted = np.concatenate([rng.normal(0, 0.01, 640), rng.normal(0.004, 0.012, 60)])
    frame = _frame_with_returns(shifted)
    strict = detect_drift(frame, "open", _cfg(p_value=1e-12))[0]
    loose = detect_drift(frame, "open", _cfg(p_value=0.5))[0]
    assert strict.ks_p_value == loose.ks_p_value
    assert not strict.drift and loose.drift


def test_lineage_reads_the_dataset_hashes_from_dvc_lock(tmp_path):
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n"
        "  ingest:\n    outs:\n    - path: data/interim/ingested.parquet\n      md5: aaa111\n"
        "  window:\n    outs:\n    - path: data/processed\n      md5: bbb222.dir\n"
    )
    assert dvc_lineage(tmp_path) == {"dvc_dataset_md5": "bbb222.dir", "dvc_ingested_md5": "aaa111"}
    assert dvc_lineage(tmp_path / "nowhere") == {}


def test_lineage_takes_a_running_pipeline_s_fresh_hashes_over_dvc_lock(tmp_path, monkeypatch):
    import json

    from stockcast.lineage import FRESH_OUTS

    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n"
        "  ingest:\n    outs:\n    - path: data/interim/ingested.parquet\n      md5: aaa111\n"
        "  window:\n    outs:\n    - path: data/processed\n      md5: bbb222.dir\n"
    )
    # the run has ingested again, not windowed yet: the table's new hash, the old windows'
    monkeypatch.setenv(FRESH_OUTS, json.dumps({"data/interim/ingested.parquet": "ccc333"}))
    assert dvc_lineage(tmp_path) == {"dvc_dataset_md5": "bbb222.dir", "dvc_ingested_md5": "ccc333"}
    assert dvc_lineage(tmp_path / "nowhere") == {"dvc_ingested_md5": "ccc333"}


def test_git_dirty_means_code_or_params_changed_not_what_the_run_wrote(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@stockcast.invalid")
    git("config", "user.name", "t")
    (tmp_path / "data").mkdir()
    for name in ("params.yaml", "dvc.lock", ".gitignore", "data/.gitignore"):
        (tmp_path / name).write_text("a: 1\n")
    git("add", "-A")
    git("commit", "-q", "-m", "x")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_revision(tmp_path) == (head, False)
    for name in ("dvc.lock", ".gitignore", "data/.gitignore"):  # written by the run itself
        (tmp_path / name).write_text("b: 2\n")
    (tmp_path / "untracked.txt").write_text("new")
    assert git_revision(tmp_path) == (head, False)
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert git_revision(tmp_path) == (head, True)
    assert git_revision(tmp_path.parent / "not-a-repo") == ("unknown", False)


def test_summary_has_a_row_per_variant_the_decision_and_drift():
    metrics = {
        "SH600519": {
            "baselines": {"naive_rmse": 19.6, "drift_rmse": 19.6, "naive_mae": 14.7},
            "gru": {
                "kind": "network",
                "test_rmse": 19.645,
                "rmse_vs_naive": 1.0014,
                "test_mae": 14.8,
                "test_rmse_vs_best_baseline": 1.6463,
                "test_best_baseline": "last_close",
                "test_dm_p_value": 1e-10,
                "test_coverage_80": 0.81,
                "test_coverage_95": 0.96,
            },
            "lstm": {"error": "boom"},
        }
    }
    registry = {"SH600519": {"version": "3", "variant": "gru", "promote": False, "reason": "r"}}
    drift = {
        "tickers": [
            {
                "ticker": "SH600519",
                "ks_p_value": 0.2,
                "levene_p_value": 0.001,
                "volatility_ratio": 1.7,
                "drift": True,
            }
        ]
    }
    text = summary_markdown(metrics, registry, drift)
    assert "**v3 (gru): not promoted** — r" in text
    assert "| gru | network | 19.645 | 1.6463 last_close (p=1e-10) | 1.0014 | 14.800 |" in text
    assert "| 0.81 / 0.96 |" in text
    assert "| lstm | failed |" in text
    assert "Baseline RMSE: drift 19.600, naive 19.600" in text
    assert "| SH600519 | 0.2000 | 0.0010 | 1.700 | **yes** |" in text


def test_webhook_posts_json(tmp_path):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status = post_webhook(f"http://127.0.0.1:{server.server_port}/hook", {"state": "FAILED"})
    finally:
        server.shutdown()
    assert status == 204 and received == [{"state": "FAILED"}]


def test_a_long_step_reports_every_item_up_to_ten_then_about_every_tenth_and_the_last():
    assert progress_points(0) == set()
    assert progress_points(3) == {1, 2, 3}
    assert progress_points(10) == set(range(1, 11))
    assert progress_points(100) == set(range(10, 101, 10))
    assert progress_points(25) == {*range(2, 25, 2), 25}
    assert progress_points(1000, parts=4) == {250, 500, 750, 1000}


def test_a_candidate_row_shows_every_figure_and_a_dash_for_what_is_missing():
    from stockcast.ops import _candidate_row

    full = {
        "kind": "baseline",
        "test_rmse": 11.2482,
        "rmse_vs_naive": 0.57634,
        "test_mae": 8.1234,
        "test_rmse_vs_best_baseline": 1.0,
        "test_best_baseline": "last_close",
        "test_dm_p_value": 0.99912,
        "test_directional_accuracy": 0.51234,
        "backtest_rmse_vs_best_baseline": 0.99687,
        "backtest_best_baseline": "naive",
        "test_coverage_80": 0.733,
        "test_coverage_95": 0.953,
    }
    assert _candidate_row("last_close", full) == (
        "| last_close | baseline | 11.248 | 1.0000 last_close (p=0.999) | 0.5763 | 8.123 | "
        "0.512 | 0.9969 (naive) | 0.73 / 0.95 |"
    )
    bare = {"test_rmse": 11.2482, "rmse_vs_naive": 0.57634}
    assert _candidate_row("gru", bare) == (
        "| gru | network | 11.248 | nan ? (p=nan) | 0.5763 | nan | nan | — | nan / nan |"
    )
    assert _candidate_row("lstm", {"error": "boom"}) == "| lstm | failed | | | | | | | |"


def test_the_whole_summary_reads_as_written():
    metrics = {
        "BBB": {
            "baselines": {},
            "naive": {"kind": "baseline", "test_rmse": 2.0, "rmse_vs_naive": 1.0},
        },
        "AAA": {
            "baselines": {"naive_rmse": 2.5, "naive_mae": 1.0, "last_close_rmse": 1.25},
            "gru": {"error": "boom"},
        },
    }
    registry = {"AAA": {"version": 2, "variant": "last_close", "promote": True, "reason": "best"}}
    drift = {"tickers": [{"ticker": "AAA", "ks_p_value": 0.5, "levene_p_value": 0.25,
                          "volatility_ratio": 1.0, "drift": False}]}  # fmt: skip
    header = (
        "| candidate | kind | test RMSE | × best baseline (DM p) | × naive | MAE | dir. acc. "
        "| backtest × best baseline | 80% / 95% coverage |"
    )
    assert (
        summary_markdown(metrics, registry, drift)
        == "\n".join(
            [
                "# stockcast retrain",
                "",
                "## AAA",
                "",
                "**v2 (last_close): promoted to @champion** — best",
                "",
                header,
                "|---|---|---|---|---|---|---|---|---|",
                "| gru | failed | | | | | | | |",
                "",
                "Baseline RMSE: last_close 1.250, naive 2.500",
                "",
                "## BBB",
                "",
                "**v? (?): not promoted** — no decision recorded",
                "",
                header,
                "|---|---|---|---|---|---|---|---|---|",
                "| naive | baseline | 2.000 | nan ? (p=nan) | 1.0000 | nan | nan | — | nan / nan |",
                "",
                "## Drift",
                "",
                "| ticker | KS p | Levene p | vol. ratio | drift |",
                "|---|---|---|---|---|",
                "| AAA | 0.5000 | 0.2500 | 1.000 | no |",
            ]
        )
        + "\n"
    )
    assert summary_markdown({}, {}) == "# stockcast retrain\n\n"


def test_retrain_decisions_say_why():
    assert ops.retrain_decision("warn", True, False) == (
        True,
        "drift: retraining (drift.on_drift: warn)",
    )
    assert ops.retrain_decision("retrain", True, True) == (
        True, "drift: retraining (drift.on_drift: retrain)"
    )  # fmt: skip
    assert ops.retrain_decision("retrain", False, True) == (True, "forced: retraining")
    assert ops.retrain_decision("warn", False, True) == (True, "retraining")
    assert ops.retrain_decision("warn", False, False) == (True, "retraining")


def test_new_data_says_which_tickers_moved_from_which_day_to_which():
    found = ops.NewData(
        {"AAA": "2024-01-03", "BBB": "2024-01-02"}, {"AAA": "2024-01-02", "BBB": "2024-01-02"}
    )
    assert found.tickers == ["AAA"]
    assert found.message() == "new trading days: AAA 2024-01-02 -> 2024-01-03"
    fresh = ops.NewData({"CCC": "2024-01-02"}, {})
    assert fresh.message() == "new trading days: CCC none -> 2024-01-02"
    none = ops.NewData({"AAA": "2024-01-02"}, {"BBB": "2024-01-01", "AAA": "2024-01-02"})
    assert none.message() == (
        "no source has a new trading day (newest already ingested: AAA 2024-01-02, BBB 2024-01-01)"
    )


def test_a_dvc_remote_is_seen_in_the_config_or_the_local_config(tmp_path):
    assert not ops.dvc_remote_configured(tmp_path)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/config").write_text("[core]\n    analytics = false\n")
    assert not ops.dvc_remote_configured(tmp_path)
    (tmp_path / ".dvc/config.local").write_text("['remote \"store\"']\n    url = /tmp/x\n")
    assert ops.dvc_remote_configured(tmp_path)
    (tmp_path / ".dvc/config.local").unlink()
    (tmp_path / ".dvc/config").write_text(
        "[core]\n    remote = s\n['remote \"s\"']\n    url = /x\n"
    )
    assert ops.dvc_remote_configured(tmp_path)


def test_a_failure_notice_goes_to_every_apprise_url_in_the_variable(tmp_path, monkeypatch):
    with json_receiver() as (port, got):
        assert ops.notify("STOCKCAST_TEST_NOTIFY", "t", "b") is None  # no variable: no notice
        assert ops.notify(None, "t", "b") is None
        urls = f"json://127.0.0.1:{port}/a json://127.0.0.1:{port}/b"
        monkeypatch.setenv("STOCKCAST_TEST_NOTIFY", urls)
        assert ops.notify("STOCKCAST_TEST_NOTIFY", "stockcast: FAILED", "exit 1") == 2
        assert [(g["title"], g["message"], g["type"]) for g in got] == [
            ("stockcast: FAILED", "exit 1", "failure")
        ] * 2
        assert ops.notify("STOCKCAST_TEST_NOTIFY", "decayed", "x", "WARNING") == 2
        assert [g["type"] for g in got[2:]] == ["warning"] * 2
        monkeypatch.setenv("STOCKCAST_TEST_NOTIFY", "notascheme://x")
        with pytest.raises(RuntimeError, match=r"holds an URL Apprise cannot use: notascheme://"):
            ops.notify("STOCKCAST_TEST_NOTIFY", "t", "b")
        monkeypatch.setenv("STOCKCAST_TEST_NOTIFY", f"json://127.0.0.1:{free_port()}/dead")
        with pytest.raises(RuntimeError, match=r"the notice to \$STOCKCAST_TEST_NOTIFY was not"):
            ops.notify("STOCKCAST_TEST_NOTIFY", "t", "b")


def test_a_summary_copes_with_a_ticker_without_baselines_and_drift_without_tickers():
    text = summary_markdown({"AAA": {}}, {}, {"drift": False})
    assert text.endswith(
        "|---|---|---|---|---|---|---|---|---|\n\n## Drift\n\n"
        "| ticker | KS p | Levene p | vol. ratio | drift |\n|---|---|---|---|---|\n"
    )


def test_new_data_lists_every_ticker_with_a_newer_day_in_order():
    found = ops.NewData({"BBB": "2024-01-03", "AAA": "2024-01-04"}, {})
    assert found.message() == ("new trading days: AAA none -> 2024-01-04, BBB none -> 2024-01-03")


def test_a_webhook_that_never_answers_gives_up_after_its_timeout():
    """A hook that accepts the connection and never answers must not hold the run: the POST
    fails after ``timeout`` seconds."""
    import socket

    import requests

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    outcome: list[BaseException] = []

    def post() -> None:
        try:
            post_webhook(url, {"state": "FAILED"}, timeout=0.3)
        except requests.exceptions.Timeout as exc:
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=post, daemon=True)
    worker.start()
    worker.join(10)
    listener.close()
    assert outcome and time.monotonic() - started < 5


def test_an_unusable_apprise_url_is_named_by_its_scheme_never_its_secret(monkeypatch):
    from stockcast.ops import notify

    monkeypatch.setenv("TEST_NOTIFY", "nosuchservice://token-s3cret@host/path")
    with pytest.raises(RuntimeError) as refused:
        notify("TEST_NOTIFY", "t", "b")
    message = str(refused.value)
    assert "$TEST_NOTIFY holds an URL Apprise cannot use: nosuchservice://..." in message
    assert "s3cret" not in message
    monkeypatch.delenv("TEST_NOTIFY")
    assert notify("TEST_NOTIFY", "t", "b") is None and notify(None, "t", "b") is None


def test_a_data_error_carries_its_message_as_its_args():
    """What a process pool, Prefect's result store or ``repr`` carry of an exception is its
    ``args``: the whole message, not the dataclass's first field."""
    import pickle

    from stockcast.errors import DataError

    error = DataError("prices.csv", "file is empty", expected="a header line")
    assert error.args == (str(error),)
    assert str(error).startswith("prices.csv: file is empty")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_every_field_exception_survives_a_trip_to_another_process():
    import pickle

    from stockcast.errors import FetchFailed, SeriesError

    for error in (
        SeriesError("AAA", "9 rows are too few", column="open", expected="at least 60 rows"),
        FetchFailed("http://host/x.csv", "HTTP 503", expected="an answer"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and back.args == error.args
