"""Bands that keep their coverage when volatility moves (:mod:`stockcast.intervals`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stockcast import intervals


def test_the_interval_score_by_hand():
    # bands [90, 110] (half-width log(110/100) above, log(100/90) below: use exact bounds)
    actual = np.array([100.0, 120.0, 80.0])
    predicted = np.array([100.0, 100.0, 100.0])
    width = np.full(3, math.log(1.1))
    lower, upper = 100 / 1.1, 110.0
    alpha = 0.2
    by_hand = [
        upper - lower,  # inside: the width only
        upper - lower + 2 / alpha * (120 - upper),  # above by 10
        upper - lower + 2 / alpha * (lower - 80),  # below
    ]
    assert intervals.winkler(actual, predicted, width, 0.8) == pytest.approx(np.mean(by_hand))


def test_realised_volatility_uses_only_the_changes_before_each_target():
    prices = np.array([100.0, 110.0, 99.0, 99.0, 1000.0])
    changes = np.diff(np.log(prices))  # changes[i] = log(p[i+1] / p[i]), known on day i+1
    got = intervals.realised_volatility(prices, np.array([3, 4]), days=2)
    # target 3 knows the changes into days 1 and 2; target 4 those into days 2 and 3, and
    # not the jump into day 4 it forecasts
    assert got[0] == pytest.approx(math.sqrt(np.mean(changes[0:2] ** 2)))
    assert got[1] == pytest.approx(math.sqrt(np.mean(changes[1:3] ** 2)))
    # a target with fewer changes before it than ``days`` uses those there are
    assert intervals.realised_volatility(prices, np.array([2]), days=5)[0] == pytest.approx(
        abs(changes[0])
    )
    flat = intervals.realised_volatility(np.full(10, 5.0), np.array([9]), days=3)
    assert flat[0] == intervals.FLOOR


def test_the_conformal_quantile_is_the_ceil_n_plus_one_level_th_score():
    scores = np.arange(1.0, 10.0)  # 9 scores
    assert intervals.conformal_quantile(scores, 0.8) == 8.0  # ceil(10 * 0.8) = 8th
    assert intervals.conformal_quantile(scores, 0.95) == math.inf  # ceil(9.5) = 10 > 9


def test_a_miss_widens_the_adaptive_band_and_a_hit_narrows_it_at_the_target_rate():
    a = 0.2
    after_miss = intervals.nudge(a, 0.8, True, 0.01)
    after_hit = intervals.nudge(a, 0.8, False, 0.01)
    assert after_miss == pytest.approx(a * math.exp(0.01 * (0.2 - 1) / 0.2))
    assert after_hit == pytest.approx(a * math.exp(0.01 * 0.2 / 0.2))
    # one miss in five at 80 %: the level comes back where it started
    alpha = a
    for missed in (True, False, False, False, False):
        alpha = intervals.nudge(alpha, 0.8, missed, 0.01)
    assert alpha == pytest.approx(a)
    assert 0 < intervals.nudge(1e-12, 0.95, True, 0.5) and intervals.nudge(0.9, 0.8, False, 50) < 1


def _regimes(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """A random walk in log price, calm (0.5 % a day) for its first 700 days, then switching
    between storm (3 %) and calm spells of 60 to 250 days; the forecast is yesterday's
    price."""
    rng = np.random.default_rng(seed)
    sigma = np.empty(n)
    sigma[:700] = 0.005  # a calm start: the span bands are first calibrated on
    t, calm = 700, False
    while t < n:
        spell = int(rng.integers(60, 250))
        sigma[t : t + spell] = 0.005 if calm else 0.03
        t, calm = t + spell, not calm
    prices = 100 * np.exp(np.cumsum(rng.normal(0, sigma)))
    return prices, sigma


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_adaptive_bands_keep_coverage_through_volatility_regimes_where_static_bands_miss(seed):
    prices, _ = _regimes(seed)
    idx = np.arange(100, len(prices))
    actual, forecast = prices[idx], prices[idx - 1]
    scale = intervals.realised_volatility(prices, idx, days=20)
    cal, live = slice(0, 500), slice(500, None)  # calibrated on the first 500 days only

    def run(method: str, gamma: float = 0.01) -> dict[str, tuple[float, np.ndarray]]:
        c = intervals.calibrate(method, actual[cal], forecast[cal], scale[cal], gamma=gamma)
        widths, _ = intervals.run_online(c, (0.8, 0.95), actual[live], forecast[live], scale[live])
        return {
            k: (float(np.mean(intervals.covered(actual[live], forecast[live], w))), w)
            for k, w in widths.items()
        }

    static, adaptive = run("static"), run("adaptive")
    for name, level in (("80", 0.8), ("95", 0.95)):
        assert abs(adaptive[name][0] - level) <= 0.02, (name, adaptive[name][0])
        # static bands miss their level by far more on the same days (in the storms)
        assert abs(static[name][0] - level) > 0.02, (name, static[name][0])
        score = {
            m: intervals.winkler(actual[live], forecast[live], r[name][1], level)
            for m, r in (("static", static), ("adaptive", adaptive))
        }
        assert score["adaptive"] < score["static"], score


def test_static_bands_are_one_width_and_scaled_ones_follow_the_volatility():
    actual = np.array([101.0, 99.0, 102.0, 97.0])
    forecast = np.full(4, 100.0)
    scale = np.array([0.01, 0.01, 0.02, 0.02])
    static = intervals.calibrate("static", actual, forecast, scale)
    scaled = intervals.calibrate("scaled", actual, forecast, scale)
    widths, after = intervals.run_online(static, (0.5,), actual, forecast, scale)
    assert np.all(widths["50"] == widths["50"][0]) and after is static
    widths, _ = intervals.run_online(scaled, (0.5,), actual, forecast, np.array([0.01, 0.04]))
    assert widths["50"][1] == pytest.approx(4 * widths["50"][0])
    with pytest.raises(ValueError, match="interval method 'wide'"):
        intervals.calibrate("wide", actual, forecast, scale)


def test_the_adaptive_state_carries_over_to_the_next_day():
    """The level after the last scored day is what the next forecast uses, so a daily job
    that keeps the calibration draws the band a run over the whole span would have drawn."""
    prices, _ = _regimes(7, 800)
    idx = np.arange(30, len(prices))
    actual, forecast = prices[idx], prices[idx - 1]
    scale = intervals.realised_volatility(prices, idx, days=20)
    cal = intervals.calibrate("adaptive", actual[:300], forecast[:300], scale[:300])
    whole, _ = intervals.run_online(cal, (0.8,), actual[300:], forecast[300:], scale[300:])
    first, state = intervals.run_online(
        cal, (0.8,), actual[300:500], forecast[300:500], scale[300:500]
    )
    rest, _ = intervals.run_online(state, (0.8,), actual[500:], forecast[500:], scale[500:])
    assert np.allclose(np.concatenate([first["80"], rest["80"]]), whole["80"])
    assert state.alpha(0.8) != 0.2  # nudged
    assert state.multiplier(0.8) * scale[500] == pytest.approx(rest["80"][0])


def test_a_served_window_sees_the_volatility_the_calibration_saw():
    """The pyfunc reads volatility from the request's window; it must equal what calibration
    and the test span read from the whole series for the same day."""
    prices, _ = _regimes(3, 400)
    ends = np.array([61, 200, 399])
    windows = np.stack([prices[end - 61 : end] for end in ends])
    got = intervals.window_volatility(windows, 59)
    assert got == pytest.approx(intervals.realised_volatility(prices, ends, 59))
    assert intervals.window_volatility(np.full((1, 61), 7.0), 20)[0] == intervals.FLOOR


def test_scored_days_nudge_a_calibration_as_the_online_run_does():
    """``after`` (the daily job replaying the ledger's hits) ends where ``run_online`` ends on
    the same rows, and survives the JSON of a model's spec or a version tag."""
    prices, _ = _regimes(5, 700)
    idx = np.arange(30, len(prices))
    actual, forecast = prices[idx], prices[idx - 1]
    scale = intervals.realised_volatility(prices, idx, days=20)
    cal = intervals.calibrate("adaptive", actual[:300], forecast[:300], scale[:300], 20, 0.02)
    widths, state = intervals.run_online(
        cal, (0.8, 0.95), actual[300:], forecast[300:], scale[300:]
    )
    replayed = cal
    for level, name in ((0.8, "80"), (0.95, "95")):
        hits = intervals.covered(actual[300:], forecast[300:], widths[name]).tolist()
        replayed = replayed.after(level, hits)
    assert replayed.alpha(0.8) == pytest.approx(state.alpha(0.8))
    assert replayed.alpha(0.95) == pytest.approx(state.alpha(0.95))
    back = intervals.Calibration.from_dict(json.loads(json.dumps(replayed.to_dict())))
    assert (back.method, back.days, back.gamma) == ("adaptive", 20, 0.02)
    assert back.alpha(0.95) == pytest.approx(replayed.alpha(0.95))
    assert back.multiplier(0.8) == pytest.approx(replayed.multiplier(0.8), rel=1e-5)
    static = intervals.calibrate("static", actual[:300], forecast[:300], scale[:300])
    assert static.after(0.8, [False] * 50) is static  # only adaptive bands are nudged
    with pytest.raises(ValueError, match="interval method 'garch'"):
        intervals.Calibration.from_dict({**back.to_dict(), "method": "garch"})


def test_no_calibration_score_is_an_unknown_band_not_an_infinite_one():
    empty = intervals.calibrate("adaptive", np.array([1.0]), np.array([np.nan]), np.ones(1))
    assert empty.scores == () and math.isnan(empty.multiplier(0.8))
    assert math.isnan(intervals.conformal_quantile(np.array([]), 0.8))
