"""``stockcast serve`` on a real ``mlflow models serve``, started as a user would from a shell
whose ``PATH`` lacks the venv: what cannot be price windows gets a 400 whose message names
the problem, and no body, however random, gets a 5xx."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.server import free_port
from tests.conftest import PROJECT
from tests.flows.project import stop, wait_http
from tests.model.baseline_run import baseline_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The @champion (a baseline rule) of ticker TEST served on loopback."""
    import mlflow

    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(root)
    run = baseline_run(root)
    run.register()
    mp.undo()
    mlflow.set_tracking_uri(None)
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen(
        [str(PROJECT / ".venv/bin/stockcast"), "serve", "--ticker", "TEST", "--port", str(port)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=180)
        yield f"http://127.0.0.1:{port}/invocations", run.ws
    finally:
        stop(proc)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, {"message": text.decode(errors="replace")}


def _window(ws) -> np.ndarray:
    return ws.raw_inputs(ws.test_idx[:1])[0]  # (context, 5): a real window of the series


def test_a_valid_window_gets_a_forecast_with_ordered_bands(server):
    url, ws = server
    status, answer = _post(url, json.dumps({"inputs": [_window(ws).tolist()]}).encode())
    assert status == 200, answer
    (row,) = answer["predictions"]
    assert row["lower_95"] <= row["lower_80"] <= row["forecast"] <= row["upper_80"]
    assert row["upper_80"] <= row["upper_95"]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda w: np.full_like(w, -5.0), "column open: -5.0 is not a price"),
        (lambda w: _set(w, 3, 3, None), "day 4 of {ctx}, column close: nan is missing"),
        (lambda w: _set(w, 2, 1, w[2, 2] - 1), "day 3 of {ctx}, column high: "),
        (lambda w: _set(w, 5, 4, -10.0), "day 6 of {ctx}, column volume: -10.0 is negative"),
        (lambda w: w[1:], "does not match expected shape (-1, {ctx}, 5)"),  # MLflow's schema
        (lambda w: w[:, :4], "does not match expected shape (-1, {ctx}, 5)"),
    ],
)
def test_what_cannot_be_a_price_window_gets_a_400_saying_why(server, change, said):
    url, ws = server
    window = change(_window(ws).astype(object))
    status, answer = _post(url, json.dumps({"inputs": [np.asarray(window).tolist()]}).encode())
    assert 400 <= status < 500, answer
    assert said.format(ctx=ws.context) in answer["message"], answer["message"][-500:]


def _set(window: np.ndarray, day: int, column: int, value: object) -> np.ndarray:
    window = window.copy()
    window[day, column] = value
    return window


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6), st.none()
)
cells = st.one_of(numbers, st.text(max_size=3), st.booleans())
bodies = st.one_of(
    st.fixed_dictionaries(
        {"inputs": st.lists(st.lists(st.lists(cells, max_size=6), max_size=12), max_size=3)}
    ),
    st.fixed_dictionaries(
        {
            "inputs": st.lists(
                st.lists(st.lists(numbers, min_size=5, max_size=5), min_size=11, max_size=11),
                min_size=1,
                max_size=2,
            )
        }
    ),  # fmt: skip
    st.dictionaries(st.text(max_size=8), st.recursive(cells, st.lists, max_leaves=8), max_size=3),
    st.recursive(cells, st.lists, max_leaves=10),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_no_random_body_gets_a_server_error(server, body):
    url, _ = server
    status, answer = _post(url, json.dumps(body).encode())
    assert status < 500, (body, answer)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=64))
def test_no_bytes_that_are_not_json_get_a_server_error(server, raw):
    url, _ = server
    status, _ = _post(url, raw)
    assert status < 500


def test_stockcast_serve_ran_without_the_venv_on_path():
    # the fixture's server started from PATH=/usr/bin:/bin (MLflow execs uvicorn from PATH)
    assert not Path("/usr/bin/uvicorn").exists() and not Path("/bin/uvicorn").exists()
