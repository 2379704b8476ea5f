"""Behaviour of the models: shapes, reproducibility, save/load, and failure isolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stockcast.config import ExecutionConfig, TrainConfig
from stockcast.errors import ConfigError
from stockcast.models import build_model
from stockcast.train import TrainResult, fit_variant
from stockcast.windows import make_windows
from tests.conftest import synthetic_prices

pytestmark = pytest.mark.fits  # trains networks: `make mutate` leaves these out

TINY = TrainConfig(units=(8, 8), epochs=2, batch_size=32, patience=2)


@pytest.fixture(scope="module")
def ws():
    return make_windows(synthetic_prices(300), "open", window=10, val_days=40, test_days=40)


@pytest.mark.parametrize("variant", ["simple_rnn", "lstm", "gru"])
def test_each_variant_maps_windows_to_one_value(variant):
    model = build_model(variant, window=10, units=(8, 4))
    assert model.input_shape == (None, 10, 1)
    assert model.output_shape == (None, 1)
    out = model.predict(np.zeros((3, 10, 1), "float32"), verbose=0)
    assert out.shape == (3, 1)


def test_tensorflow_imports_without_its_start_up_lines_and_other_stderr_passes():
    """In a fresh interpreter: TensorFlow's native start-up lines (oneDNN, absl) are gone;
    a line of native stderr written meanwhile that is not one of them is kept. Keras has
    not imported scikit-learn or pyplot (1 s), which import as usual afterwards."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from stockcast.models import START_UP_NOISE, filtered_stderr, import_keras\n"
        "keras = import_keras()\n"
        "with filtered_stderr(START_UP_NOISE):\n"
        "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "    os.write(2, b'a real warning\\n')\n"
        "print(keras.__name__, [m for m in ('sklearn', 'matplotlib.pyplot') if m in sys.modules])\n"
        "import matplotlib.pyplot, sklearn\n"
        "print(sklearn.__name__, matplotlib.pyplot.__name__)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines() == ["keras []", "sklearn matplotlib.pyplot"]
    assert run.stderr.splitlines() == ["a real warning"], run.stderr


def test_unknown_variant_lists_the_choices():
    with pytest.raises(ConfigError, match=r"unknown variant 'tcn'; choose one of \['simple_rnn'"):
        build_model("tcn", window=10)


def test_same_seed_same_losses_and_saved_model_predicts_identically(ws, tmp_path: Path):
    import keras

    first = fit_variant(ws, "gru", TINY, 7, tmp_path / "a")
    second = fit_variant(ws, "gru", TINY, 7, tmp_path / "b")
    assert first.ok and second.ok, (first.error, second.error)
    assert first.history["loss"] == second.history["loss"]
    assert first.history["val_loss"] == second.history["val_loss"]
    assert first.best_val_loss == min(first.history["val_loss"])
    loaded = keras.saving.load_model(first.model_path, compile=False)
    reloaded = keras.saving.load_model(second.model_path, compile=False)
    x = ws.inputs(ws.test_idx)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    saved = TrainResult.load(tmp_path / "a" / "result.json")
    assert saved.best_epoch == first.best_epoch and saved.model_path == first.model_path


def test_a_warm_start_begins_from_the_given_weights_and_unroll_keeps_the_maths(ws, tmp_path):
    """A warm-started fit (``init``) begins from the given model's weights: with a learning
    rate too small to move them, its model equals that one, while a cold fit's does not.
    ``unroll`` changes how the recurrence is computed, not what it computes."""
    import keras

    from stockcast.train import FitJob, run_job

    source = fit_variant(ws, "lstm", TINY, 1, tmp_path / "source")
    assert source.ok
    still = TrainConfig(units=(8, 8), epochs=1, batch_size=32, learning_rate=1e-12)
    job = FitJob(ws.ticker, "lstm", 0, ("x.npz",), "o")
    init = Path(source.model_path).read_bytes()
    warm = run_job(job, [ws], still, 2, init=init)
    cold = run_job(job, [ws], still, 2)
    assert warm.result.ok and cold.result.ok

    def weights(data: bytes) -> list[np.ndarray]:
        path = tmp_path / "m.keras"
        path.write_bytes(data)
        return keras.saving.load_model(path, compile=False).get_weights()

    first = weights(init)
    for got, want in zip(weights(warm.model), first, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert not all(
        np.allclose(got, want, atol=1e-3)
        for got, want in zip(weights(cold.model), first, strict=True)
    )
    # unrolled and not: the same weights give the same forecasts
    rolled, unrolled = (build_model("gru", 10, 1, (8, 8), unroll=u) for u in (False, True))
    assert unrolled.layers[1].unroll and not rolled.layers[1].unroll
    unrolled.set_weights(rolled.get_weights())
    x = ws.inputs(ws.test_idx)
    np.testing.assert_allclose(
        unrolled.predict(x, verbose=0), rolled.predict(x, verbose=0), atol=1e-5
    )


def test_a_network_prepared_ahead_is_the_one_the_fit_takes_and_trains_as_a_fresh_one(
    ws, tmp_path: Path
):
    """prepare_networks builds and traces a network before the windows exist (on a window of
    zeros); the first fit of that spec takes it, and trains loss for loss as on a network
    built for it."""
    from stockcast import train

    spec = ("gru", ws.window, ws.scaled.shape[1], TINY.units, TINY.dropout, TINY.learning_rate)
    spec += (7, TINY.unroll)
    train._IDLE.clear()
    assert train.prepare_networks([spec], TINY.batch_size) == 1
    ((prepared,),) = train._IDLE.values()
    assert prepared.model.train_function is not None  # traced already
    ahead = fit_variant(ws, "gru", TINY, 7, tmp_path / "ahead")
    assert [i.model for i in train._IDLE[spec]] == [prepared.model]  # it was the one used
    train._IDLE.clear()
    fresh = fit_variant(ws, "gru", TINY, 7, tmp_path / "fresh")
    assert ahead.ok and fresh.ok
    assert ahead.history == fresh.history
    train._IDLE.clear()


def test_a_network_reused_by_a_later_fit_trains_exactly_as_a_fresh_one(ws, tmp_path: Path):
    """A fit puts its network back; the next fit of the same architecture in the process
    takes it, reset (initial weights, a fresh optimiser, the dropout's random state), and
    trains loss for loss as it would on a freshly built one."""
    from stockcast import train

    train._IDLE.clear()
    first = fit_variant(ws, "lstm", TINY, 5, tmp_path / "first")
    ((kept,),) = train._IDLE.values()  # one network, put back
    init = Path(first.model_path)
    reused = fit_variant(ws, "lstm", TINY, 5, tmp_path / "reused", init=init)
    assert [i.model for i in train._IDLE[next(iter(train._IDLE))]] == [kept.model]
    train._IDLE.clear()
    fresh = fit_variant(ws, "lstm", TINY, 5, tmp_path / "fresh", init=init)
    assert first.ok and reused.ok and fresh.ok
    assert reused.history == fresh.history
    assert reused.history["loss"] != first.history["loss"]  # it did start from init


def test_a_diverging_fit_is_recorded_not_raised(tmp_path: Path):
    frame = synthetic_prices(300)
    ws = make_windows(frame, "open", window=10, val_days=40, test_days=40)
    broken = type(ws)(**{**ws.__dict__, "scaled": np.full_like(ws.scaled, np.nan)})
    result = fit_variant(broken, "lstm", TINY, 1, tmp_path / "lstm")
    assert not result.ok and "not finite" in result.error
    assert result.model_path is None and not (tmp_path / "lstm" / "model.keras").exists()
    assert (tmp_path / "lstm" / "error.txt").exists()
    assert TrainResult.load(tmp_path / "lstm" / "result.json").error == result.error


def test_early_stopping_restores_the_best_epoch(ws, tmp_path: Path):
    cfg = TrainConfig(units=(4,), epochs=30, batch_size=32, patience=1, learning_rate=0.05)
    result = fit_variant(ws, "simple_rnn", cfg, 3, tmp_path / "s")
    assert result.ok
    assert result.epochs_run < 30  # stopped early
    assert result.best_epoch == result.epochs_run - 1  # patience 1: one epoch past the best
    # the saved model holds the best epoch's weights, not the last epoch's
    import keras

    from stockcast.train import make_dataset

    saved = keras.saving.load_model(result.model_path, compile=False)
    saved.compile(loss="mse")
    val_loss = saved.evaluate(make_dataset(ws, ws.val_idx, 32, None), verbose=0)
    assert val_loss == pytest.approx(result.best_val_loss, rel=1e-4)
    assert result.history["val_loss"][-1] > result.best_val_loss * (1 + 1e-4)
    # when it ran, for the end-to-end benchmark's overlap of fits
    assert result.fit_started <= result.fit_ended
    assert abs((result.fit_ended - result.fit_started) - result.fit_seconds) < 0.5


def test_global_scope_stacks_series_without_windows_across_them(tmp_path: Path):
    from stockcast.paths import Paths
    from stockcast.stages.train import share_global_models
    from stockcast.train import StackedWindows

    a = make_windows(synthetic_prices(300, "AAA", seed=1), "open", 10, 50, 60, "log_return")
    b = make_windows(synthetic_prices(250, "BBB", seed=2), "open", 10, 50, 60, "log_return")
    stacked = StackedWindows.stack([a, b])
    assert stacked.scaled.shape == (550, 1)
    assert len(stacked.train_idx) == len(a.train_idx) + len(b.train_idx)
    np.testing.assert_array_equal(stacked.train_idx[len(a.train_idx) :], b.train_idx + 300)
    # every window [t - 10, t) lies inside one series: B's windows start at or after row 300
    assert (stacked.train_idx[len(a.train_idx) :] - 10 >= 300).all()
    assert (stacked.train_idx[: len(a.train_idx)] < 300).all()
    # each series keeps its own scaling
    np.testing.assert_array_equal(stacked.scaled[300:], b.scaled)

    cfg = TrainConfig(units=(4,), epochs=1, patience=1, batch_size=32)
    result = fit_variant(stacked, "gru", cfg, 42, tmp_path / "models/_global/gru")
    assert result.ok and result.ticker == "_global"
    shared = share_global_models([result], ["AAA", "BBB"], Paths(tmp_path))
    assert [r.ticker for r in shared] == ["AAA", "BBB"]
    for r in shared:
        assert Path(r.model_path).read_bytes() == Path(result.model_path).read_bytes()
        assert r.best_val_loss == result.best_val_loss


def test_stacking_refuses_mismatched_windows():
    from stockcast.errors import StockcastError
    from stockcast.train import StackedWindows

    a = make_windows(synthetic_prices(300, "AAA"), "open", 10, 50, 60, "log_return")
    b = make_windows(synthetic_prices(300, "BBB"), "open", 12, 50, 60, "log_return")
    with pytest.raises(StockcastError, match="differ in window"):
        StackedWindows.stack([a, b])


def test_a_fit_past_its_time_budget_stops_and_keeps_no_model(ws, tmp_path: Path):
    cfg = TrainConfig(units=(8, 8), epochs=10_000, patience=10_000, batch_size=8)
    result = fit_variant(ws, "lstm", cfg, 42, tmp_path, ExecutionConfig(timeout_seconds=1))
    assert result.error and result.error.startswith("FitTimedOut:")
    assert "execution.timeout_seconds=1" in result.error
    assert 0 < len(result.history["loss"]) < 10_000 and result.fit_seconds < 30
    assert result.model_path is None and not (tmp_path / "model.keras").exists()
