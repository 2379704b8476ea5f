"""The tracking store's faults, on real MLflow: a store that does not answer ends in one plain
message and changes nothing; a failed attempt ends its runs FAILED with the reason; runs a
killed process left RUNNING are ended KILLED by the next attempt, naming it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from flows.server import free_port
from stockcast import registry, store, tracking
from stockcast.errors import StoreUnavailable
from tests.conftest import PROJECT
from tests.model.baseline_run import CLEAN, baseline_run


def _runs(client, status: str | None = None) -> list:
    experiment = client.get_experiment_by_name("stockcast")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [r for r in runs if status is None or r.info.status == status]


def _quick(monkeypatch) -> None:
    """MLflow's HTTP retries, short: one retry, no back-off (the user's environment wins)."""
    monkeypatch.setattr(store, "_SET_BY_USER", frozenset(store.MLFLOW_RETRY_SETTINGS))
    for key, value in zip(store.MLFLOW_RETRY_SETTINGS, (1, 0, 5), strict=True):
        monkeypatch.setenv(key, str(value))


def test_a_refused_connection_is_a_transient_fault_and_a_missing_model_is_not(monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    _quick(monkeypatch)
    dead = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MlflowException) as refused:
        dead.search_experiments(max_results=1)
    assert store.fault_reason(refused.value) == "connection refused"
    with pytest.raises(MlflowException) as missing:
        store.client_at(f"sqlite:///{os.environ.get('TMPDIR', '/tmp')}/none-{os.getpid()}.db")
        MlflowClient().get_registered_model("no-such-model")
    assert store.fault_reason(missing.value) is None
    assert store.fault_reason(ValueError("a bug")) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("API request to endpoint /x failed with error code 503 != 200", "HTTP 503"),
        ("API request to endpoint /x failed with error code 429 != 200", "HTTP 429"),
        ("API request to endpoint /x failed with error code 404 != 200", None),
        ("API request to endpoint /x failed with error code 400 != 200", None),
        ("Max retries exceeded (Caused by ResponseError('too many 502 error responses'))",
         "repeated 502 answers"),
    ],
)  # fmt: skip
def test_only_5xx_timeouts_and_rate_limits_are_transient_answers(text, reason):
    assert store.fault_reason(RuntimeError(text)) == reason


def test_the_policy_bounds_mlflows_retries_unless_the_environment_sets_them(monkeypatch):
    for key in store.MLFLOW_RETRY_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(store, "_SET_BY_USER", frozenset({"MLFLOW_HTTP_REQUEST_TIMEOUT"}))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    store.RetryPolicy(retries=3, backoff_seconds=2, timeout_seconds=30).apply()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert store.RetryPolicy(retries=4, backoff_seconds=1).budget_seconds() == 2 + 4 + 8


def test_the_projects_client_retries_as_its_policy_says(tmp_path, monkeypatch):
    import mlflow

    for key in store.MLFLOW_RETRY_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(store, "_SET_BY_USER", frozenset())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        store.client_for(tmp_path, store.RetryPolicy(retries=1, backoff_seconds=3))
    finally:
        mlflow.set_tracking_uri(None)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"  # not the default policy's 4
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "3"


def test_a_retry_is_one_plain_line_naming_the_request_and_the_fault():
    from urllib3.util.retry import Retry

    retry = Retry(total=3).increment("GET", "/api/2.0/mlflow/runs/get", error=ConnectionError())
    record = logging.LogRecord(
        "urllib3.util.retry", logging.DEBUG, __file__, 1,
        "Incremented Retry for (url='%s'): %r", ("/api/2.0/mlflow/runs/get", retry), None,
    )  # fmt: skip
    assert store.PlainRetryLines().filter(record)
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "HTTP GET /api/2.0/mlflow/runs/get failed (connection broken): retrying, 2 tries left"
    )
    noisy = logging.LogRecord(
        "urllib3.connectionpool",
        logging.WARNING,
        __file__,
        1,
        "Retrying (%r) after %r",
        (1, 2),
        None,
    )
    assert not store.PlainRetryLines().filter(noisy)


def test_a_store_that_never_answers_stops_register_plainly_and_changes_nothing(
    tmp_path, monkeypatch
):
    _quick(monkeypatch)
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(StoreUnavailable) as stopped:
        baseline_run(tmp_path).register()
    message = str(stopped.value)
    assert message.startswith(f"the MLflow tracking store at {uri} did not answer while ")
    assert "(connection refused; 2 tries per request" in message
    assert "Nothing was changed: no @champion moved" in message
    assert message.endswith("rerun this stage alone: stockcast run register --single-item --force")
    assert not (tmp_path / store.JOURNAL).exists()


def test_a_password_in_the_store_uri_is_never_shown():
    shown = store.shown_uri("postgresql://mlflow:s3cret@db.example:5432/mlflow")
    assert shown == "postgresql://***@db.example:5432/mlflow"


def test_a_failed_attempt_ends_its_runs_failed_with_the_reason(sqlite_store, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("the registry refused the version")

    monkeypatch.setattr(registry, "register_best", broken)
    with pytest.raises(ValueError, match="refused"):
        baseline_run(tmp_path).register()
    runs = _runs(sqlite_store)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("stockcast.run") == "pipeline"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["error"] == "ValueError: the registry refused the version"
    children = [r for r in runs if r is not parent]
    assert children and {r.info.status for r in children} == {"FINISHED"}  # logged before it
    assert not (tmp_path / store.JOURNAL).exists()


KILLED_MID_REGISTER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {project!r})
from stockcast import registry
from tests.model.baseline_run import CLEAN, baseline_run

def hang(*args, **kwargs):  # the runs are open; the version is not registered yet
    Path("hanging").write_text("")
    time.sleep(600)

registry.register_best = hang
baseline_run(Path.cwd()).register()
"""


def test_runs_a_killed_attempt_left_running_are_ended_killed_by_the_next(sqlite_store, tmp_path):
    first = baseline_run(tmp_path).register()["TEST"]
    champion = sqlite_store.get_model_version_by_alias("stockcast-TEST", "champion").version
    script = tmp_path / "killed.py"
    script.write_text(KILLED_MID_REGISTER.format(project=str(PROJECT)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while not (tmp_path / "hanging").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "never reached register"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = {r.info.run_id for r in _runs(sqlite_store, "RUNNING")}
    assert left  # its parent run at least
    journal = json.loads((tmp_path / store.JOURNAL).read_text())
    assert journal["failed"] is None and journal["project"] == store.project_id(tmp_path)

    again = baseline_run(tmp_path).register(tags={**CLEAN, "prefect_flow_run_id": "f-2"})
    assert again["TEST"]["version"] == first["version"]
    assert not _runs(sqlite_store, "RUNNING")
    killed = _runs(sqlite_store, "KILLED")
    assert {r.info.run_id for r in killed} == left
    for r in killed:
        assert r.data.tags[store.ENDED_BY_TAG] == "the register stage of Prefect flow run f-2"
        assert r.data.tags["error"].startswith("its process died mid-run; ended KILLED by ")
    now = sqlite_store.get_model_version_by_alias("stockcast-TEST", "champion").version
    assert now == champion
    assert not (tmp_path / store.JOURNAL).exists()


def test_a_journal_of_a_failure_ends_the_runs_failed_with_its_reason(sqlite_store, tmp_path):
    client = store.client_for(tmp_path)
    experiment = tracking.ensure_experiment(client, "stockcast", tmp_path)
    mine = client.create_run(experiment, tags={store.PROJECT_TAG: store.project_id(tmp_path)})
    other = client.create_run(experiment, tags={store.PROJECT_TAG: "another-project"})
    store.open_journal(tmp_path, store.tracking_uri(tmp_path), experiment)
    store.journal_failure(tmp_path, "the register stage failed: StoreUnavailable: ...")
    ended = store.end_dead_runs(store.client_at, tmp_path, "pipeline 'next'")
    assert ended == [mine.info.run_id]
    assert client.get_run(mine.info.run_id).info.status == "FAILED"
    assert client.get_run(mine.info.run_id).data.tags["error"] == (
        "the register stage failed: StoreUnavailable: ...; ended FAILED by pipeline 'next'"
    )
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # not ours to end
    assert store.end_dead_runs(store.client_at, tmp_path, "again") == []


def test_uris_without_a_password_are_shown_as_they_are():
    assert store.shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert store.shown_uri("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"
    assert store.shown_uri("http://u:p@h:1/a@b") == "http://***@b"


def test_the_effective_policy_is_the_environments_where_set(monkeypatch):
    for key in store.MLFLOW_RETRY_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    assert store.RetryPolicy(3, 2, 9).effective() == store.RetryPolicy(3, 2, 9)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    assert store.RetryPolicy(3, 2, 9).effective() == store.RetryPolicy(1, 2, 5)
    assert store.RetryPolicy(retries=0).budget_seconds() == 0.0


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (599, True), (408, True), (429, True), (499, False), (404, False),
     (400, False), (409, False)],
)  # fmt: skip
def test_which_statuses_are_worth_another_try(status, transient):
    assert store.transient(status) is transient


def test_a_journal_failure_is_kept_only_while_a_journal_is_open(tmp_path):
    store.journal_failure(tmp_path, "no journal: nothing to write")
    assert not (tmp_path / store.JOURNAL).exists()
    store.open_journal(tmp_path, "sqlite:///x.db", "1")
    store.journal_failure(tmp_path, "x" * 3000)
    record = json.loads((tmp_path / store.JOURNAL).read_text())
    assert record["failed"] == "x" * 2000 and record["experiment_id"] == "1"
    assert record["uri"] == "sqlite:///x.db" and record["pid"] == os.getpid()
    store.close_journal(tmp_path)
    assert not (tmp_path / store.JOURNAL).exists()


def test_a_uri_with_a_second_scheme_in_it_is_masked_from_the_first():
    uri = "https://u:secret@host:443/api?next=http://other"
    assert store.shown_uri(uri) == "https://***@host:443/api?next=http://other"


def test_the_fault_is_found_through_causes_contexts_and_reasons_and_loops_end():
    """A store fault arrives wrapped: raised from it (``__cause__``), while handling it
    (``__context__``) or, as urllib3 does, as the ``reason`` of a retry error."""
    wrapper = RuntimeError("the client's own error")
    wrapper.__cause__, wrapper.__context__ = ConnectionRefusedError(), None
    assert store.fault_reason(wrapper) == "connection refused"
    retried = RuntimeError("Max retries exceeded")
    retried.reason = TimeoutError()  # type: ignore[attr-defined]
    assert store.fault_reason(retried) == "no answer in time"
    looped_a, looped_b = RuntimeError("a"), RuntimeError("b")
    looped_a.__context__, looped_b.__context__ = looped_b, looped_a
    assert store.fault_reason(looped_a) is None  # a cycle of contexts ends, found nothing
    assert [str(e) for e in store._chain(looped_a)] == ["a", "b"]


def _named(name: str, base: type[BaseException] = Exception) -> type[BaseException]:
    return type(name, (base,), {})


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(), "connection refused"),
        (RuntimeError("[Errno 111] Connection refused"), "connection refused"),
        (TimeoutError(), "no answer in time"),
        (_named("ReadTimeout")("slow"), "no answer in time"),
        (RuntimeError("the read timed out"), "no answer in time"),
        (ConnectionResetError(), "connection broken"),
        (_named("RemoteDisconnected")("gone"), "connection broken"),
        (_named("ProtocolError")("cut"), "connection broken"),
        (_named("OperationalError")("unable to open database file\n(details)"),
         "database error: unable to open database file"),
        (_named("OperationalError")("x" * 300), "database error: " + "x" * 160),
        (_named("Timeouts")("a class that is no timeout's"), "no answer in time"),
        (RuntimeError("refused, timed, broken: none of the words"), None),
        (_named("Operational")("close, but not the name"), None),
    ],
)  # fmt: skip
def test_each_transient_fault_is_named_by_its_type_or_its_words(error, reason):
    assert store.fault_reason(error) == reason


def test_urllib3s_other_connection_lines_pass_untouched():
    """Only the retry warning of urllib3's connection pool is dropped; its other lines (a new
    connection, a reset pool) are not the filter's."""
    line = logging.LogRecord(
        "urllib3.connectionpool", logging.DEBUG, __file__, 1,
        "Starting new HTTP connection (%d): %s:%s", (1, "127.0.0.1", 5000), None,
    )  # fmt: skip
    assert store.PlainRetryLines().filter(line)
    assert line.getMessage() == "Starting new HTTP connection (1): 127.0.0.1:5000"


def _retry_record(args: tuple) -> logging.LogRecord:
    return logging.LogRecord(
        "urllib3.util.retry", logging.DEBUG, __file__, 1,
        "Incremented Retry for (url='%s'): %r", args, None,
    )  # fmt: skip


def test_each_retry_record_reads_as_its_fault_or_is_dropped():
    """A status retry names the status; a retry with neither status nor error says so; a
    retry object without a count says "?"; a record without a retry (or with nothing retried
    yet, or another of urllib3's retry lines) is dropped."""
    from types import SimpleNamespace

    from urllib3.util.retry import RequestHistory, Retry

    plain = store.PlainRetryLines()
    status = _retry_record(
        ("/x", Retry(total=2, history=(RequestHistory("POST", "/x", None, 503, None),)))
    )
    assert plain.filter(status) and status.getMessage() == (
        "HTTP POST /x failed (HTTP 503): retrying, 2 tries left"
    )
    silent = _retry_record(
        ("/x", Retry(total=1, history=(RequestHistory("GET", "/x", None, None, None),)))
    )
    assert (
        plain.filter(silent) and "failed (no answer): retrying, 1 tries left" in silent.getMessage()
    )
    uncounted = _retry_record(
        ("/x", SimpleNamespace(history=(RequestHistory("GET", "/x", None, 429, None),)))
    )
    assert plain.filter(uncounted) and uncounted.getMessage().endswith("retrying, ? tries left")
    assert not plain.filter(_retry_record(("/x",)))  # no retry object
    assert not plain.filter(_retry_record(("/x", object())))  # no history to read
    assert not plain.filter(_retry_record(("/x", Retry(total=3))))  # nothing retried yet
    other = _retry_record(("/x", Retry(total=3)))
    other.msg = "Converted retries value: %r -> %r"
    assert not plain.filter(other)


def test_the_journal_names_the_attempt_its_process_and_when(tmp_path):
    """What a person (or the next run) reads in the journal a register attempt keeps."""
    import re

    attempt = store.open_journal(tmp_path, "sqlite:///elsewhere.db", "7")
    text = (tmp_path / store.JOURNAL).read_text(encoding="utf-8")
    record = json.loads(text)
    assert text.startswith('{\n "uri"')  # indented: a person opens it
    assert re.fullmatch(r"[0-9a-f]{12}", attempt)
    started = record.pop("started")
    assert record == {
        "uri": "sqlite:///elsewhere.db",
        "experiment_id": "7",
        "project": store.project_id(tmp_path),
        "attempt": attempt,
        "pid": os.getpid(),
        "failed": None,
    }
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", started)
    assert abs(time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%S")) - time.time()) < 120
    store.journal_failure(tmp_path, "x" * 3000)
    failed = json.loads((tmp_path / store.JOURNAL).read_text(encoding="utf-8"))
    assert failed == {**record, "started": started, "failed": "x" * 2000}
    store.close_journal(tmp_path)
    store.close_journal(tmp_path)  # nothing left to close: no error
    assert not (tmp_path / store.JOURNAL).exists()
    store.journal_failure(tmp_path, "after the close")  # no journal: nothing is written
    assert not (tmp_path / store.JOURNAL).exists()


def test_dead_runs_are_ended_in_the_store_the_journal_names(tmp_path, monkeypatch):
    """The store of the attempt that died, not the one the environment names now."""
    from mlflow import MlflowClient

    dead = f"sqlite:///{tmp_path}/dead.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/now.db")
    client = MlflowClient(tracking_uri=dead)
    experiment = client.create_experiment("stockcast")
    left = client.create_run(experiment, tags={store.PROJECT_TAG: store.project_id(tmp_path)})
    store.open_journal(tmp_path, dead, experiment)
    try:
        ended = store.end_dead_runs(store.client_at, tmp_path, "the next run")
    finally:
        import mlflow

        mlflow.set_tracking_uri(None)
    assert ended == [left.info.run_id]
    assert client.get_run(left.info.run_id).info.status == "KILLED"


def test_a_fault_named_in_the_cause_is_found_beside_the_context():
    """``raise X from refused`` while handling a ValueError: the cause and the context are
    both followed."""
    try:
        try:
            raise ValueError("a parsing problem, not the store")
        except ValueError:
            raise RuntimeError("the request failed") from ConnectionRefusedError(111, "refused")
    except RuntimeError as exc:
        assert store.fault_reason(exc) == "connection refused"


def test_only_urllib3s_too_many_error_responses_is_a_repeated_answer():
    said = "Max retries exceeded (Caused by ResponseError('too many 503 error responses'))"
    assert store.fault_reason(Exception(said)) == "repeated 503 answers"
    assert store.fault_reason(Exception("the proxy logged error responses")) is None
    assert store.fault_reason(Exception("too many requests in the queue")) is None


def test_the_message_names_the_step_the_store_failed_at():
    policy = store.RetryPolicy(0, 1, 1)
    with pytest.raises(StoreUnavailable, match=r"did not answer while opening the store \("):
        with store.store_faults("sqlite:///x.db", policy, lambda step: "Nothing was changed."):
            raise ConnectionRefusedError(111, "refused")
    with pytest.raises(StoreUnavailable, match=r"did not answer while logging AAA \("):
        with store.store_faults("sqlite:///x.db", policy, lambda step: "Nothing.") as step:
            step("logging AAA")
            raise ConnectionRefusedError(111, "refused")


def test_the_policy_of_the_params_execution_section():
    from stockcast.config import ExecutionConfig

    execution = ExecutionConfig(store_retries=2, store_backoff_seconds=3, store_timeout_seconds=7)
    assert store.RetryPolicy.of(execution) == store.RetryPolicy(2, 3, 7)
