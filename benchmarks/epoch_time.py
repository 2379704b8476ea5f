"""Epoch time: the pipeline's training step against a bare Keras loop, in one process.

Same model (the pipeline's builder), same data (SH600519 opens, 60 -> 1, the seed's
MinMax on levels), same batch size. The bare loop is the seed's: windows materialised as a
numpy array and ``model.fit(x, y, batch_size=64)``. The pipeline's step is
``train.make_dataset`` (tf.data gathering each batch from the series). Each side is fitted
twice, in the order bare, pipeline, pipeline, bare (so a drift in the machine's load weighs on
both alike), ``--epochs`` epochs after one warm-up epoch each time; the ratio is the median
pipeline epoch over the median bare epoch.

``--compile`` also times the model compiled with XLA (``jit_compile=True``) and with the
recurrent loop unrolled, the two compile-time options that could make a CPU epoch cheaper.

    .venv/bin/python benchmarks/epoch_time.py [--epochs 5] [--variants gru lstm simple_rnn]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stockcast.ingest import read_prices  # noqa: E402
from stockcast.models import build_model  # noqa: E402
from stockcast.train import make_dataset  # noqa: E402
from stockcast.windows import make_windows  # noqa: E402

BATCH = 64


class EpochTimer:
    """A Keras callback keeping each epoch's wall time."""

    def __new__(cls):  # noqa: D102 - built lazily so keras is imported after the env is set
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.times: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return _Timer()


def epoch_times(model, fit_args: dict, epochs: int) -> list[float]:
    timer = EpochTimer()
    model.fit(**fit_args, epochs=epochs + 1, verbose=0, callbacks=[timer])
    return timer.times[1:]  # the first epoch traces the graph


def median_epoch(model, fit_args: dict, epochs: int) -> float:
    return statistics.median(epoch_times(model, fit_args, epochs))


def build(variant: str, window: int, *, jit: bool = False, unroll: bool = False):
    import keras

    model = build_model(variant, window)
    if unroll:
        for layer in model.layers:
            if hasattr(layer, "unroll"):
                layer.unroll = True
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit if jit else "auto"
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=["simple_rnn", "lstm", "gru"])
    parser.add_argument("--compile", action="store_true", help="also try XLA and unroll")
    args = parser.parse_args()

    import keras

    frame = read_prices(ROOT / "data/raw/SH600519.csv", "SH600519").frame
    ws = make_windows(frame, "open", 60, 0, 300, "level")
    x = ws.inputs(ws.train_idx).copy()  # the seed's materialised windows
    y = ws.targets(ws.train_idx)
    print(
        f"windows: {x.shape}, batch {BATCH}; each side fitted twice (bare, pipeline, pipeline, "
        f"bare), median of 2 x {args.epochs} epochs after a warm-up"
    )
    header = "| variant | bare Keras s/epoch | pipeline s/epoch | ratio |"
    if args.compile:
        header += " xla s/epoch | unroll s/epoch |"
    print(header)
    print("|---|---|---|---|" + ("---|---|" if args.compile else ""), flush=True)
    for variant in args.variants:
        bare_fit = {"x": x, "y": y, "batch_size": BATCH, "shuffle": True}
        ours_fit = {"x": make_dataset(ws, ws.train_idx, BATCH, 42), "shuffle": False}
        times: dict[str, list[float]] = {"bare": [], "ours": []}
        for side in ("bare", "ours", "ours", "bare"):
            keras.utils.set_random_seed(42)
            fit_args = bare_fit if side == "bare" else ours_fit
            times[side] += epoch_times(build(variant, 60), fit_args, args.epochs)
        bare, ours = (statistics.median(times[side]) for side in ("bare", "ours"))
        row = f"| {variant} | {bare:.3f} | {ours:.3f} | {ours / bare:.3f} |"
        if args.compile:
            for options in ({"jit": True}, {"unroll": True}):
                keras.utils.set_random_seed(42)
                t = median_epoch(build(variant, 60, **options), ours_fit, args.epochs)
                row += f" {t:.3f} ({t / bare:.2f}x) |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
