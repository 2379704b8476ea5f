"""Where a run came from: the git commit, the parameters' hash and the DVC hashes of its data."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml

from stockcast.config import Config

# What a run writes into tracked files itself: DVC's record of the stages and the
# .gitignore entries DVC adds for their outputs. Changes there do not make the code dirty.
RUN_WRITTEN = (":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")


def git_revision(root: Path) -> tuple[str, bool]:
    """The commit checked out at ``root`` and whether tracked files differ from it.

    ``dvc.lock`` and ``.gitignore`` files are left out of "dirty": the pipeline run being
    recorded writes them itself (its data hashes are tagged separately).
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *RUN_WRITTEN],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sha, bool(dirty.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def lineage_tags(cfg: Config, root: Path) -> dict[str, str]:
    """Tags tracing a run to its exact code, parameters and data.

    ``git_commit`` / ``git_dirty``, ``params_hash`` (of the effective parameters) and the DVC
    hashes of the datasets in ``dvc.lock`` (``dvc_dataset_md5``, ``dvc_ingested_md5``).
    """
    sha, dirty = git_revision(root)
    return {
        "git_commit": sha,
        "git_dirty": str(dirty),
        "params_hash": cfg.digest(),
        **dvc_lineage(root),
        **train_start_tags(root),
    }


def train_start_tags(root: Path) -> dict[str, str]:
    """How the models were trained: ``train_start`` warm (continuing the last run's networks,
    ``continued_from_models``: the DVC hash of the ``models/`` it continued) or cold, and why
    (:mod:`stockcast.continuation`)."""
    from stockcast.continuation import read_record

    record = read_record(root / "models")
    if record is None:
        return {}
    tags = {
        "train_start": "warm" if record.get("warm") else "cold",
        "train_start_reason": str(record.get("reason", ""))[:250],
    }
    if record.get("warm") and record.get("continued_from"):
        tags["continued_from_models"] = str(record["continued_from"])
    return tags


# The DVC hashes (JSON: path -> hash) of the datasets below a running pipeline run has made and
# not yet recorded in dvc.lock, which it writes once its stages end (flows.plan).
FRESH_OUTS = "STOCKCAST_DVC_OUTS"
# The datasets a run's lineage names: tag -> (the dvc.yaml stage, its output)
DATASETS = {
    "dvc_dataset_md5": ("window", "data/processed"),
    "dvc_ingested_md5": ("ingest", "data/interim/ingested.parquet"),
}


def dvc_lineage(root: Path) -> dict[str, str]:
    """The DVC hashes of the datasets a run trained on: from the running pipeline run when
    it has just made them (:data:`FRESH_OUTS`), else from ``dvc.lock``.

    ``dvc_dataset_md5`` is the windowed dataset the models were fitted on (``data/processed``);
    ``dvc_ingested_md5`` the canonical table it came from. ``dvc checkout`` of a commit whose
    ``dvc.lock`` holds these hashes restores exactly that data.
    """
    import json

    lock = root / "dvc.lock"
    stages = {}
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    fresh = json.loads(os.environ.get(FRESH_OUTS) or "{}")
    tags = {}
    for tag, (stage, path) in DATASETS.items():
        for out in stages.get(stage, {}).get("outs", []):
            if out.get("path") == path and out.get("md5"):
                tags[tag] = out["md5"]
        if fresh.get(path):
            tags[tag] = fresh[path]
    return tags


PIPELINE_STARTED = "STOCKCAST_PIPELINE_STARTED_MS"  # when this pipeline run began (Unix ms)


def mark_pipeline_started() -> None:
    """Record, for this process and the stages it starts, that a pipeline run begins now."""
    os.environ[PIPELINE_STARTED] = str(int(time.time() * 1000))


def pipeline_started() -> int | None:
    """When the running pipeline run began (Unix ms), if a pipeline run said so."""
    started = os.environ.get(PIPELINE_STARTED, "")
    return int(started) if started.isdigit() else None
