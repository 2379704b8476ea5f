"""Seconds per training epoch on the bundled sample: the seed's bare Keras scripts, the
pipeline's step, and the same model in PyTorch eager (the kernels Darts and NeuralForecast
run). Used by ``end_to_end.py``; runs alone too.

The pipeline's step is what ``train.fit_variant`` runs with the default params (its model
builder, ``train.unroll``, its tf.data input, batch ``train.batch_size``, the default
inputs). The PyTorch model is the same network: two recurrent layers of ``train.units``,
dropout after each, a linear head, Adam on MSE, the same windows materialised as a tensor,
2 threads. Epochs alternate Keras, PyTorch, PyTorch, Keras; a side's figure is the median of
its epochs after a warm-up epoch each time. PyTorch is not a dependency of the project:

    .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    .venv/bin/python benchmarks/steps.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = ("simple_rnn", "lstm", "gru")
SEED_EPOCHS = 50  # the seed scripts' epochs
SEED_BATCH = 64


def _timer() -> Any:
    import keras

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.times.append(time.perf_counter() - self.start)

    return Timer()


def sample_frame() -> Any:
    from stockcast.ingest import read_prices

    return read_prices(ROOT / "data/raw/SH600519.csv", "SH600519").frame


def seed_seconds(epochs: int = 3) -> dict[str, float]:
    """The seed's three scripts (bare Keras: MinMax levels of the opens, 60 -> 1, the
    materialised windows, batch 64, validation on the test span every epoch), each timed for
    ``epochs`` epochs (at least 2) and estimated at 50: its first epoch plus 49 median
    epochs."""
    import keras

    epochs = max(2, epochs)

    from stockcast.models import build_model
    from stockcast.windows import make_windows

    ws = make_windows(sample_frame(), "open", 60, 0, 300, "level")
    x, y = ws.inputs(ws.train_idx).copy(), ws.targets(ws.train_idx)
    xt, yt = ws.inputs(ws.test_idx).copy(), ws.targets(ws.test_idx)
    out = {}
    for variant in VARIANTS:
        keras.utils.set_random_seed(42)
        model, timer = build_model(variant, 60), _timer()
        model.fit(
            x, y, batch_size=SEED_BATCH, epochs=epochs, validation_data=(xt, yt), verbose=0,
            callbacks=[timer],
        )  # fmt: skip
        out[variant] = timer.times[0] + (SEED_EPOCHS - 1) * statistics.median(timer.times[1:])
    return out


def _pipeline_windows() -> tuple[Any, Any]:
    """The default params' windows of the sample and its train config."""
    from stockcast.config import load_config
    from stockcast.windows import make_windows

    cfg = load_config(ROOT / "params.yaml")
    w, f = cfg.window, cfg.features
    ws = make_windows(
        sample_frame(), cfg.data.target, w.window, w.val_days, w.test_days,
        f.target_transform, f.inputs, f.anchor,
    )  # fmt: skip
    return ws, cfg.train


def keras_epochs(variant: str, epochs: int) -> list[float]:
    """The pipeline's training step: its model (default params) on its tf.data input."""
    import keras

    from stockcast.models import build_model
    from stockcast.train import make_dataset

    ws, cfg = _pipeline_windows()
    keras.utils.set_random_seed(42)
    model = build_model(
        variant, ws.window, ws.scaled.shape[1], cfg.units, cfg.dropout, cfg.learning_rate,
        42, cfg.unroll,
    )  # fmt: skip
    timer = _timer()
    data = make_dataset(ws, ws.train_idx, cfg.batch_size, 42)
    model.fit(data, epochs=epochs + 1, verbose=0, callbacks=[timer], shuffle=False)
    return timer.times[1:]


def torch_epochs(variant: str, epochs: int) -> list[float]:
    """The same network and windows in PyTorch eager, 2 threads."""
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(42)
    ws, cfg = _pipeline_windows()
    x = torch.from_numpy(np.ascontiguousarray(ws.inputs(ws.train_idx), dtype="float32"))
    y = torch.from_numpy(np.asarray(ws.targets(ws.train_idx), dtype="float32").reshape(-1, 1))
    cell = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[variant]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = [x.shape[2], *cfg.units]
            self.layers = nn.ModuleList(
                cell(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:], strict=False)
            )
            self.drop = nn.Dropout(cfg.dropout)
            self.head = nn.Linear(sizes[-1], 1)

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                batch = self.drop(layer(batch)[0])
            return self.head(batch[:, -1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    loss_fn = nn.MSELoss()
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(x)).split(cfg.batch_size):
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def step_ratios(epochs: int = 3) -> dict[str, tuple[float, float]]:
    """Per variant: (Keras s/epoch, PyTorch s/epoch), medians, alternating order."""
    out = {}
    for variant in VARIANTS:
        k, t = [], []
        k += keras_epochs(variant, epochs)
        t += torch_epochs(variant, epochs)
        t += torch_epochs(variant, epochs)
        k += keras_epochs(variant, epochs)
        out[variant] = (statistics.median(k), statistics.median(t))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    seed = seed_seconds(args.epochs)
    print("| variant | seed script, 50 epochs (estimated) s |\n|---|---|")
    for variant, seconds in seed.items():
        print(f"| {variant} | {seconds:.1f} |")
    print(f"| all three | {sum(seed.values()):.1f} |\n")
    print("| variant | pipeline Keras s/epoch | PyTorch eager s/epoch | Keras / PyTorch |")
    print("|---|---|---|---|")
    for variant, (k, t) in step_ratios(args.epochs).items():
        print(f"| {variant} | {k:.3f} | {t:.3f} | {k / t:.2f} |", flush=True)


if __name__ == "__main__":
    main()
