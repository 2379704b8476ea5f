"""What the logged pyfunc refuses and what it answers: no forecast for what cannot be price
windows, each refusal naming window, day and column; bands always nested and ordered."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockcast.serving import PriceForecaster, forecast_frame, window_problem

CONTEXT = 11


def _rule(tmp_path, rule: str = "last_close", widths=None, **more) -> PriceForecaster:
    spec = {
        "kind": "baseline",
        "input": "ohlcv",
        "window": 10,
        "context": CONTEXT,
        "target": "open",
        "intervals": widths or {"80": 0.01, "95": 0.02},
        "rule": rule,
        "ma_window": 5,
        **more,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    model = PriceForecaster()
    model.load_context(type("Context", (), {"artifacts": {"spec": str(path)}})())
    return model


def _window(days: int = CONTEXT) -> np.ndarray:
    close = np.linspace(100, 110, days)
    return np.column_stack([close - 0.5, close + 1, close - 1, close, np.full(days, 1e5)])


def _refusal(model: PriceForecaster, window: np.ndarray) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as refused:
        model.predict(None, window)
    assert refused.value.get_http_status_code() == 400
    return refused.value.message


@pytest.mark.parametrize(
    ("day", "column", "value", "message"),
    [
        (10, 0, -5.0, "window 1 of 1, day 11 of 11 (the newest), column open: -5.0 is not a "
                      "price: prices must be above 0"),
        (3, 3, 0.0, "window 1 of 1, day 4 of 11, column close: 0.0 is not a price"),
        (2, 3, np.nan, "window 1 of 1, day 3 of 11, column close: nan is missing or not a finite"),
        (0, 0, np.inf, "window 1 of 1, day 1 of 11, column open: inf is missing or not a finite"),
        (5, 2, 1e6, "window 1 of 1, day 6 of 11, column high: "),
        (7, 4, -1.0, "window 1 of 1, day 8 of 11, column volume: -1.0 is negative"),
    ],
)  # fmt: skip
def test_a_window_that_cannot_be_prices_is_refused_naming_day_and_column(
    tmp_path, day, column, value, message
):
    window = _window()
    window[day, column] = value
    assert _refusal(_rule(tmp_path), window).startswith(message)


def test_every_price_minus_five_is_refused_and_the_count_is_given(tmp_path):
    said = _refusal(_rule(tmp_path), np.full((CONTEXT, 5), -5.0))
    assert said == (
        "window 1 of 1, day 1 of 11, column open: -5.0 is not a price: prices must be above 0 "
        "(10 more value(s) like it)"
    )


def test_a_high_below_the_low_is_refused(tmp_path):
    window = _window()
    window[4, 1] = window[4, 2] - 1  # high under low
    assert "day 5 of 11, column high: " in _refusal(_rule(tmp_path), window)
    assert _refusal(_rule(tmp_path), window).endswith("is below that day's low")


@pytest.mark.parametrize("shape", [(CONTEXT - 1, 5), (CONTEXT, 4), (2, CONTEXT, 6), (5,)])
def test_a_wrong_shape_or_too_few_days_is_refused_with_the_shape_expected(tmp_path, shape):
    said = _refusal(_rule(tmp_path), np.ones(shape))
    assert said.startswith("expected input of shape (n, 11, 5): the last 11 days' open, high")
    assert said.endswith(f"got {(1, *shape) if len(shape) == 2 else shape}")


def test_text_is_refused_as_not_numbers(tmp_path):
    assert _refusal(_rule(tmp_path), [["a"] * 5] * CONTEXT).startswith("input is not numbers")


def test_a_column_the_model_never_reads_may_be_empty(tmp_path):
    window = _window()
    window[:, 4] = np.nan  # no volume: last_close reads open and close
    assert window_problem(window[None], ["open", "close"]) is None
    out = _rule(tmp_path).predict(None, window)
    assert out["forecast"].iloc[0] == pytest.approx(window[-1, 3])


def test_a_valid_window_is_forecast(tmp_path):
    out = _rule(tmp_path).predict(None, _window())
    assert list(out.columns) == ["forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
    assert out["forecast"].iloc[0] == pytest.approx(110.0)


prices = st.floats(0.01, 1e6, allow_nan=False, allow_infinity=False)
widths = st.floats(0.0, 2.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=5),
    w80=widths,
    w95=widths,
)
def test_bands_are_nested_and_ordered_for_any_forecast_and_widths(points, w80, w95):
    out = forecast_frame(np.array(points), {"95": w95, "80": w80})
    assert (out["lower_95"] <= out["lower_80"]).all()
    assert (out["lower_80"] <= out["forecast"]).all()
    assert (out["forecast"] <= out["upper_80"]).all()
    assert (out["upper_80"] <= out["upper_95"]).all()


@settings(max_examples=60, deadline=None)
@given(
    base=prices,
    moves=st.lists(st.floats(-0.2, 0.2), min_size=CONTEXT, max_size=CONTEXT),
    rule=st.sampled_from(["naive", "drift", "moving_average", "last_close"]),
    w80=widths,
    w95=widths,
)
def test_a_random_valid_window_gets_ordered_bands_from_every_rule(
    tmp_path_factory, base, moves, rule, w80, w95
):
    close = base * np.exp(np.cumsum(moves))
    window = np.column_stack([close, close * 1.01, close * 0.99, close, np.full(CONTEXT, 10.0)])
    model = _rule(tmp_path_factory.mktemp("rule"), rule, {"80": w80, "95": w95})
    out = model.predict(None, window).iloc[0]
    assert out["lower_95"] <= out["lower_80"] <= out["forecast"]
    assert out["forecast"] <= out["upper_80"] <= out["upper_95"]


def _calibrated(tmp_path, method: str) -> PriceForecaster:
    from stockcast.intervals import Calibration

    cal = Calibration(method, tuple(np.linspace(0.1, 2.0, 99)), days=10, gamma=0.02)
    return _rule(tmp_path, calibration=cal.to_dict())


@pytest.mark.parametrize("method", ["scaled", "adaptive"])
def test_a_calibrated_model_draws_each_window_its_own_band_from_its_volatility(tmp_path, method):
    """A stormy window gets a wider band than a calm one, by the ratio of their realised
    volatilities: the band is the calibration quantile times the window's own volatility."""
    from stockcast.intervals import window_volatility

    model = _calibrated(tmp_path, method)
    rng = np.random.default_rng(1)
    calm = 100 * np.exp(np.cumsum(rng.normal(0, 0.005, CONTEXT)))
    storm = 100 * np.exp(np.cumsum(rng.normal(0, 0.04, CONTEXT)))
    windows = np.stack(
        [np.column_stack([p, p * 1.01, p * 0.99, p, np.full(CONTEXT, 10.0)]) for p in (calm, storm)]
    )
    out = model.predict(None, windows)
    width = np.log(out["upper_80"] / out["forecast"]).to_numpy()
    sigma = window_volatility(windows[..., 0], 10)
    assert width == pytest.approx(model.calibration.multiplier(0.8) * sigma)
    assert width[1] > 3 * width[0]
    assert (out["lower_95"] <= out["lower_80"]).all() and (out["upper_80"] <= out["upper_95"]).all()


def test_a_model_logged_with_fixed_widths_still_serves_them(tmp_path):
    model = _rule(tmp_path, "last_close", {"80": 0.01, "95": 0.02})
    assert model.calibration is None
    out = model.predict(None, _window()).iloc[0]
    assert np.log(out["upper_95"] / out["forecast"]) == pytest.approx(0.02)
