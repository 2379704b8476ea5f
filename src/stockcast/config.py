"""The one reader of ``params.yaml``: frozen, typed, checked when built."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from stockcast.columns import PRICES
from stockcast.errors import ConfigError
from stockcast.yaml_types import check_type

VARIANTS = ("simple_rnn", "lstm", "gru")
TRANSFORMS = ("level", "diff", "log_return")
INTERVAL_METHODS = ("static", "scaled", "adaptive")  # how bands follow volatility (intervals)
INPUTS = (*PRICES, "volume_change", "range", "intraday")
ANCHORS = ("target", "close")
RUNNERS = ("processes", "threads", "dask")
ON_DRIFT = ("warn", "retrain")
SCOPES = ("per_ticker", "global")
DATE_ORDERS = ("auto", "month_first", "day_first")
ON_FAILURE = ("stop", "skip_ticker")
ON_DECAY = ("warn", "retrain")
PROVIDERS = ("yfinance", "akshare")  # source kinds that keep a raw file up to date


@dataclass(frozen=True)
class Source:
    """One source: a file, a folder, a glob or an http(s) URL.

    Attributes:
        path: where the CSV(s) are.
        ticker: the ticker when the file carries none (default: the file's stem).
        columns: an explicit mapping canonical name -> the file's column, for any other layout.
        date_format: strptime format of the date column, with ``columns``.
    """

    path: str
    ticker: str | None = None
    columns: dict[str, str] | None = None
    date_format: str | None = None
    # A provider keeps ``path`` (a raw file under data/raw/) up to date: yfinance | akshare
    provider: str | None = None
    symbol: str | None = None  # the provider's symbol (default: the ticker)
    first_day: str = "2010-01-01"  # where an empty raw file starts

    def __post_init__(self) -> None:
        if self.provider is not None:
            _check_choice(f"data.sources[{self.path}].provider", self.provider, PROVIDERS)
            if (
                "://" in self.path
                or any(c in self.path for c in "*?[")
                or not self.path.endswith(".csv")
            ):
                raise ConfigError(
                    f"data.sources[{self.path}]: the path of a {self.provider} source is the raw "
                    "CSV file it keeps up to date, e.g. data/raw/MSFT.yfinance.csv"
                )
            if not (self.symbol or self.ticker):
                raise ConfigError(f"data.sources[{self.path}]: a provider source needs symbol")
            if self.ticker is None:  # the raw file's rows are the symbol's
                object.__setattr__(self, "ticker", self.symbol)
        if self.columns is None:
            return
        if "date" not in self.columns or not set(PRICES) & set(self.columns):
            raise ConfigError(
                f"data.sources[{self.path}]: the columns mapping needs date and at least the "
                f"target price (one of {list(PRICES)}); it has {sorted(self.columns)}. "
                "open, high, low, close and volume are optional when the file lacks them "
                "(an index level, an FX rate or a fund's NAV: map it as the target)"
            )


@dataclass(frozen=True)
class DataConfig:
    sources: tuple[Source, ...]
    tickers: tuple[str, ...] = ()
    target: str = "open"
    date_order: str = "auto"
    fetch_timeout: float = 30.0
    fetch_retries: int = 3

    def __post_init__(self) -> None:
        _check_choice("data.date_order", self.date_order, DATE_ORDERS)
        if not self.sources:
            raise ConfigError("data.sources is empty: name at least one CSV file")
        if self.target not in PRICES:
            raise ConfigError(
                f"data.target={self.target!r} is not supported; choose one of {PRICES}"
            )
        for source in self.sources:
            if source.columns is not None and self.target not in source.columns:
                raise ConfigError(
                    f"data.sources[{source.path}]: the columns mapping has no {self.target!r}, "
                    f"the forecast target (data.target); map the series' price column to it"
                )


@dataclass(frozen=True)
class ValidateConfig:
    on_failure: str = "stop"
    max_daily_move: float = 0.25  # warning: |close-to-close change| above this fraction
    max_gap_days: int = 14  # warning: calendar days between two rows above this

    def __post_init__(self) -> None:
        _check_choice("validate.on_failure", self.on_failure, ON_FAILURE)
        if self.max_daily_move <= 0:
            raise ConfigError(f"validate.max_daily_move={self.max_daily_move} must be > 0")
        _check_positive("validate.max_gap_days", self.max_gap_days)


@dataclass(frozen=True)
class WindowConfig:
    window: int = 60
    test_days: int = 300
    val_days: int = 250

    def __post_init__(self) -> None:
        _check_positive("window.window", self.window)
        for name in ("test_days", "val_days"):
            value = getattr(self, name)
            if value <= self.window:
                raise ConfigError(
                    f"window.{name}={value} must exceed window.window={self.window}: "
                    "each span needs at least one full window and a target"
                )

    @property
    def min_rows(self) -> int:
        """Fewest rows a ticker needs: training windows, then a validation and a test span."""
        return self.test_days + self.val_days + 2 * self.window


@dataclass(frozen=True)
class BacktestConfig:
    """Walk-forward folds before the test span: fold k trains on every row before its
    ``fold_days`` evaluation rows (expanding window); the last fold ends where the test span
    begins. Scaler and transform are refitted on each fold's training rows."""

    folds: int = 3
    fold_days: int = 120

    def __post_init__(self) -> None:
        if not isinstance(self.folds, int) or self.folds < 0:
            raise ConfigError(f"backtest.folds={self.folds!r} must be a whole number >= 0")
        _check_positive("backtest.fold_days", self.fold_days)

    def fold_ends(self, rows: int, test_days: int) -> list[int]:
        """Row count (exclusive end) of each fold's data, oldest fold first."""
        last = rows - test_days
        return [last - (self.folds - k) * self.fold_days for k in range(1, self.folds + 1)]


@dataclass(frozen=True)
class FeaturesConfig:
    """What the network sees. ``anchor: close`` forecasts the change from the last known
    close (at forecast time the day's close is known), so a network that learns nothing
    falls back to the ``last_close`` baseline instead of to "tomorrow = today's open"."""

    target_transform: str = "level"
    moving_average: int = 5  # window of the moving-average baseline
    inputs: tuple[str, ...] = ()  # extra per-day inputs beside the target
    anchor: str = "target"  # the price a change is measured from: the target's own | close

    def __post_init__(self) -> None:
        for name in self.inputs:
            _check_choice("features.inputs", name, INPUTS)
        _check_choice("features.target_transform", self.target_transform, TRANSFORMS)
        _check_positive("features.moving_average", self.moving_average)
        _check_choice("features.anchor", self.anchor, ANCHORS)
        if self.anchor != "target" and self.target_transform == "level":
            raise ConfigError(
                f"features.anchor={self.anchor!r} needs a change transform (diff or "
                "log_return): a level forecast has no anchor"
            )


@dataclass(frozen=True)
class TrainConfig:
    """What shapes a model: changing any of these retrains."""

    variants: tuple[str, ...] = VARIANTS
    units: tuple[int, ...] = (64,)  # the seed's network: (80, 100), batch 64, rate 1e-3
    dropout: float = 0.2
    learning_rate: float = 2e-3
    batch_size: int = 128
    epochs: int = 50
    patience: int = 8
    scope: str = "per_ticker"  # per_ticker: one model per ticker | global: one over all tickers
    # Walk-forward fits start from the previous fold's weights (fold 1 starts cold, the main
    # model from the last fold's): the backtest measures the procedure that makes the model.
    warm_start: bool = True
    unroll: bool = False  # unrolled recurrent layers: faster epochs, far slower graph tracing
    # A run on new rows continues yesterday's networks (main models only, the folds kept)
    # until this many runs in a row were warm; then every fit starts cold. 0: always cold.
    cold_every: int = 20
    # A continuation's early-stopping patience: one more day barely moves the optimum (2: a
    # third of patience 8's epochs, for a validation loss about 0.4 % higher).
    warm_patience: int = 2
    # A continuation's most epochs; 0: train.epochs. With hundreds of tickers on one global
    # model an epoch is minutes: a daily job sets 1 or 2 here and keeps the cold runs' epochs.
    warm_epochs: int = 0

    def __post_init__(self) -> None:
        for flag in ("warm_start", "unroll"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"train.{flag}={getattr(self, flag)!r} must be true or false")
        if not self.variants:
            raise ConfigError(f"train.variants is empty; choose from {VARIANTS}")
        for variant in self.variants:
            _check_choice("train.variants", variant, VARIANTS)
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"train.variants lists a variant twice: {list(self.variants)}")
        if not self.units:
            raise ConfigError("train.units is empty: give at least one layer size")
        for name in ("batch_size", "epochs", "patience", "warm_patience"):
            _check_positive(f"train.{name}", getattr(self, name))
        for name in ("cold_every", "warm_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"train.{name}={value!r} must be an integer >= 0")
        for unit in self.units:
            _check_positive("train.units", unit)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout={self.dropout} must be in [0, 1)")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={self.learning_rate} must be > 0")
        _check_choice("train.scope", self.scope, SCOPES)


@dataclass(frozen=True)
class ExecutionConfig:
    """How fits are executed: changing these retrains nothing (same seed, same weights)."""

    runner: str = "threads"
    max_workers: int = 3
    dask_address: str | None = None  # runner dask: a scheduler address, else a LocalCluster
    timeout_seconds: int = 3600  # one fit; a fit past it fails, the others go on
    tf_threads: int = 0  # TensorFlow intra/inter-op threads per fit; 0 = TensorFlow's default
    # runner processes or dask: fresh worker processes after this many fits each (Keras keeps
    # memory per fit in a process, so memory stays flat however many fits); 0 = one pool per
    # stage. On a cluster at dask_address its workers are restarted between chunks
    fits_per_worker: int = 0
    # the MLflow tracking store: retries of a request on a transient fault (a refused or
    # broken connection, a timeout, a 5xx answer), the back-off's base (waits of about
    # 0, 2, 4, 8 x this), and each try's time limit
    store_retries: int = 4
    store_backoff_seconds: int = 1
    store_timeout_seconds: int = 30

    def __post_init__(self) -> None:
        for name in ("max_workers", "timeout_seconds", "store_timeout_seconds"):
            _check_positive(f"execution.{name}", getattr(self, name))
        _check_choice("execution.runner", self.runner, RUNNERS)
        for name in ("tf_threads", "fits_per_worker", "store_retries", "store_backoff_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"execution.{name}={value!r} must be a whole number >= 0")


@dataclass(frozen=True)
class RegisterConfig:
    """Selection and promotion gates (``None`` turns one off). Scored on the backtest folds
    when there are any, else on the validation span; never on the test span.

    Every baseline is a candidate beside the networks. A network is chosen over the best
    baseline only when its RMSE is below the baseline's by ``min_improvement`` (a fraction)
    and, when ``max_p_value`` is set, the Diebold-Mariano test's p-value is below it.
    """

    experiment: str = "stockcast"
    model_prefix: str = "stockcast"
    max_rmse_vs_naive: float | None = 1.0
    max_rmse_vs_best_baseline: float | None = 1.0
    max_mase: float | None = None  # MASE is reported; scaled by another span, it is no gate
    min_improvement: float = 0.0
    max_p_value: float | None = None
    # the false discovery rate across a run's tickers (Benjamini-Hochberg over each ticker's
    # one-sided DM p-value of its best network); set, it replaces max_p_value
    fdr: float | None = None
    intervals: tuple[float, ...] = (0.8, 0.95)  # split-conformal prediction interval levels
    # how the bands follow volatility (stockcast.intervals): static | scaled | adaptive; the
    # volatility window in days (within a model's input window); adaptive's step
    interval_method: str = "adaptive"
    interval_days: int = 59
    interval_gamma: float = 0.02

    def __post_init__(self) -> None:
        if self.interval_method not in INTERVAL_METHODS:
            raise ConfigError(
                f"register.interval_method={self.interval_method!r}: expected one of "
                f"{', '.join(INTERVAL_METHODS)}"
            )
        if self.interval_days < 1:
            raise ConfigError(f"register.interval_days={self.interval_days} must be 1 or more")
        if not 0.0 < self.interval_gamma < 1.0:
            raise ConfigError(f"register.interval_gamma={self.interval_gamma} must be in (0, 1)")
        if not 0.0 <= self.min_improvement < 1.0:
            raise ConfigError(f"register.min_improvement={self.min_improvement} must be in [0, 1)")
        if self.max_p_value is not None and not 0.0 < self.max_p_value <= 1.0:
            raise ConfigError(f"register.max_p_value={self.max_p_value} must be in (0, 1]")
        if self.fdr is not None and not 0.0 < self.fdr < 1.0:
            raise ConfigError(f"register.fdr={self.fdr} must be in (0, 1), e.g. 0.1")
        for level in self.intervals:
            if not 0.0 < level < 1.0:
                raise ConfigError(
                    f"register.intervals: {level} is not a coverage level in (0, 1), e.g. 0.8"
                )

    def model_name(self, ticker: str) -> str:
        return f"{self.model_prefix}-{ticker}"


@dataclass(frozen=True)
class ScheduleConfig:
    """The served daily ``retrain`` deployment and what guards it."""

    name: str = "daily"
    cron: str = "0 18 * * 1-5"  # weekdays, three hours after the Shanghai close
    timezone: str = "Asia/Shanghai"
    lock_wait_seconds: float = 0.0  # a second run waits this long for the first, then exits
    webhook: str | None = None  # a URL that gets a JSON POST when a run fails
    notify: str | None = "STOCKCAST_NOTIFY_URL"  # env var with Apprise URL(s) told of failures
    push: bool = True  # dvc push after a good run, when a DVC remote is configured

    def __post_init__(self) -> None:
        if len(self.cron.split()) != 5:
            raise ConfigError(f"schedule.cron={self.cron!r} needs 5 fields: m h dom mon dow")
        if self.lock_wait_seconds < 0:
            raise ConfigError(f"schedule.lock_wait_seconds={self.lock_wait_seconds} must be >= 0")
        if self.webhook and not self.webhook.startswith(("http://", "https://")):
            raise ConfigError(f"schedule.webhook={self.webhook!r} must be an http(s) URL")


@dataclass(frozen=True)
class DriftConfig:
    """New data against the training span: daily log returns, two-sample tests."""

    recent_days: int = 60  # the newest rows compared with the training span
    p_value: float = 0.01  # a test below this flags drift
    on_drift: str = "warn"  # warn: record it and retrain as usual | retrain: retrain only on drift

    def __post_init__(self) -> None:
        _check_positive("drift.recent_days", self.recent_days)
        if not 0.0 < self.p_value < 1.0:
            raise ConfigError(f"drift.p_value={self.p_value} must be in (0, 1)")
        _check_choice("drift.on_drift", self.on_drift, ON_DRIFT)


@dataclass(frozen=True)
class MonitorConfig:
    """The champion's live skill, scored in the forecast ledger against ``last_close``."""

    days: int = 20  # the last scored days the decay rule looks at
    max_rmse_vs_last_close: float = 1.1  # decayed: live RMSE / last_close's above this...
    max_p_value: float | None = 0.1  # ...and the Diebold-Mariano p-value below this (null: off)
    min_dm_days: int = 20  # scored days before a Diebold-Mariano p-value is reported
    on_decay: str = "retrain"  # retrain: notify and retrain cold, a network champion replaced
    # by the rule | warn: notify only

    def __post_init__(self) -> None:
        _check_positive("monitor.days", self.days)
        _check_positive("monitor.min_dm_days", self.min_dm_days)
        if self.max_rmse_vs_last_close <= 0:
            raise ConfigError(
                f"monitor.max_rmse_vs_last_close={self.max_rmse_vs_last_close} must be > 0"
            )
        if self.max_p_value is not None and not 0.0 < self.max_p_value <= 1.0:
            raise ConfigError(f"monitor.max_p_value={self.max_p_value} must be in (0, 1]")
        _check_choice("monitor.on_decay", self.on_decay, ON_DECAY)


@dataclass(frozen=True)
class Config:
    seed: int
    data: DataConfig
    validate: ValidateConfig
    window: WindowConfig
    backtest: BacktestConfig
    features: FeaturesConfig
    train: TrainConfig
    register: RegisterConfig
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @property
    def min_rows(self) -> int:
        """Fewest rows per ticker: the spans, plus the backtest folds before the test span."""
        return self.window.min_rows + self.backtest.folds * self.backtest.fold_days

    def rows_needed(self) -> str:
        """``min_rows`` in words: the params that add up to it and which to lower."""
        w, b = self.window, self.backtest
        return (
            f"the configured spans need at least {self.min_rows}: window.test_days {w.test_days}"
            f" + window.val_days {w.val_days} + 2 x window.window {w.window} (training "
            f"windows) + backtest.folds {b.folds} x backtest.fold_days {b.fold_days}. Use a "
            "longer history, or lower window.test_days, window.val_days, window.window or "
            "backtest.folds"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """A short hash of the effective parameters (a lineage tag)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_config(path: Path | str = "params.yaml") -> Config:
    """Read and check ``params.yaml``.

    Args:
        path: the parameters file.

    Returns:
        The typed configuration.

    Raises:
        ConfigError: the file is missing, not YAML, or holds a bad value.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: parameters file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return config_from_dict(raw, origin=str(path))


def config_from_dict(raw: dict[str, Any], origin: str = "params") -> Config:
    """Build a :class:`Config` from the parsed YAML mapping."""
    known = {
        "base",
        "data",
        "validate",
        "window",
        "backtest",
        "features",
        "train",
        "execution",
        "register",
        "schedule",
        "drift",
        "monitor",
    }
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{origin}: unknown section(s) {sorted(unknown)}; known: {sorted(known)}")
    data = dict(raw.get("data") or {})
    data["sources"] = tuple(_source(s) for s in data.get("sources") or ())
    if isinstance(data.get("tickers"), list):  # a code such as 600519 reads as a number
        data["tickers"] = [str(t) for t in data["tickers"]]
    features = dict(raw.get("features") or {})
    if features.get("inputs") is None:
        features["inputs"] = []
    train = dict(raw.get("train") or {})
    if moved := sorted(set(train) & {f.name for f in fields(ExecutionConfig)}):
        raise ConfigError(
            f"{origin}: train.{moved[0]} moved to the execution section "
            f"(execution.{moved[0]}): how fits run is not what shapes a model"
        )
    register = dict(raw.get("register") or {})
    if register.get("intervals") is None and "intervals" in register:
        register["intervals"] = []
    if isinstance(register.get("intervals"), list):
        register["intervals"] = [_as_float(v) for v in register["intervals"]]
    seed = (raw.get("base") or {}).get("seed", 42)
    check_type("base.seed", seed, int)
    return Config(
        seed=seed,
        data=_build(DataConfig, data, "data"),
        validate=_build(ValidateConfig, raw.get("validate") or {}, "validate"),
        window=_build(WindowConfig, raw.get("window") or {}, "window"),
        backtest=_build(BacktestConfig, raw.get("backtest") or {}, "backtest"),
        features=_build(FeaturesConfig, features, "features"),
        train=_build(TrainConfig, train, "train"),
        register=_build(RegisterConfig, register, "register"),
        execution=_build(ExecutionConfig, raw.get("execution") or {}, "execution"),
        schedule=_build(ScheduleConfig, raw.get("schedule") or {}, "schedule"),
        drift=_build(DriftConfig, raw.get("drift") or {}, "drift"),
        monitor=_build(MonitorConfig, raw.get("monitor") or {}, "monitor"),
    )


def _as_float(value: Any) -> Any:
    """A number as a float (a level may be written 1 in YAML); anything else as it is, for the
    type check to name."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _source(item: str | dict[str, Any]) -> Source:
    if isinstance(item, str):
        return Source(path=item)
    if not isinstance(item, dict) or "path" not in item:
        raise ConfigError(f"data.sources: {item!r} is neither a path nor a mapping with 'path'")
    return _build(Source, item, "data.sources[]")


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    hints = get_type_hints(cls)
    for key, value in values.items():
        check_type(f"{section}.{key}", value, hints[key])
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from exc


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; choose one of {list(choices)}")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
