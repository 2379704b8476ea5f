"""The lines every run repeated and that bury what matters, muted where they arise; every
other line passes (issue 13)."""

from __future__ import annotations

import logging
import re

from stockcast.models import muted_logs
from stockcast.packaging import LOG_MODEL_NOISE
from stockcast.stages.evaluate import RETRACING

# As TensorFlow 2.21 and MLflow 3 print them in a default run (evaluate, register).
TF_RETRACING = (
    "5 out of the last 5 calls to <function TensorFlowTrainer.make_predict_function.<locals>."
    "one_step_on_data_distributed at 0x7f3c> triggered tf.function retracing. Tracing is "
    "expensive and the excessive number of tracings could be due to (1) creating @tf.function "
    "repeatedly in a loop"
)
MLFLOW_PICKLE = (
    "Passing a Python object as `python_model` causes it to be serialized using CloudPickle, "
    "it requires exercising caution as Python objects can contain executable code."
)
MLFLOW_CHECK = "Validating input example against model signature"


def test_muted_logs_drops_only_matching_records_of_that_logger_and_only_in_the_block(caplog):
    log = logging.getLogger("stockcast.test.noise")
    with caplog.at_level(logging.INFO, logger="stockcast.test.noise"):
        with muted_logs("stockcast.test.noise", re.compile("retracing")):
            log.warning(TF_RETRACING)
            log.warning("fit SH600519/gru/fold1 failed")
        log.warning(TF_RETRACING)
    assert [r.getMessage() for r in caplog.records] == [
        "fit SH600519/gru/fold1 failed",
        TF_RETRACING,
    ]


def test_the_muted_patterns_match_the_libraries_lines_and_no_others():
    assert RETRACING.search(TF_RETRACING)
    assert LOG_MODEL_NOISE.search(MLFLOW_PICKLE) and LOG_MODEL_NOISE.search(MLFLOW_CHECK)
    for kept in (
        "Model registry functionality is unavailable",
        "Failed to log model: connection refused",
        "5 out of the last 5 calls to <function f> did not match the signature",
    ):
        assert not RETRACING.search(kept) and not LOG_MODEL_NOISE.search(kept)
