"""Fit one variant on one ticker's windows, with early stopping on the validation span."""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from stockcast.config import ExecutionConfig, TrainConfig
from stockcast.errors import FitTimedOut, StockcastError, TrainingDiverged
from stockcast.models import build_model, import_keras, network_bytes, network_from_bytes
from stockcast.paths import MODEL_FILE, atomic_write, write_json
from stockcast.windows import WindowSet


def epoch_log(report: Callable[[str], None], name: str, max_epochs: int) -> Any:
    """A Keras callback that reports one line per epoch: epoch/max, loss, val_loss, the best
    epoch so far and seconds per epoch (``report`` is e.g. a run logger's ``info``)."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.started = float("inf"), 0, time.perf_counter()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            val_loss = float(logs.get("val_loss", float("nan")))
            if val_loss < self.best:
                self.best, self.best_epoch = val_loss, epoch + 1
            report(
                f"{name} epoch {epoch + 1}/{max_epochs}: loss {logs.get('loss', float('nan')):.6f}"
                f" val_loss {val_loss:.6f} (best {self.best:.6f} at {self.best_epoch}), "
                f"{time.perf_counter() - self.started:.2f} s/epoch"
            )

    return EpochLog()


def time_budget(seconds: float) -> Any:
    """A Keras callback that stops training after ``seconds`` of wall time (checked after
    every batch). It works the same in threads, processes and Dask workers, where an
    orchestrator's timeout cannot interrupt a running fit."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.deadline = time.monotonic() + seconds
            self.exceeded = False

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if time.monotonic() > self.deadline:
                self.exceeded = True
                self.model.stop_training = True

    return TimeBudget()


MAIN_MODEL = 0  # the fold number of the model that may be registered; 1..K are backtest folds
GLOBAL_MODEL = "_global"  # the ticker a global model (train.scope: global) is trained under


@dataclass(frozen=True)
class FitJob:
    """One fit to run: a variant on one window set (or, for a global model, on several).

    Paths are relative (window-set names in the window stage's folder; the model's folder
    within ``models/``): a job names its data, the task is handed the data itself, and the
    process that runs it needs no view of the project's folder.
    """

    ticker: str  # or GLOBAL_MODEL
    variant: str
    fold: int  # MAIN_MODEL or a backtest fold 1..K
    files: tuple[str, ...]  # the window sets (.npz names) it trains on
    out: str  # its folder within models/: "AAA/gru" or "AAA/gru/fold2"
    patience: int = 0  # early stopping's patience for this fit; 0: train.patience
    epochs: int = 0  # the most epochs for this fit; 0: train.epochs

    @property
    def name(self) -> str:
        return f"{self.ticker}/{self.variant}/" + (
            "main" if self.fold == MAIN_MODEL else f"fold{self.fold}"
        )


def plan_fits(
    manifest: dict[str, dict[str, Any]], variants: tuple[str, ...], scope: str
) -> list[FitJob]:
    """Every fit a train stage runs: per variant, the main model and each backtest fold,
    per ticker (``per_ticker``) or over every ticker at once (``global``).

    Args:
        manifest: the window stage's manifest (ticker -> its files and folds).
        variants: the variants to train.
        scope: ``per_ticker`` | ``global``.
    """
    if scope == "global":
        folds = min(len(entry.get("folds", [])) for entry in manifest.values())
        per_fold = [[_file(e, fold) for e in manifest.values()] for fold in range(folds + 1)]
        return [
            _job(GLOBAL_MODEL, variant, fold, per_fold[fold])
            for variant in variants
            for fold in _chain(folds)
        ]
    return [
        _job(ticker, variant, fold, [_file(entry, fold)])
        for ticker, entry in manifest.items()
        for variant in variants
        for fold in _chain(len(entry.get("folds", [])))
    ]


def _file(entry: dict[str, Any], fold: int) -> str:
    """The window set a fit of ``fold`` trains on, from a ticker's manifest entry."""
    return str(entry["file"] if fold == MAIN_MODEL else entry["folds"][fold - 1])


def _chain(folds: int) -> list[int]:
    """A variant's fits in walk-forward order: folds oldest first, then the main model."""
    return [*range(1, folds + 1), MAIN_MODEL]


def warm_starts(jobs: list[FitJob]) -> dict[str, str]:
    """Which fit each fit starts from with ``train.warm_start``: fold k+1 from fold k, the main
    model from the last fold, within one ticker and variant; fold 1 (or a main model with no
    folds) starts cold and is not in the map. Keys and values are job names."""
    chains: dict[tuple[str, str], dict[int, str]] = {}
    for job in jobs:
        chains.setdefault((job.ticker, job.variant), {})[job.fold] = job.name
    sources = {}
    for fits in chains.values():
        order = [fits[f] for f in _chain(max(fits)) if f in fits]
        sources.update(zip(order[1:], order[:-1], strict=True))
    return sources


def model_dir(ticker: str, variant: str, fold: int) -> str:
    """A fit's folder within ``models/``: ``AAA/gru`` (the main model) or ``AAA/gru/fold2``."""
    return f"{ticker}/{variant}" + ("" if fold == MAIN_MODEL else f"/fold{fold}")


def _job(ticker: str, variant: str, fold: int, names: list[str]) -> FitJob:
    return FitJob(ticker, variant, fold, tuple(names), model_dir(ticker, variant, fold))


def chunks(jobs: list[FitJob], execution: ExecutionConfig) -> list[list[FitJob]]:
    """The fits in the groups that share worker processes: all of them, or, with the
    processes or dask runner and ``fits_per_worker``, ``fits_per_worker`` per worker at a
    time (the threads runner's one process cannot be replaced)."""
    if execution.runner == "threads" or not execution.fits_per_worker:
        return [jobs]
    size = execution.fits_per_worker * execution.max_workers
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def collect(jobs: list[FitJob], outcomes: list[Fitted | str]) -> list[Fitted]:
    """Each job's fit; a job whose task itself failed (its message instead of a fit: a worker
    died, its data could not be sent) is recorded as a failed fit, never dropped."""
    return [
        outcome
        if isinstance(outcome, Fitted)
        else Fitted(
            TrainResult(job.ticker, job.variant, fold=job.fold, error=f"task failed: {outcome}")
        )
        for job, outcome in zip(jobs, outcomes, strict=True)
    ]


def run_job(
    job: FitJob,
    sets: list[WindowSet],
    cfg: TrainConfig,
    seed: int,
    execution: ExecutionConfig | None = None,
    progress: Callable[[str], None] | None = None,
    init: bytes | None = None,
) -> Fitted:
    """Fit a job on its windows (stacked for a global model) and return the fit as data: its
    record, the ``.keras`` bytes and any traceback; nothing is written to disk. ``progress``
    gets a line per epoch; ``init`` is the ``.keras`` file whose weights it starts from (a
    warm start), None for a cold start."""
    data = StackedWindows.stack(sets) if job.ticker == GLOBAL_MODEL else sets[0]
    cfg = replace(cfg, patience=job.patience or cfg.patience, epochs=job.epochs or cfg.epochs)
    fitted = fit(
        data, job.variant, cfg, seed, execution or ExecutionConfig(), progress, job.name, init
    )
    fitted.result.fold = job.fold
    return fitted


@dataclass
class TrainResult:
    """What one fit left behind; ``error`` is set when the variant failed."""

    ticker: str
    variant: str
    fold: int = MAIN_MODEL  # 1..K: walk-forward backtest folds
    model_path: str | None = None
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float | None = None
    fit_seconds: float = 0.0
    fit_started: float = 0.0  # Unix time the fit began and ended: when fits overlapped
    fit_ended: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    worker: str = ""  # the process that ran the fit (e.g. a Dask worker), for the record
    warm_from: str = ""  # the fit whose weights it started from; "" for a cold start
    patience: int = 0  # early stopping's patience it ran with

    @property
    def ok(self) -> bool:
        return self.error is None

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> TrainResult:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


@dataclass
class Fitted:
    """One fit as data, what a worker sends back: the record, the trained model's
    ``.keras`` file as bytes (None when the fit failed) and the failure's traceback."""

    result: TrainResult
    model: bytes | None = None
    traceback: str = ""


def make_dataset(ws: WindowSet, idx: np.ndarray, batch_size: int, seed: int | None) -> Any:
    """A tf.data pipeline that gathers each batch's windows on the fly (no 60x copy).

    Args:
        ws: the ticker's windows.
        idx: target positions of the span.
        batch_size: windows per batch.
        seed: shuffle seed; None keeps the order (validation, prediction).
    """
    import tensorflow as tf

    series = tf.constant(ws.scaled)  # (rows, features); column 0 is the target
    offsets = tf.range(-ws.window, 0, dtype=tf.int64)  # (window,)
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(idx, dtype="int64"))
    if seed is not None:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)

    def gather(batch: Any) -> tuple[Any, Any]:
        x = tf.gather(series, batch[:, None] + offsets)  # (batch, window, features)
        y = tf.gather(series[:, 0], batch)[:, None]  # (batch, 1)
        return x, y

    return ds.batch(batch_size).map(gather, num_parallel_calls=1).prefetch(2)


@dataclass
class StackedWindows:
    """Several tickers' windows as one training set (``train.scope: global``).

    Each ticker's series keeps its own scaling; the series are stacked end to end and every
    target position is shifted by its series' offset. A window never crosses two series:
    each series' first target lies ``window`` rows after its start.
    """

    ticker: str
    window: int
    scaled: np.ndarray  # (sum of rows, features)
    train_idx: np.ndarray
    val_idx: np.ndarray

    @classmethod
    def stack(cls, sets: list[WindowSet]) -> StackedWindows:
        if not sets:
            raise StockcastError("no window sets to stack")
        shapes = {(ws.window, ws.scaled.shape[1]) for ws in sets}
        if len(shapes) != 1:
            raise StockcastError(f"window sets differ in window or inputs: {sorted(shapes)}")
        offsets = np.cumsum([0, *(len(ws.scaled) for ws in sets[:-1])])
        return cls(
            ticker=GLOBAL_MODEL,
            window=sets[0].window,
            scaled=np.concatenate([ws.scaled for ws in sets]),
            train_idx=np.concatenate(
                [ws.train_idx + o for ws, o in zip(sets, offsets, strict=True)]
            ),
            val_idx=np.concatenate([ws.val_idx + o for ws, o in zip(sets, offsets, strict=True)]),
        )


def fit(
    ws: WindowSet,
    variant: str,
    cfg: TrainConfig,
    seed: int,
    execution: ExecutionConfig = ExecutionConfig(),  # noqa: B008 - frozen, shared safely
    progress: Callable[[str], None] | None = None,
    name: str = "",
    init: bytes | None = None,
) -> Fitted:
    """Train ``variant`` on ``ws`` and return the best-on-validation model as ``.keras``
    bytes with its record. ``init``: a ``.keras`` file (bytes) of the same architecture to
    start from instead of the seeded initial weights.

    Never raises for a failing fit: the error is recorded in the result (and the traceback
    kept), so one failing variant leaves the others alone.
    """
    import multiprocessing
    import os

    import_keras()  # a worker's first fit imports TensorFlow: without its start-up lines
    worker = f"{multiprocessing.current_process().name} pid {os.getpid()}"
    result = TrainResult(ws.ticker, variant, worker=worker, patience=cfg.patience)
    try:
        label = name or f"{ws.ticker}/{variant}"
        callbacks = [epoch_log(progress, label, cfg.epochs)] if progress else []
        model = _fit(ws, variant, cfg, seed, result, execution, callbacks, init)
    except Exception as exc:  # noqa: BLE001 - recorded, reported, and the stage decides
        result.error = f"{type(exc).__name__}: {exc}"
        return Fitted(result, None, traceback.format_exc())
    return Fitted(result, model)


def keep(fitted: Fitted, out_dir: Path, shown: Path | None = None) -> TrainResult:
    """Write a fit where it ends up, once: ``model.keras`` (through a temporary name), any
    traceback as ``error.txt`` and the record as ``result.json``. The record's
    ``model_path`` names the model file under ``shown`` (``out_dir`` by default: a folder
    built aside names its place once swapped in)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = None
    if (model := fitted.model) is not None:
        atomic_write(out_dir / MODEL_FILE, lambda tmp: tmp.write_bytes(model))
        model_path = str((shown or out_dir) / MODEL_FILE)
    if fitted.traceback:
        (out_dir / "error.txt").write_text(fitted.traceback, encoding="utf-8")
    result = replace(fitted.result, model_path=model_path)
    result.save(out_dir / "result.json")
    return result


def fit_variant(
    ws: WindowSet,
    variant: str,
    cfg: TrainConfig,
    seed: int,
    out_dir: Path,
    execution: ExecutionConfig = ExecutionConfig(),  # noqa: B008 - frozen, shared safely
    progress: Callable[[str], None] | None = None,
    name: str = "",
    init: Path | None = None,
) -> TrainResult:
    """:func:`fit`, kept in ``out_dir`` (:func:`keep`); ``init`` is a ``.keras`` file."""
    start = init.read_bytes() if init is not None else None
    return keep(fit(ws, variant, cfg, seed, execution, progress, name, start), out_dir)


def _fit(
    ws: WindowSet,
    variant: str,
    cfg: TrainConfig,
    seed: int,
    result: TrainResult,
    execution: ExecutionConfig,
    extra_callbacks: list[Any],
    init: bytes | None = None,
) -> bytes:
    import keras

    _set_threads(execution.tf_threads)
    keras.utils.set_random_seed(seed)
    spec = model_spec(variant, ws.window, ws.scaled.shape[1], cfg, seed)
    with fresh_model(spec) as model:
        if init is not None:  # the weights only: a fresh optimiser on the longer span
            model.set_weights(network_from_bytes(init).get_weights())
        budget = time_budget(execution.timeout_seconds)
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        )
        start = time.perf_counter()
        result.fit_started = time.time()
        history = model.fit(
            make_dataset(ws, ws.train_idx, cfg.batch_size, seed),
            validation_data=make_dataset(ws, ws.val_idx, cfg.batch_size, None),
            epochs=cfg.epochs,
            callbacks=[budget, keras.callbacks.TerminateOnNaN(), stop, *extra_callbacks],
            verbose=0,
            shuffle=False,  # tf.data shuffles
        )
        result.fit_seconds = round(time.perf_counter() - start, 3)
        result.fit_ended = time.time()
        result.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        if budget.exceeded:
            raise FitTimedOut(
                f"{ws.ticker}/{variant}: fit exceeded "
                f"execution.timeout_seconds={execution.timeout_seconds} "
                f"after {len(result.history.get('loss', []))} epochs; no model kept"
            )
        _record_best(result, f"{ws.ticker}/{variant}")
        return network_bytes(model)


def model_spec(
    variant: str, window: int, features: int, cfg: TrainConfig, seed: int
) -> tuple[Any, ...]:
    """``build_model``'s arguments, in its order, for a fit of ``variant``: the key under
    which a built network waits for the next fit of the same architecture
    (:func:`fresh_model`, :func:`prepare_networks`)."""
    return (variant, window, features, cfg.units, cfg.dropout, cfg.learning_rate, seed, cfg.unroll)


@dataclass
class _Idle:
    """A built, compiled network between fits, and its state as built: initial weights and
    each dropout layer's random state."""

    model: Any
    weights: list[np.ndarray]
    seeds: list[tuple[Any, np.ndarray]]


# Networks between fits, by build_model's arguments: a fit takes one out (or builds it) and
# puts it back, so concurrent fits never share a model.
_IDLE: dict[tuple[Any, ...], list[_Idle]] = {}
_IDLE_LOCK = threading.Lock()


@contextmanager
def fresh_model(spec: tuple[Any, ...]) -> Iterator[Any]:
    """A compiled network exactly as ``build_model(*spec)`` makes it, for one fit.

    A model put back by an earlier fit of the same spec in this process is reset instead of
    rebuilt: its initial weights, a fresh optimiser (Adam's moments and step count zeroed)
    and its dropout layers' random state. The fit then follows the same path, loss for loss,
    and its compiled training step is reused: each new model costs its first epoch about 2 s
    of graph tracing, which a warm-started fold chain pays once instead of once per fit.
    """
    with _IDLE_LOCK:
        idle = _IDLE.get(spec, [])
        kept = idle.pop() if idle else None
    if kept is None:
        model = build_model(*spec)
        kept = _Idle(
            model,
            model.get_weights(),
            [
                (layer.seed_generator.state, layer.seed_generator.state.numpy())
                for layer in model.layers
                if getattr(layer, "seed_generator", None) is not None
            ],
        )
    else:
        _reset(kept)
    yield kept.model
    with _IDLE_LOCK:  # only after a fit that ended normally: a failed one's state is unknown
        _IDLE.setdefault(spec, []).append(kept)


def prepare_networks(specs: Iterable[tuple[Any, ...]], batch_size: int) -> int:
    """Build each spec's network (``build_model``'s arguments) and trace its training and
    validation steps on one window of zeros, then keep it for the first fit of that spec in
    this process (:func:`fresh_model` hands it out reset, so that fit trains loss for loss as
    on a network built for it, without paying the tracing: about 1.3 s a network, more when
    three fits trace at once). Returns how many networks were prepared."""
    import keras

    count = 0
    for spec in specs:
        window, features, seed = spec[1], spec[2], spec[6]
        keras.utils.set_random_seed(seed)  # as _fit does before building
        blank = StackedWindows(  # one window of zeros: the fits' shapes and dtype
            "", window, np.zeros((window + 1, features), "float32"), *[np.array([window])] * 2
        )
        with fresh_model(spec) as model:
            model.fit(
                make_dataset(blank, blank.train_idx, batch_size, seed),
                validation_data=make_dataset(blank, blank.train_idx, batch_size, None),
                epochs=1,
                verbose=0,
                shuffle=False,
            )
        count += 1
    return count


def _reset(kept: _Idle) -> None:
    """Put a used network back as built (see :func:`fresh_model`)."""
    model = kept.model
    model.set_weights(kept.weights)
    for variable in model.optimizer.variables:
        if not variable.path.endswith("learning_rate"):
            variable.assign(np.zeros(variable.shape, variable.dtype))
    for state, value in kept.seeds:
        state.assign(value)


def _set_threads(threads: int) -> None:
    """TensorFlow's thread pools, settable only before its first op in this process."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already initialised (threads runner, or a reused worker): keep its setting


def _record_best(result: TrainResult, name: str) -> None:
    """The best epoch (the weights early stopping restored); a non-finite loss fails."""
    val_loss = np.asarray(result.history.get("val_loss", []), dtype="float64")
    if val_loss.size == 0 or not np.isfinite(val_loss).all():
        raise TrainingDiverged(f"{name}: validation loss is not finite")
    result.epochs_run = int(val_loss.size)
    result.best_epoch = int(np.argmin(val_loss)) + 1
    result.best_val_loss = float(val_loss.min())
