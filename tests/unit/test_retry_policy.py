"""The retrain flow retries network and store I/O only: never bad data, never a bug."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from flows.retrain import TransientIOError, io_only
from stockcast.errors import DataError, FetchFailed


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (OSError("connection reset"), True),
        (ConnectionError("refused"), True),
        (TimeoutError("read timed out"), True),
        (TransientIOError("dvc push failed"), True),
        (FetchFailed("https://x/p.csv", "download failed after 3 retries: HTTP 503"), True),
        (DataError("prices.csv", "column open: not a number"), False),
        (ValueError("a bug"), False),
        (KeyError("close"), False),
    ],
)
def test_only_io_errors_are_retried(exc, retried):
    assert io_only(None, None, Failed(data=exc)) is retried


def test_a_completed_task_is_not_retried():
    assert io_only(None, None, Completed(data=1)) is False
