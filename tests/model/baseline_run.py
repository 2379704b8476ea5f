"""A register stage's inputs without a fit: one synthetic ticker whose candidates are the
baseline rules, scored as the evaluate stage scores them; and a real SQLite store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stockcast import tracking
from stockcast.config import Config, config_from_dict
from stockcast.evaluate import baseline_candidates, score_candidates
from stockcast.paths import Paths
from stockcast.scores import TickerReport
from stockcast.windows import WindowSet, make_windows
from tests.conftest import synthetic_prices

# A run of clean, known code and data: what a fingerprint needs (a rerun is "already
# registered")
CLEAN = {"git_commit": "abc123", "git_dirty": "False", "params_hash": "p1", "dvc_dataset_md5": "d1"}


@dataclass
class BaselineRun:
    cfg: Config
    paths: Paths
    ws: WindowSet
    reports: dict[str, TickerReport]

    def register(self, tags: dict[str, str] | None = None, cfg: Config | None = None) -> Any:
        """The register stage's MLflow walk (:func:`stockcast.tracking.log_pipeline_run`)."""
        return tracking.log_pipeline_run(
            cfg or self.cfg,
            self.paths,
            [self.ws],
            self.reports,
            {self.ws.ticker: {}},
            tags=dict(CLEAN if tags is None else tags),
        )


def config(**sections: Any) -> Config:
    raw: dict[str, Any] = {"data": {"sources": ["x.csv"]}, "backtest": {"folds": 0}}
    raw["register"] = {"max_p_value": None}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return config_from_dict(raw)


def baseline_run(root: Path, seed: int = 0, **sections: Any) -> BaselineRun:
    from stockcast.stages.evaluate import banding

    cfg = config(**sections)
    ws = make_windows(synthetic_prices(200, "TEST", seed=seed), "open", 10, 40, 40)
    forecasts = baseline_candidates(ws, [], 5)
    scores = score_candidates(ws, [], forecasts, cfg.register.intervals, banding(cfg))
    return BaselineRun(cfg, Paths(root), ws, {"TEST": TickerReport("TEST", scores)})
