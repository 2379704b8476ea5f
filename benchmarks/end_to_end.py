"""End to end: ``make pipeline`` on the bundled sample from a warm ``.venv``, broken down.

In a temporary copy of the project (code, params, sample; git + DVC initialised), prints:
the import cost of each heavy library (a fresh interpreter each, median of 3), the Prefect
server start, the wall time of each DVC stage (from the moment DVC announces it), the model
fit inside the train stage, the orchestration overhead (wall while no model fits) and a no-op
rerun. ``-S key=value`` overrides params (``-S backtest.folds=0`` for a shorter run).

    .venv/bin/python benchmarks/end_to_end.py [-S backtest.folds=0] [-S train.epochs=5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
IMPORTS = ["tensorflow", "great_expectations", "mlflow", "prefect", "dvc.repo", "pandas"]


def import_seconds(module: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_project(root: Path, overrides: list[str]) -> dict[str, str]:
    for name in ("src", "flows"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, root / name)
    (root / "data/raw").mkdir(parents=True)
    shutil.copy2(ROOT / "data/raw/SH600519.csv", root / "data/raw/SH600519.csv")
    params = yaml.safe_load((root / "params.yaml").read_text())
    for item in overrides:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        params[section][name] = yaml.safe_load(value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(root / ".prefect"), DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    return env


def timed_run(root: Path, env: dict[str, str]) -> tuple[float, dict[str, float], str]:
    """Run ``python -m flows.repro``; wall time and each stage's wall from DVC's output."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.repro"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marks: list[tuple[str, float]] = []
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if m := re.search(r"Running stage '(\w+)'", line):
            marks.append((m.group(1), time.perf_counter()))
    proc.wait()
    end = time.perf_counter()
    stages = {}
    for (name, at), nxt in zip(marks, [*(t for _, t in marks[1:]), end], strict=True):
        stages[name] = nxt - at
    if proc.returncode:
        raise SystemExit("".join(lines[-40:]))
    return end - start, stages, "".join(lines)


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` spans: the time at least one fit ran."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--import-repeats", type=int, default=3, help="fresh interpreters each")
    args = parser.parse_args()
    if not args.skip_imports:
        print(f"| import | s (median of {args.import_repeats}, fresh interpreter) |\n|---|---|")
        for module in IMPORTS:
            seconds = import_seconds(module, args.import_repeats)
            print(f"| {module} | {seconds:.2f} |", flush=True)
    from flows.server import prefect_api

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = copy_project(root, args.overrides)
        start = time.perf_counter()
        with prefect_api():
            server = time.perf_counter() - start
        wall, stages, _ = timed_run(root, env)
        train = json.loads((root / "models/train.json").read_text())
        folds = json.loads((root / "models/backtest.json").read_text())
        records = [r for t in train.values() for r in t.values()]
        records += [f for t in folds.values() for v in t.values() for f in v]
        fits = [r["fit_seconds"] for r in records]
        fitting = busy_seconds([(r["fit_started"], r["fit_ended"]) for r in records])
        noop_start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flows.repro"], cwd=root, env=env, check=True)
        noop = time.perf_counter() - noop_start
    print(f"\nparams overrides: {args.overrides or 'none (the defaults)'}; {len(fits)} fits")
    print("| part | s |\n|---|---|")
    print(f"| Prefect server start (one per run) | {server:.1f} |")
    for name, seconds in stages.items():
        print(f"| stage {name} | {seconds:.1f} |")
    fit_wall = stages.get("train", 0.0)
    overhead = wall - fitting
    print(f"| model fit, sum over fits (they overlap) | {sum(fits):.1f} |")
    print(f"| model fit, wall time while any fit ran | {fitting:.1f} |")
    print(f"| **total wall** | **{wall:.1f}** |")
    print(f"| everything but the train stage | {wall - fit_wall:.1f} |")
    print(f"| orchestration overhead: wall while no model was fitting | {overhead:.1f} |")
    print(f"| no-op rerun | {noop:.2f} |")
    print(f"\ntargets: total <= 150 s: {wall:.0f} s ({wall / 150:.2f}x); ", end="")
    print(f"overhead <= 20 s: {overhead:.0f} s; no-op <= 5 s: {noop:.1f} s")


if __name__ == "__main__":
    main()
