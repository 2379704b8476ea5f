"""Typed evaluation results: what evaluate hands to register, the summary and the flows.

``reports/metrics.json`` and the MLflow metrics are flat (``test_rmse``, ``backtest_dm_p_value``,
``interval_halfwidth_80`` ...); this module is the only place that knows those names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def selection_span(folds: int) -> str:
    """The span that chooses and gates registration: the walk-forward backtest when there
    are ``folds``, else validation; never the test span."""
    return "backtest" if folds else "val"


SPANS = ("test", "val", "backtest")
NAN = float("nan")


@dataclass(frozen=True)
class SpanScores:
    """A forecast's scores on one span, in prices, beside the baselines on the same rows."""

    rmse: float
    mae: float
    mape: float
    mase: float  # MAE over the in-sample naive MAE: reported, never a default gate
    directional_accuracy: float
    rmse_vs_naive: float
    naive_rmse: float
    naive_mae: float
    best_baseline: str  # the baseline with the lowest RMSE on this span
    rmse_vs_best_baseline: float
    dm_stat: float  # Diebold-Mariano against the best baseline; > 0: this forecast is worse
    dm_p_value: float

    @classmethod
    def missing(cls, best_baseline: str = "") -> SpanScores:
        """A span that could not be scored (a failed backtest fold)."""
        values = {f.name: NAN for f in fields(cls)}
        return cls(**{**values, "best_baseline": best_baseline})

    @property
    def complete(self) -> bool:
        return math.isfinite(self.rmse)


@dataclass(frozen=True)
class FoldScore:
    """One walk-forward fold's scores (its own naive and in-sample scale)."""

    fold: int
    mase: float
    rmse_vs_naive: float
    rmse: float
    first_date: str


@dataclass(frozen=True)
class CandidateScores:
    """A candidate (a network or a baseline rule) of one ticker, scored on every span.

    ``backtest`` pools every fold's rows (None without folds). ``interval_halfwidths`` are the
    static split-conformal half-widths in log price by level name (``"80"``), calibrated on
    the selection span; ``test_coverage`` is the share of test prices inside the bands the
    configured method (``calibration``) draws day by day.
    """

    name: str
    kind: str  # network | baseline
    test: SpanScores
    val: SpanScores
    backtest: SpanScores | None = None
    folds: tuple[FoldScore, ...] = ()
    expected_folds: int = 0
    interval_halfwidths: dict[str, float] = field(default_factory=dict)
    test_coverage: dict[str, float] = field(default_factory=dict)
    # the mean interval (Winkler) score of those bands over the test span, in price (lower is
    # better: a band that covers by being needlessly wide pays for its width)
    test_interval_score: dict[str, float] = field(default_factory=dict)
    # the bands' calibration (stockcast.intervals.Calibration); kept beside the metrics, in
    # reports/calibration.json, not among them
    calibration: Any = field(default=None, compare=False)

    def on(self, span: str) -> SpanScores:
        """The scores of ``test``, ``val`` or ``backtest`` (missing when not scored)."""
        scores = getattr(self, span)
        return scores if scores is not None else SpanScores.missing()

    @property
    def selection_span(self) -> str:
        return selection_span(self.expected_folds)

    def fold_mean(self, key: str) -> float:
        """Mean of a fold metric; NaN unless every expected fold was scored."""
        if not self.expected_folds or len(self.folds) != self.expected_folds:
            return NAN
        return sum(getattr(f, key) for f in self.folds) / len(self.folds)

    def fold_std(self, key: str) -> float:
        mean = self.fold_mean(key)
        if math.isnan(mean):
            return NAN
        return math.sqrt(sum((getattr(f, key) - mean) ** 2 for f in self.folds) / len(self.folds))

    def flat(self) -> dict[str, Any]:
        """The flat metrics of ``reports/metrics.json`` and of the candidate's MLflow run."""
        out: dict[str, Any] = {"kind": self.kind}
        for span in SPANS:
            scores = getattr(self, span)
            if scores is not None:
                out.update({f"{span}_{k}": v for k, v in asdict(scores).items()})
        out.update(  # their historical names
            rmse_vs_naive=self.test.rmse_vs_naive,
            naive_rmse=self.test.naive_rmse,
            naive_mae=self.test.naive_mae,
        )
        if self.expected_folds:
            out["backtest_folds"] = float(len(self.folds))
            for key in ("mase", "rmse_vs_naive", "rmse"):
                out[f"backtest_{key}_mean"] = self.fold_mean(key)
                out[f"backtest_{key}_std"] = self.fold_std(key)
        for level, width in self.interval_halfwidths.items():
            out[f"interval_halfwidth_{level}"] = width
            out[f"test_coverage_{level}"] = self.test_coverage[level]
            if level in self.test_interval_score:
                out[f"test_interval_score_{level}"] = self.test_interval_score[level]
        return out

    def line(self, ticker: str) -> str:
        """One line for the evaluate log: the test span against its best baseline, then the
        span that chooses (the backtest, else validation) against its own; a span that could
        not be scored says so rather than printing "nan"."""

        def versus(scores: SpanScores) -> str:
            if not math.isfinite(scores.rmse_vs_best_baseline):
                return "not scored"
            return f"{scores.rmse_vs_best_baseline:.4f}x {scores.best_baseline}"

        test, span = self.test, self.selection_span
        p_value = f" (DM p={test.dm_p_value:.3g})" if math.isfinite(test.dm_p_value) else ""
        return (
            f"{ticker}/{self.name} ({self.kind}): test_rmse {test.rmse:.3f} = {versus(test)}"
            f"{p_value}; {span} {versus(self.on(span))}"
        )

    def to_json(self) -> dict[str, Any]:
        folds = [asdict(f) for f in self.folds]
        return {**self.flat(), "folds": folds, "backtest_expected_folds": self.expected_folds}

    @classmethod
    def from_json(cls, name: str, raw: dict[str, Any]) -> CandidateScores:
        def span(prefix: str) -> SpanScores | None:
            if f"{prefix}_rmse" not in raw:
                return None
            return SpanScores(**{f.name: raw[f"{prefix}_{f.name}"] for f in fields(SpanScores)})

        widths = {
            k.removeprefix("interval_halfwidth_"): v
            for k, v in raw.items()
            if k.startswith("interval_halfwidth_")
        }
        folds = tuple(FoldScore(**f) for f in raw.get("folds", []))
        return cls(
            name=name,
            kind=raw["kind"],
            test=span("test"),
            val=span("val"),
            backtest=span("backtest"),
            folds=folds,
            expected_folds=int(raw.get("backtest_expected_folds", len(folds))),
            interval_halfwidths=widths,
            test_coverage={k: raw[f"test_coverage_{k}"] for k in widths},
            test_interval_score={
                k: raw[f"test_interval_score_{k}"]
                for k in widths
                if f"test_interval_score_{k}" in raw
            },
        )


@dataclass(frozen=True)
class TickerReport:
    """Every candidate of one ticker, and the networks whose training failed."""

    ticker: str
    candidates: dict[str, CandidateScores]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def baselines(self) -> dict[str, float]:
        """Each baseline's test-span RMSE, MAE and MASE (``naive_rmse`` ...), flat."""
        out = {}
        for name, c in self.candidates.items():
            if c.kind == "baseline":
                out.update({f"{name}_rmse": c.test.rmse, f"{name}_mae": c.test.mae})
                out[f"{name}_mase"] = c.test.mase
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"baselines": self.baselines}
        out.update({v: {"error": e} for v, e in self.errors.items()})
        out.update({name: c.to_json() for name, c in self.candidates.items()})
        return out

    @classmethod
    def from_json(cls, ticker: str, raw: dict[str, Any]) -> TickerReport:
        entries = {k: v for k, v in raw.items() if k != "baselines"}
        return cls(
            ticker=ticker,
            candidates={
                k: CandidateScores.from_json(k, v) for k, v in entries.items() if "kind" in v
            },
            errors={k: v["error"] for k, v in entries.items() if "error" in v},
        )
