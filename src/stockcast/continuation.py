"""Warm or cold: whether a train stage continues yesterday's networks or starts again.

A **warm** run fits only each variant's main model, starting from the weights the last run
left in ``models/`` and trained to early stopping on the span extended by the new rows; the
walk-forward fold models (and their ``backtest.json`` records) are carried over from the
last cold run. They never saw a row after their own training span, so scoring them on
today's (one row later) fold windows leaks nothing; they are as old as the last cold day.

A run is **cold** (every fold refitted from scratch, as a clean clone's first ``make
pipeline``) when any of these holds:

- there is no record of a last run, or a model it names is missing;
- the code the train stage runs or a model-shaping parameter changed since (a digest of
  the ``.py`` dependencies of the ``train`` stage in ``dvc.yaml`` and of the ``base``,
  ``data.target``, ``window``, ``backtest``, ``features`` and ``train`` params);
- no ticker has more rows than last time (a forced rerun reproduces, it does not continue),
  or the tickers changed;
- ``train.cold_every`` runs in a row were warm (0: never warm);
- the run was asked to (``STOCKCAST_TRAIN_COLD``, set by the daily job on drift or decay);
  checked first.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from stockcast.config import Config

RECORD = "continuation.json"  # in models/: the plan the models there were made by
COLD_ENV = "STOCKCAST_TRAIN_COLD"  # a reason: the next train stage starts cold


@dataclass(frozen=True)
class Plan:
    """How this run trains. ``warm_days``: warm runs in a row, this one included (0: cold).
    ``continued_from``: the DVC hash of the ``models/`` it continued (warm only)."""

    warm: bool
    reason: str
    digest: str
    rows: dict[str, int]
    warm_days: int = 0
    continued_from: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def shaping_digest(cfg: Config, root: Path) -> str:
    """A hash of what shapes a network: the train stage's code and the params that decide
    the windows and the fit."""
    parts = [
        json.dumps(
            {
                "seed": cfg.seed,
                "target": cfg.data.target,
                "window": cfg.window,
                "backtest": cfg.backtest,
                "features": cfg.features,
                "train": cfg.train,
            },
            sort_keys=True,
            default=lambda o: o.__dict__,
        )
    ]
    for dep in code_deps(root):
        path = root / dep
        parts.append(
            f"{dep}:{hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else '-'}"
        )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def code_deps(root: Path) -> list[str]:
    """The ``.py`` files ``dvc.yaml`` names as the train stage's dependencies."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.exists():
        return []
    stage = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    deps = (stage.get("train") or {}).get("deps") or []
    return sorted(d for d in deps if isinstance(d, str) and d.endswith(".py"))


def read_record(models: Path) -> dict[str, Any] | None:
    try:
        return json.loads((models / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def models_md5(root: Path) -> str:
    """The DVC hash of ``models/`` as ``dvc.lock`` records it (the last committed run)."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return ""
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    for out in (stages.get("train") or {}).get("outs", []):
        if out.get("path") == "models":
            return str(out.get("md5", ""))
    return ""


def decide(
    cfg: Config,
    root: Path,
    rows: dict[str, int],
    previous: dict[str, Any] | None,
    models_present: bool,
    forced: str | None = None,
) -> Plan:
    """This run's plan (see the module docstring for the rules, in their order)."""
    digest = shaping_digest(cfg, root)

    def cold(reason: str) -> Plan:
        return Plan(False, reason, digest, rows)

    if forced:
        return cold(forced)
    if previous is None:
        return cold("no earlier run to continue")
    if not models_present:
        return cold("a model the last run made is missing")
    if previous.get("digest") != digest:
        return cold("the train stage's code or a model-shaping param changed")
    before = previous.get("rows", {})
    if set(before) != set(rows):
        return cold(f"the tickers changed ({sorted(before)} -> {sorted(rows)})")
    if not any(rows[t] > before[t] for t in rows):
        return cold("no new rows since the last run: a rerun starts cold and reproduces")
    if any(rows[t] < before[t] for t in rows):
        return cold("a ticker has fewer rows than last run")
    if cfg.train.cold_every == 0:
        return cold("train.cold_every is 0: every run is cold")
    warm_days = int(previous.get("warm_days", 0)) + 1
    if warm_days >= cfg.train.cold_every:
        return cold(f"train.cold_every: {cfg.train.cold_every} runs since the last cold one")
    continued = models_md5(root)
    return Plan(True, "continuing the last run's networks", digest, rows, warm_days, continued)


def forced_reason() -> str | None:
    return os.environ.get(COLD_ENV) or None
