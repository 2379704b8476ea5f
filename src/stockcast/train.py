"""Fit one variant on one ticker's windows, with early stopping on the validation span."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stockcast.config import TrainConfig
from stockcast.errors import StockcastError
from stockcast.models import build_model
from stockcast.windows import WindowSet


class TrainingDiverged(StockcastError):
    """The loss became NaN or infinite: not transient, never retried."""


class FitTimedOut(StockcastError):
    """A fit ran past ``train.timeout_seconds``; its partial model is not kept."""


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


@dataclass
class TrainResult:
    """What one fit left behind; ``error`` is set when the variant failed."""

    ticker: str
    variant: str
    fold: int = 0  # 0: the main model; 1..K: walk-forward backtest folds
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

    @property
    def ok(self) -> bool:
        return self.error is None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TrainResult:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


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
            ticker="_global",
            window=sets[0].window,
            scaled=np.concatenate([ws.scaled for ws in sets]),
            train_idx=np.concatenate(
                [ws.train_idx + o for ws, o in zip(sets, offsets, strict=True)]
            ),
            val_idx=np.concatenate([ws.val_idx + o for ws, o in zip(sets, offsets, strict=True)]),
        )


def fit_variant(
    ws: WindowSet, variant: str, cfg: TrainConfig, seed: int, out_dir: Path
) -> TrainResult:
    """Train ``variant`` on ``ws``; save the best-on-validation model to ``out_dir``.

    Never raises for a failing fit: the error is recorded in the result, so one failing
    variant leaves the others alone. The model file is written through a temporary name.
    """
    import multiprocessing
    import os

    worker = f"{multiprocessing.current_process().name} pid {os.getpid()}"
    result = TrainResult(ws.ticker, variant, worker=worker)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        _fit(ws, variant, cfg, seed, out_dir, result)
    except Exception as exc:  # noqa: BLE001 - recorded, reported, and the stage decides
        result.error = f"{type(exc).__name__}: {exc}"
        (out_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    result.save(out_dir / "result.json")
    return result


def _fit(
    ws: WindowSet, variant: str, cfg: TrainConfig, seed: int, out_dir: Path, result: TrainResult
) -> None:
    import keras

    if cfg.tf_threads:
        import tensorflow as tf

        try:  # only before TensorFlow's first op in this process
            tf.config.threading.set_intra_op_parallelism_threads(cfg.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.tf_threads)
        except RuntimeError:
            pass  # already initialised (threads runner, or a reused worker): keep its setting
    keras.utils.set_random_seed(seed)
    model = build_model(
        variant, ws.window, ws.scaled.shape[1], cfg.units, cfg.dropout, cfg.learning_rate, seed
    )
    budget = time_budget(cfg.timeout_seconds)
    callbacks = [
        budget,
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        ),
    ]
    start = time.perf_counter()
    result.fit_started = time.time()
    history = model.fit(
        make_dataset(ws, ws.train_idx, cfg.batch_size, seed),
        validation_data=make_dataset(ws, ws.val_idx, cfg.batch_size, None),
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,  # tf.data shuffles
    )
    result.fit_seconds = round(time.perf_counter() - start, 3)
    result.fit_ended = time.time()
    result.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if budget.exceeded:
        raise FitTimedOut(
            f"{ws.ticker}/{variant}: fit exceeded train.timeout_seconds={cfg.timeout_seconds} "
            f"after {len(result.history.get('loss', []))} epochs; no model kept"
        )
    val_loss = np.asarray(result.history.get("val_loss", []), dtype="float64")
    if val_loss.size == 0 or not np.isfinite(val_loss).all():
        raise TrainingDiverged(f"{ws.ticker}/{variant}: validation loss is not finite")
    result.epochs_run = int(val_loss.size)
    result.best_epoch = int(np.argmin(val_loss)) + 1
    result.best_val_loss = float(val_loss.min())
    path = out_dir / "model.keras"
    tmp = out_dir / "model.tmp.keras"
    model.save(tmp)
    tmp.replace(path)
    result.model_path = str(path)
