"""params.yaml is read in one place and bad values are named with the valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stockcast.config import config_from_dict, load_config
from stockcast.errors import ConfigError
from tests.conftest import PROJECT


def _params() -> dict:
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


def test_project_params_load_with_the_seed_settings():
    cfg = load_config(PROJECT / "params.yaml")
    assert cfg.window.window == 60 and cfg.window.test_days == 300
    assert cfg.train.variants == ("simple_rnn", "lstm", "gru")
    assert cfg.train.units == (64,) and cfg.train.batch_size == 128  # benchmarks/train_configs
    assert cfg.data.target == "open"
    assert cfg.schedule.cron == "0 18 * * 1-5" and cfg.schedule.timezone == "Asia/Shanghai"
    assert cfg.drift.on_drift == "warn" and cfg.execution.dask_address is None


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        (
            "train",
            "variants",
            ["lstm", "transformer"],
            "choose one of ['simple_rnn', 'lstm', 'gru']",
        ),
        ("execution", "runner", "gpu", "execution.runner='gpu' is not supported"),
        ("train", "runner", "threads", "train.runner moved to the execution section"),
        ("train", "epochs", 0, "train.epochs=0 must be a positive integer"),
        ("train", "dropout", 1.5, "train.dropout=1.5 must be in [0, 1)"),
        ("train", "batchsize", 3, "unknown key(s) ['batchsize']"),
        ("window", "test_days", 30, "window.test_days=30 must exceed window.window=60"),
        ("data", "target", "adj_close", "data.target='adj_close' is not supported"),
        ("validate", "on_failure", "ignore", "choose one of ['stop', 'skip_ticker']"),
        ("schedule", "cron", "0 18 * *", "schedule.cron='0 18 * *' needs 5 fields"),
        ("schedule", "webhook", "hooks.example", "must be an http(s) URL"),
        ("schedule", "lock_wait_seconds", -1, "must be >= 0"),
        ("drift", "on_drift", "panic", "choose one of ['warn', 'retrain']"),
        ("drift", "p_value", 1.5, "drift.p_value=1.5 must be in (0, 1)"),
        (
            "execution",
            "timeout_seconds",
            0,
            "execution.timeout_seconds=0 must be a positive integer",
        ),
    ],
)
def test_bad_values_are_named(section, key, value, message):
    raw = _params()
    raw[section][key] = value
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="parameters file not found"):
        load_config(tmp_path / "nope.yaml")


def test_digest_changes_with_any_param():
    raw = _params()
    first = config_from_dict(raw).digest()
    raw["train"]["learning_rate"] = 0.01
    assert config_from_dict(raw).digest() != first


def test_backtest_folds_end_where_the_test_span_begins():
    cfg = config_from_dict(_params())
    assert cfg.backtest.fold_ends(2426, 300) == [1886, 2006, 2126]
    assert cfg.min_rows == 300 + 250 + 2 * 60 + 3 * 120
    raw = _params()
    raw["backtest"]["folds"] = -1
    with pytest.raises(ConfigError, match="backtest.folds=-1 must be a whole number >= 0"):
        config_from_dict(raw)


def test_default_transform_is_the_one_measured_best_on_validation():
    assert config_from_dict(_params()).features.target_transform == "log_return"


def test_unknown_extra_input_lists_the_choices():
    raw = _params()
    raw["features"]["inputs"] = ["close", "sentiment"]
    with pytest.raises(ConfigError, match=r"features.inputs='sentiment' is not supported"):
        config_from_dict(raw)


@pytest.mark.parametrize("flag", ["warm_start", "unroll"])
def test_train_switches_take_true_or_false_only(flag):
    raw = _params()
    raw.setdefault("train", {})[flag] = "yes"
    with pytest.raises(
        ConfigError, match=rf"train.{flag}='yes' is a string; expected true or false"
    ):
        config_from_dict(raw)
    raw["train"][flag] = False
    assert getattr(config_from_dict(raw).train, flag) is False


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("window", "test_days", "three hundred",
         "window.test_days='three hundred' is a string; expected a whole number"),
        ("train", "learning_rate", "2e-3",
         "train.learning_rate='2e-3' is a string; expected a number (YAML reads 2e-3 as text"),
        ("train", "units", [64, "a"], "train.units[1]='a' is a string; expected a whole number"),
        ("train", "batch_size", 12.5, "train.batch_size=12.5 is a number; expected a whole number"),
        ("train", "epochs", True, "train.epochs=True is true or false; expected a whole number"),
        ("register", "max_p_value", "0.05",
         "register.max_p_value='0.05' is a string; expected a number or null"),
        ("register", "intervals", [0.8, "x"], "register.intervals[1]='x' is a string"),
        ("data", "tickers", "SH600519", "data.tickers='SH600519' is a string; expected a list"),
        ("base", "seed", "42", "base.seed='42' is a string; expected a whole number"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_type_names_key_value_and_type_expected(section, key, value, message):
    raw = _params()
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert str(caught.value).startswith(message)


def test_whole_numbers_pass_where_a_number_is_expected():
    raw = _params()
    raw["train"]["learning_rate"] = 1
    raw["register"]["intervals"] = [0.8, 0.95]
    cfg = config_from_dict(raw)
    assert cfg.train.learning_rate == 1 and cfg.register.intervals == (0.8, 0.95)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("interval_method", "garch", "register.interval_method='garch': expected one of static"),
        ("interval_days", 0, "register.interval_days=0 must be 1 or more"),
        ("interval_gamma", 1.5, r"register.interval_gamma=1.5 must be in \(0, 1\)"),
    ],
)
def test_a_bad_interval_setting_is_named(key, value, message):
    raw = {"data": {"sources": ["x.csv"]}, "register": {key: value}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


@pytest.mark.parametrize(("key", "value"), [("warm_epochs", -1), ("cold_every", -2)])
def test_the_daily_jobs_counts_are_whole_numbers_from_zero(key, value):
    raw = _params()
    raw.setdefault("train", {})[key] = value
    with pytest.raises(ConfigError, match=rf"train.{key}={value} must be an integer >= 0"):
        config_from_dict(raw)
    raw["train"][key] = 0  # 0: off (cold_every) or train.epochs (warm_epochs)
    assert getattr(config_from_dict(raw).train, key) == 0
