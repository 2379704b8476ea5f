"""One builder for every recurrent architecture (simple_rnn | lstm | gru)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stockcast.config import VARIANTS
from stockcast.errors import ConfigError

_LAYERS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
# What TensorFlow's native code writes to stderr on import whatever TF_CPP_MIN_LOG_LEVEL says
# (absl logs before absl::InitializeLog): the same lines in every process that trains.
START_UP_NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations are on|cpu_feature_guard|"
    r"To enable the following instructions"
)
_IMPORTING = threading.Lock()
# Optional imports Keras makes at its own import when they are installed, for its
# scikit-learn wrappers and image galleries, which stockcast never uses: about 1 s of the
# train process's start-up. Each is imported as usual by whatever asks for it later; only
# another thread importing one during Keras's own import would find it absent, and nothing
# in stockcast imports either.
KERAS_SKIPS = ("sklearn", "matplotlib.pyplot")


def import_keras() -> Any:
    """Keras (and TensorFlow), imported once per process without TensorFlow's native start-up
    lines; anything else written to stderr meanwhile is passed on."""
    with _IMPORTING:
        if "keras" not in sys.modules:
            with filtered_stderr(START_UP_NOISE), _skipped(KERAS_SKIPS):
                import keras  # noqa: F401
                import tensorflow  # noqa: F401
    return sys.modules["keras"]


@contextmanager
def _skipped(modules: tuple[str, ...]) -> Iterator[None]:
    """Within the block, importing one of ``modules`` not imported yet raises ImportError
    (a ``None`` in ``sys.modules``, as Python documents), as if it were not installed."""
    skipped = [name for name in modules if name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in skipped:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


# Networks kept loaded by load_network: a global run's every variant, main model and folds
# (3 x 4) fit.
KEEP_LOADED = 16
_LOADED: OrderedDict[str, Any] = OrderedDict()  # by file content, most recently used last
_LOADED_LOCK = threading.Lock()


def load_network(path: str | Path) -> Any:
    """A saved network for inference, loaded once per distinct file content in this process
    (the least recently used is dropped past ``KEEP_LOADED``). A global network's per-ticker
    copies are the same bytes, and logging a model reloads it to check its input example:
    each is loaded, and traced for prediction, once. Inference never changes a model, so one
    is safely shared."""
    import hashlib

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with _LOADED_LOCK:
        model = _LOADED.pop(digest, None)
    if model is None:
        model = import_keras().saving.load_model(str(path), compile=False)
    with _LOADED_LOCK:
        _LOADED[digest] = model
        while len(_LOADED) > KEEP_LOADED:
            _LOADED.popitem(last=False)
    return model


def network_bytes(model: Any) -> bytes:
    """A network as the bytes of its ``.keras`` file, written in memory: the same archive
    ``model.save("x.keras")`` writes (Keras 3's ``saving_lib.save_model``, which its public
    ``save`` calls with an open file), so a fit run anywhere sends its model back as data
    and it is written once, where it ends up."""
    import io

    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    saving_lib.save_model(model, buffer)
    return buffer.getvalue()


def network_from_bytes(data: bytes) -> Any:
    """The network a ``.keras`` file's bytes hold (uncompiled), read in memory."""
    import io

    import_keras()
    from keras.src.saving import saving_lib

    return saving_lib.load_model(io.BytesIO(data), compile=False)


@contextmanager
def filtered_stderr(noise: re.Pattern[str]) -> Iterator[None]:
    """Capture file descriptor 2 (native code's stderr too) for the block; afterwards write
    its lines that do not match ``noise`` to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            if kept := [line for line in lines if not noise.search(line)]:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextmanager
def muted_logs(logger: str, noise: re.Pattern[str]) -> Iterator[None]:
    """Drop the records logged to ``logger`` itself (not its children) whose message matches
    ``noise``, for the block; every other record passes."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not noise.search(record.getMessage())

    target = logging.getLogger(logger)
    target.addFilter(keep)
    try:
        yield
    finally:
        target.removeFilter(keep)


def build_model(
    variant: str,
    window: int,
    n_features: int = 1,
    units: tuple[int, ...] = (80, 100),
    dropout: float = 0.2,
    learning_rate: float = 1e-3,
    seed: int = 42,
    unroll: bool = False,
) -> Any:
    """Stacked recurrent layers, each followed by Dropout, then Dense(1); Adam on MSE.

    Every initializer and dropout gets its own seed, so two variants trained side by side in
    threads of one process stay reproducible (Keras' global seed is process-wide).

    Args:
        variant: ``simple_rnn``, ``lstm`` or ``gru``.
        window: past days per input.
        n_features: values per day.
        units: sizes of the recurrent layers, first to last.
        dropout: dropout rate after each recurrent layer.
        learning_rate: Adam's step size.
        seed: base seed for initializers and dropout.
        unroll: unroll the recurrence (the same maths; on CPU, short windows fit faster).

    Raises:
        ConfigError: unknown variant.
    """
    if variant not in _LAYERS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    keras = import_keras()

    layer_cls = getattr(keras.layers, _LAYERS[variant])
    init = keras.initializers
    inputs = keras.Input(shape=(window, n_features))  # (batch, window, features)
    x = inputs
    for depth, size in enumerate(units):
        s = seed + 10 * depth
        x = layer_cls(
            size,
            return_sequences=depth < len(units) - 1,  # last layer: (batch, units)
            kernel_initializer=init.GlorotUniform(seed=s),
            recurrent_initializer=init.Orthogonal(seed=s + 1),
            unroll=unroll,
            name=f"{variant}_{depth}",
        )(x)
        x = keras.layers.Dropout(dropout, seed=s + 2)(x)
    outputs = keras.layers.Dense(1, kernel_initializer=init.GlorotUniform(seed=seed + 99))(x)
    model = keras.Model(inputs, outputs, name=f"{variant}_forecaster")  # (batch, 1)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    # Adam's moments made now, eagerly: left to the first training step, they are created
    # inside its graph, which TensorFlow then traces twice (0.3-0.5 s more per new model;
    # the same weights and losses either way).
    model.optimizer.build(model.trainable_variables)
    return model
