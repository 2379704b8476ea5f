"""Score forecasts in price units against the baselines a quant tries first; draw the plots.

Baselines are rules over the same raw OHLCV window every logged model takes
(:func:`baseline_forecast`), so a baseline is scored, logged, registered and served exactly
like a network. Forecasts are compared with the Diebold-Mariano test, and prediction
intervals are split-conformal, calibrated on residuals the model was not fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stockcast.columns import OHLCV
from stockcast.scores import CandidateScores, FoldScore, SpanScores
from stockcast.windows import WindowSet

BASELINES = ("naive", "drift", "moving_average", "last_close", "seasonal_naive")

# A series' season in steps, by its usual step in days: a monthly series repeats yearly (12),
# a quarterly one too (4), a weekly one over 52 weeks. A daily price series has none.
SEASONS = ((28, 31, 12), (89, 92, 4), (7, 7, 52))


def season_of(dates: np.ndarray) -> int:
    """The season, in rows, of a series with these dates (ascending): 12 for monthly rows, 4
    for quarterly, 52 for weekly; 0 when the step says it is not seasonal (daily prices)."""
    steps = np.diff(np.asarray(dates, dtype="datetime64[D]")).astype("int64")
    if len(steps) == 0:
        return 0
    step = int(np.median(steps))
    return next((season for low, high, season in SEASONS if low <= step <= high), 0)


def baseline_rules(target: str, season: int = 0) -> tuple[str, ...]:
    """The baselines for a target: ``last_close`` is naive itself when the target is the
    close; ``seasonal_naive`` only for a seasonal series (``season`` rows, 0: none)."""
    return tuple(
        b
        for b in BASELINES
        if not (b == "last_close" and target == "close")
        and not (b == "seasonal_naive" and season <= 0)
    )


def baseline_forecast(
    rule: str, windows: np.ndarray, target: str, ma_window: int = 5, season: int = 0
) -> np.ndarray:
    """A rule's next-step forecast from raw OHLCV windows ``(n, context, 5)``, oldest first.

    naive: the target's last value. drift: the last value plus the window's average daily
    change. moving_average: the mean of the last ``ma_window`` values. last_close: the last
    close (at forecast time the day's close is known). seasonal_naive: the value one season
    (``season`` rows) back, the rule a forecaster tries first on a monthly series.
    """
    windows = np.asarray(windows, dtype="float64")
    series = windows[..., OHLCV.index(target)]  # (n, context)
    if rule == "seasonal_naive":
        if not 0 < season <= series.shape[1]:
            raise ValueError(
                f"seasonal_naive needs one season back: season {season} rows, the window "
                f"holds {series.shape[1]} (set window.window to at least the season)"
            )
        return series[:, -season]
    if rule == "naive":
        return series[:, -1]
    if rule == "drift":
        return series[:, -1] + (series[:, -1] - series[:, 0]) / max(series.shape[1] - 1, 1)
    if rule == "moving_average":
        return series[:, -min(ma_window, series.shape[1]) :].mean(axis=1)
    if rule == "last_close":
        return windows[:, -1, OHLCV.index("close")]
    raise ValueError(f"unknown baseline {rule!r}; choose one of {list(BASELINES)}")


def diebold_mariano(
    errors: np.ndarray, reference_errors: np.ndarray, horizon: int = 1
) -> tuple[float, float]:
    """Diebold-Mariano test of equal squared-error loss, with Harvey et al.'s correction.

    Args:
        errors: the model's forecast errors.
        reference_errors: the reference's (e.g. the best baseline's) on the same targets.
        horizon: forecast horizon h (autocovariances up to lag h-1).

    Returns:
        (statistic, two-sided p-value from Student's t with n-1 degrees of freedom). A
        positive statistic means the model's loss is the larger. Identical losses: (0, 1).
    """
    from scipy import stats

    d = np.asarray(errors, dtype="float64") ** 2 - np.asarray(reference_errors, "float64") ** 2
    n = len(d)
    centred = d - d.mean()
    gamma = [float(np.sum(centred[k:] * centred[: n - k]) / n) for k in range(horizon)]
    variance = (gamma[0] + 2 * sum(gamma[1:])) / n
    if n < 2 or variance <= 0:
        return 0.0, 1.0
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = correction * float(d.mean()) / math.sqrt(variance)
    return statistic, float(2 * stats.t.sf(abs(statistic), df=n - 1))


def level_name(level: float) -> str:
    """``0.8`` -> ``"80"``, ``0.975`` -> ``"97.5"``: the suffix of interval metrics."""
    return f"{level * 100:g}"


def conformal_quantiles(
    actual: np.ndarray, predicted: np.ndarray, levels: tuple[float, ...]
) -> dict[str, float]:
    """Split-conformal half-widths, in log price, from calibration residuals.

    The residual is |log(actual / forecast)|, so an interval scales with the price level (a
    series that trends to five times its calibration prices keeps its coverage). For level
    a the half-width is the ceil((n + 1) a)-th smallest residual; infinite when n is too
    small for that level.
    """
    residuals = np.sort(np.abs(np.log(np.asarray(actual) / np.asarray(predicted))))
    n = len(residuals)
    out = {}
    for level in levels:
        k = math.ceil((n + 1) * level)
        out[level_name(level)] = float(residuals[k - 1]) if 0 < k <= n else float("inf")
    return out


def interval(
    predicted: np.ndarray, half_width: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the interval ``forecast * exp(-+half_width)`` (one width, or each
    row's)."""
    predicted = np.asarray(predicted, dtype="float64")
    width = np.asarray(half_width, dtype="float64")
    return predicted * np.exp(-width), predicted * np.exp(width)


def coverage(actual: np.ndarray, predicted: np.ndarray, half_width: float | np.ndarray) -> float:
    """Share of ``actual`` inside the interval around ``predicted`` (NaN for an unknown width);
    ``half_width``: one for every row, or each row's."""
    if np.isnan(half_width).any():
        return float("nan")
    lower, upper = interval(predicted, half_width)
    actual = np.asarray(actual, dtype="float64")
    return float(np.mean((actual >= lower) & (actual <= upper)))


def ratio(value: float, reference: float) -> float:
    """``value / reference``; 1 when both are 0 (a tie with an exact baseline), else inf."""
    if reference > 0:
        return value / reference
    return 1.0 if value == reference else math.inf


def against_best_baseline(
    actual: np.ndarray, predicted: np.ndarray, baseline_forecasts: dict[str, np.ndarray]
) -> tuple[str, float, float, float]:
    """A forecast against the strongest baseline of a span (lowest RMSE on the same rows).

    Returns:
        (that baseline's name, RMSE / its RMSE, Diebold-Mariano statistic, p-value).
    """
    actual = np.asarray(actual, dtype="float64")
    best, best_rmse = best_baseline(actual, baseline_forecasts)
    error = np.asarray(predicted, dtype="float64") - actual
    stat, p_value = diebold_mariano(error, baseline_forecasts[best] - actual)
    return best, ratio(float(np.sqrt(np.mean(error**2))), best_rmse), stat, p_value


def best_baseline(
    actual: np.ndarray, baseline_forecasts: dict[str, np.ndarray]
) -> tuple[str, float]:
    """The baseline with the lowest RMSE on these rows, and that RMSE."""
    rmse = {k: regression_metrics(actual, f)["rmse"] for k, f in baseline_forecasts.items()}
    best = min(rmse, key=rmse.__getitem__)
    return best, rmse[best]


def span_scores(
    actual: np.ndarray,
    predicted: np.ndarray | None,
    previous: np.ndarray,
    scale: float | np.ndarray,
    baseline_forecasts: dict[str, np.ndarray],
) -> SpanScores:
    """A forecast's :class:`SpanScores` on one span.

    Args:
        actual: the target prices.
        predicted: the forecasts; None when the span could not be forecast (a failed fold).
        previous: the target's previous value per row (naive; directional accuracy).
        scale: MASE's in-sample naive MAE, per row or for the span.
        baseline_forecasts: every baseline's forecasts of the same rows.
    """
    if predicted is None:
        return SpanScores.missing(best_baseline(actual, baseline_forecasts)[0])
    best, versus, stat, p_value = against_best_baseline(actual, predicted, baseline_forecasts)
    return SpanScores(
        **forecast_metrics(actual, predicted, previous, scale),
        best_baseline=best,
        rmse_vs_best_baseline=versus,
        dm_stat=stat,
        dm_p_value=p_value,
    )


def forecast_metrics(
    actual: np.ndarray, predicted: np.ndarray, previous: np.ndarray, scale: float | np.ndarray
) -> dict[str, float]:
    """RMSE, MAE, MAPE, MASE (MAE over ``scale``, per row or for the span), directional
    accuracy, and naive's RMSE and MAE beside them (naive: ``previous``)."""
    actual, predicted = np.asarray(actual, "float64"), np.asarray(predicted, "float64")
    model = regression_metrics(actual, predicted)
    naive = regression_metrics(actual, previous)
    called = np.sign(predicted - previous) == np.sign(actual - previous)
    return {
        **model,
        "mase": float(np.mean(np.abs(predicted - actual) / scale)),
        "directional_accuracy": float(np.mean(called)),
        "rmse_vs_naive": ratio(model["rmse"], naive["rmse"]),
        "naive_rmse": naive["rmse"],
        "naive_mae": naive["mae"],
    }


@dataclass(frozen=True)
class CandidateForecasts:
    """One candidate's forecasts in prices: test and validation spans, each backtest fold
    (None for a fold whose model failed)."""

    kind: str  # network | baseline
    test: np.ndarray
    val: np.ndarray
    backtest: tuple[np.ndarray | None, ...] = ()


def baseline_candidates(
    ws: WindowSet, folds: list[WindowSet], ma_window: int
) -> dict[str, CandidateForecasts]:
    """Every baseline rule as a candidate, forecasting the same rows as the networks."""
    test, val = baselines(ws, ws.test_idx, ma_window), baselines(ws, ws.val_idx, ma_window)
    per_fold = [baselines(f, f.test_idx, ma_window) for f in folds]
    return {
        rule: CandidateForecasts(
            "baseline", test[rule], val[rule], tuple(fold[rule] for fold in per_fold)
        )
        for rule in test
    }


def score_candidates(
    ws: WindowSet,
    folds: list[WindowSet],
    forecasts: dict[str, CandidateForecasts],
    levels: tuple[float, ...],
    bands: Banding | None = None,
) -> dict[str, CandidateScores]:
    """Every candidate on every span against the strongest baseline of that span; prediction
    intervals (``bands``: how they follow volatility) calibrated on the selection span (the
    backtest, else validation) and drawn day by day over the test span for its coverage."""
    bands = bands or Banding()
    rules = [n for n, f in forecasts.items() if f.kind == "baseline"]
    out = {}
    for name, mine in forecasts.items():
        spans = {
            span: span_scores(
                ws.prices[idx],
                getattr(mine, span),
                ws.naive(idx),
                in_sample_naive_mae(ws),
                {r: getattr(forecasts[r], span) for r in rules},
            )
            for span, idx in (("test", ws.test_idx), ("val", ws.val_idx))
        }
        calibration = (ws.prices[ws.val_idx], mine.val)
        scale = bands.volatility(ws, ws.val_idx)
        backtest = None
        if folds:
            backtest, calibration = _pooled(folds, mine, {r: forecasts[r] for r in rules})
            scale = np.concatenate([bands.volatility(f, f.test_idx) for f in folds])
        cal = bands.calibrate(ws, *calibration, scale)
        actual = ws.prices[ws.test_idx]
        widths = drawn_bands(ws, mine.test, cal, levels)
        out[name] = CandidateScores(
            name=name,
            kind=mine.kind,
            test=spans["test"],
            val=spans["val"],
            backtest=backtest,
            folds=tuple(
                fold_score(k, fold, predicted)
                for k, (fold, predicted) in enumerate(zip(folds, mine.backtest, strict=True), 1)
                if predicted is not None
            ),
            expected_folds=len(folds),
            interval_halfwidths=conformal_quantiles(*calibration, levels),
            test_coverage={k: coverage(actual, mine.test, w) for k, w in widths.items()},
            test_interval_score={
                level_name(level): interval_score(
                    actual, mine.test, widths[level_name(level)], level
                )
                for level in levels
            },
            calibration=cal,
        )
    return out


@dataclass(frozen=True)
class Banding:
    """How prediction intervals follow volatility (:mod:`stockcast.intervals`): the method,
    the volatility window in days (capped at a model's window less one, all a served window
    holds) and the adaptive step. The default is the first bands: static split conformal."""

    method: str = "static"
    days: int = 20
    gamma: float = 0.005

    def days_for(self, ws: WindowSet) -> int:
        return max(1, min(self.days, ws.window - 1))

    def volatility(self, ws: WindowSet, idx: np.ndarray) -> np.ndarray:
        from stockcast.intervals import realised_volatility

        return realised_volatility(ws.prices, idx, self.days_for(ws))

    def calibrate(
        self, ws: WindowSet, actual: np.ndarray, predicted: np.ndarray, scale: np.ndarray
    ) -> Any:
        from stockcast.intervals import calibrate

        return calibrate(self.method, actual, predicted, scale, self.days_for(ws), self.gamma)


def interval_score(
    actual: np.ndarray, predicted: np.ndarray, half_width: np.ndarray, level: float
) -> float:
    """The mean Winkler score of the bands (:func:`stockcast.intervals.winkler`); NaN for an
    unknown band."""
    from stockcast.intervals import winkler

    if np.isnan(half_width).any() or np.isnan(predicted).any():
        return float("nan")
    return winkler(actual, predicted, half_width, level)


def drawn_bands(
    ws: WindowSet, predicted: np.ndarray, cal: Any, levels: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """The half-widths of each test row by level name, drawn day by day as the daily job does
    (an adaptive band nudged after each day's outcome)."""
    from stockcast.intervals import realised_volatility, run_online

    scale = realised_volatility(ws.prices, ws.test_idx, cal.days)
    widths, _ = run_online(cal, levels, ws.prices[ws.test_idx], predicted, scale)
    return widths


def _pooled(
    folds: list[WindowSet], mine: CandidateForecasts, base: dict[str, CandidateForecasts]
) -> tuple[SpanScores, tuple[np.ndarray, np.ndarray]]:
    """Scores over every fold's rows at once, and the (actual, forecast) calibration pair."""
    actual = np.concatenate([f.prices[f.test_idx] for f in folds])
    complete = all(p is not None for p in mine.backtest)
    predicted = np.concatenate(mine.backtest) if complete else None
    scores = span_scores(
        actual,
        predicted,
        np.concatenate([f.naive(f.test_idx) for f in folds]),
        np.concatenate([np.full(len(f.test_idx), in_sample_naive_mae(f)) for f in folds]),
        {r: np.concatenate(c.backtest) for r, c in base.items()},
    )
    missing = np.full(len(actual), np.nan)
    return scores, (actual, predicted if predicted is not None else missing)


def fold_score(k: int, fold: WindowSet, predicted: np.ndarray) -> FoldScore:
    """A fold's scores, in prices, with its own naive and in-sample scale."""
    scores = score(fold, predicted, fold.test_idx, "fold")
    return FoldScore(
        fold=k,
        mase=scores["fold_mase"],
        rmse_vs_naive=scores["fold_rmse_vs_naive"],
        rmse=scores["fold_rmse"],
        first_date=str(fold.dates[fold.test_idx[0]]),
    )


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and MAPE (percent) of ``predicted`` against ``actual``."""
    actual = np.asarray(actual, dtype="float64")
    error = np.asarray(predicted, dtype="float64") - actual
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "mape": float(np.mean(np.abs(error / actual)) * 100.0),
    }


def baselines(ws: WindowSet, idx: np.ndarray, ma_window: int = 5) -> dict[str, np.ndarray]:
    """Every baseline's forecasts for targets ``idx``, in prices, from the same raw window
    the logged models take (see :func:`baseline_forecast`)."""
    windows = ws.raw_inputs(np.asarray(idx))
    # a series with one price column (no close) has no last_close rule
    has_close = ws.ohlcv is None or not np.isnan(ws.ohlcv[:, OHLCV.index("close")]).all()
    season = ws_season(ws)
    return {
        rule: baseline_forecast(rule, windows, ws.target, ma_window, season)
        for rule in baseline_rules(ws.target, season)
        if not (rule == "last_close" and not has_close)
    }


def ws_season(ws: WindowSet) -> int:
    """The ticker's season in rows (:func:`season_of`) when its raw window reaches one season
    back, else 0 (no seasonal rule)."""
    season = season_of(ws.dates)
    return season if 0 < season <= ws.context else 0


def in_sample_naive_mae(ws: WindowSet) -> float:
    """MASE's scale: the naive forecast's MAE over the training span."""
    train = ws.prices[: int(ws.val_idx[0])]  # every row before the validation span
    return float(np.mean(np.abs(np.diff(train))))


def score(
    ws: WindowSet, predicted: np.ndarray, idx: np.ndarray, prefix: str = "test"
) -> dict[str, float]:
    """A forecast's metrics for targets ``idx``, with the naive forecast's beside them.

    Returns:
        ``<prefix>_rmse``, ``_mae``, ``_mape``, ``_mase`` (MAE over the in-sample naive MAE),
        ``_directional_accuracy`` (share of days whose up/down move is called right),
        ``_rmse_vs_naive`` (below 1 beats doing nothing), plus ``naive_rmse`` and
        ``naive_mae`` for the test span (their historical names).
    """
    idx = np.asarray(idx)
    m = forecast_metrics(ws.prices[idx], predicted, ws.naive(idx), in_sample_naive_mae(ws))
    keys = ("rmse", "mae", "mape", "mase", "directional_accuracy", "rmse_vs_naive")
    out = {f"{prefix}_{k}": m[k] for k in keys}
    if prefix == "test":
        out.update(
            naive_rmse=m["naive_rmse"], naive_mae=m["naive_mae"], rmse_vs_naive=m["rmse_vs_naive"]
        )
    else:
        out[f"{prefix}_naive_rmse"] = m["naive_rmse"]
    return out


def predict_prices(
    model: Any, ws: WindowSet, idx: np.ndarray, batch_size: int = 1024
) -> np.ndarray:
    """A Keras model's forecasts for targets ``idx``, mapped back to prices.

    ``predict_on_batch`` per ``batch_size`` rows: ``predict`` builds a ``tf.data`` pipeline on
    every call, which costs more than a span's forward pass (a call per span per ticker)."""
    inputs = ws.inputs(idx)
    scaled = np.concatenate(
        [
            np.asarray(model.predict_on_batch(inputs[start : start + batch_size]))
            for start in range(0, len(inputs), batch_size)
        ]
        or [np.empty((0, 1), dtype="float32")]
    )  # (n, 1)
    return ws.to_prices(scaled, idx)


# Plot rendering from here to the end of the module: excluded from `make mutate` (what it
# draws is checked by eye and by the files it writes, not by the fast tests).
# pragma: no mutate block
def _figure(width: float, height: float, columns: int, ratios: list[int] | None = None) -> Any:
    """A figure and its axes drawn by Agg without pyplot: no global state and no
    ``tight_layout`` pass (fixed margins), the cheap way when there is a chart per ticker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, columns, width_ratios=ratios)
    fig.subplots_adjust(left=0.06, right=0.985, top=0.9, bottom=0.17, wspace=0.18)
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def plot_candidates(
    ws: WindowSet,
    idx: np.ndarray,
    forecasts: dict[str, np.ndarray],
    kinds: dict[str, str],
    leaders: tuple[str | None, str],
    span: str,
    path: Path,
    half_widths: dict[str, np.ndarray] | None = None,
    chosen: str | None = None,
) -> Path:
    """One chart per ticker, titled by the candidate the registration rule chooses
    (``chosen``; the best network, else the best baseline, when not given): the actual prices
    over the span, every network's forecast and the strongest baseline's, the chosen one's
    prediction intervals, and beside it each network's cumulative squared error against the
    best baseline's (below zero: the network is ahead), a line of its own per network.

    Args:
        forecasts: each candidate's forecasts for ``idx``.
        kinds: each candidate's kind (network | baseline).
        leaders: (the best network, the best baseline) on ``span``, the span that chooses.
        half_widths: the banded candidate's half-widths by level name, per row of ``idx``.
        chosen: the candidate registration picks (the champion when it is promoted).
    """
    network, baseline = leaders
    fig, (ax, edge) = _figure(13, 4.5, 2, [3, 2])
    dates, actual = ws.dates[idx], ws.prices[idx]
    banded = chosen or network or baseline
    finite = {k: w for k, w in (half_widths or {}).items() if np.isfinite(w).all()}
    for shade, (name, width) in zip(
        (0.15, 0.3, 0.45), sorted(finite.items(), key=lambda kv: -np.mean(kv[1])), strict=False
    ):
        lower, upper = interval(forecasts[banded], width)
        ax.fill_between(
            dates,
            lower,
            upper,
            color="tab:red",
            alpha=shade,
            linewidth=0,
            label=f"{banded} {name}% interval",
        )
    ax.plot(dates, actual, label="actual", color="black", linewidth=1.2)
    ax.plot(
        dates,
        forecasts[baseline],
        label=f"{baseline} (best baseline)",
        color="grey",
        linewidth=0.9,
        linestyle="--",
    )
    networks = sorted(n for n, k in kinds.items() if k == "network" and n in forecasts)
    palette = ("tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")
    colors = dict(zip(networks, palette, strict=False))
    for name, color in colors.items():
        width = 1.4 if name == banded else 0.8
        ax.plot(dates, forecasts[name], label=name, color=color, linewidth=width, alpha=0.8)
    best = np.asarray(forecasts[baseline]) - actual
    for name, color in colors.items():
        ahead = np.cumsum((np.asarray(forecasts[name]) - actual) ** 2 - best**2)
        edge.plot(dates, ahead, label=name, color=color, linewidth=1.0)
    edge.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    edge.set_title(f"cumulative squared error minus {baseline}'s (< 0: ahead)", fontsize="small")
    if colors:
        edge.legend(loc="upper left", fontsize="small")
    for label in edge.get_xticklabels():
        label.set_rotation(20)
        label.set_horizontalalignment("right")
    said = f"{banded} is registered; " if chosen else ""
    ax.set_title(
        f"{ws.ticker}, test span: {said}best on {span}: network {network or 'none'}, "
        f"baseline {baseline}"
    )
    ax.set_ylabel("price")
    ax.legend(loc="upper left", fontsize="small")
    for label in ax.get_xticklabels():
        label.set_rotation(20)
        label.set_horizontalalignment("right")
    return _save(fig, path)


def plot_backtest(rows: Any, title: str, path: Path) -> Path:
    """Each variant's MASE and RMSE/naive per fold, with the line at 1 (= naive)."""
    fig, axes = _figure(12, 4, 2)
    for ax, key in zip(axes, ("mase", "rmse_vs_naive"), strict=True):
        table = rows.pivot(index="fold", columns="variant", values=key)
        table.plot.bar(ax=ax, rot=0)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{title}: {key}")
    return _save(fig, path)
