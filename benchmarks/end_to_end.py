"""End to end: ``make pipeline`` on the bundled sample from a warm ``.venv``, broken down,
against its references measured in the same run (issue 13's targets).

In a temporary copy of the project (code, params, sample; git + DVC initialised), prints:
the import cost of each heavy library (a fresh interpreter each), the Prefect server start,
the wall time of each DVC stage (from the moment DVC announces it), the model fit inside the
train stage, the orchestration overhead (wall while no model fits) and a no-op rerun.
``-S key=value`` overrides params (``-S backtest.folds=0`` for a shorter run).

The references, in the same run:
- the seed's three bare-Keras scripts at 50 epochs (``steps.seed_seconds``);
- the same params without the speed changes (``--reference``, by default the seed's network,
  batch and learning rate with every fit cold): a second pipeline run in its own copy,
  whose backtest RMSE against the best baseline each variant's must stay within 0.005 of;
- the training step in PyTorch eager (``steps.step_ratios``; skipped when torch is not
  installed: see ``benchmarks/steps.py``).

    .venv/bin/python benchmarks/end_to_end.py [-S backtest.folds=0] [--no-reference]
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
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMPORTS = ["tensorflow", "great_expectations", "mlflow", "prefect", "dvc.repo", "pandas"]


def import_seconds(module: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# The pipeline before issue 13's speed changes: the seed's network, batch and learning rate,
# every fit cold (all 12 at once, 3 at a time).
SPEED_CHANGES = [
    "train.warm_start=false",
    "train.units=[80,100]",
    "train.batch_size=64",
    "train.learning_rate=0.001",
]


def copy_project(root: Path, overrides: list[str]) -> dict[str, str]:
    from flows.server import venv_env

    for name in ("src", "flows"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    # .gitignore as a clone has it: git, DVC's walk of the work tree and a daily run's git
    # record skip the local stores (mlruns/, mlflow.db, .prefect/), which grow every run
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
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
    env["PYTHONPATH"] = str(root / "src")  # the copy's code, not the editable install's
    env = venv_env(env)  # the venv's dvc and python first on PATH
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


def pipeline(overrides: list[str]) -> dict[str, Any]:
    """One clean pipeline run in a temporary copy, then a no-op rerun: its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = copy_project(root, overrides)
        wall, stages, _ = timed_run(root, env)
        train = json.loads((root / "models/train.json").read_text())
        folds = json.loads((root / "models/backtest.json").read_text())
        metrics = json.loads((root / "reports/metrics.json").read_text())
        records = [r for t in train.values() for r in t.values()]
        records += [f for t in folds.values() for v in t.values() for f in v]
        noop_start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flows.repro"], cwd=root, env=env, check=True)
        noop = time.perf_counter() - noop_start
    return {
        "wall": wall,
        "stages": stages,
        "fits": [r["fit_seconds"] for r in records],
        "epochs": sum(r["epochs_run"] for r in records),
        "fitting": busy_seconds([(r["fit_started"], r["fit_ended"]) for r in records]),
        "noop": noop,
        "versus": {  # (ticker, variant) -> (backtest, test) RMSE over the best baseline
            (t, v): (m["backtest_rmse_vs_best_baseline"], m["test_rmse_vs_best_baseline"])
            for t, report in metrics.items()
            for v, m in report.items()
            if isinstance(m, dict) and m.get("kind") == "network"
        },
        "val": {  # (ticker, variant) -> validation RMSE over the best baseline
            (t, v): m["val_rmse_vs_best_baseline"]
            for t, report in metrics.items()
            for v, m in report.items()
            if isinstance(m, dict) and m.get("kind") == "network"
        },
        "variant_epochs": {  # variant -> epochs run over its fits (every ticker)
            v: sum(r["epochs_run"] for r in records if r["variant"] == v)
            for v in {r["variant"] for r in records}
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--import-repeats", type=int, default=3, help="fresh interpreters each")
    parser.add_argument(
        "--reference", nargs="*", default=SPEED_CHANGES, help="overrides of the reference run"
    )
    parser.add_argument("--no-reference", action="store_true", help="no reference pipeline")
    parser.add_argument("--step-epochs", type=int, default=3, help="epochs per timed step")
    args = parser.parse_args()
    if not args.skip_imports:
        print(f"| import | s (median of {args.import_repeats}, fresh interpreter) |\n|---|---|")
        for module in IMPORTS:
            seconds = import_seconds(module, args.import_repeats)
            print(f"| {module} | {seconds:.2f} |", flush=True)
    from benchmarks.steps import seed_seconds, step_ratios
    from flows.server import prefect_api

    seed = seed_seconds(args.step_epochs)
    start = time.perf_counter()
    with prefect_api():
        server = time.perf_counter() - start
    ours = pipeline(args.overrides)
    ref = None if args.no_reference else pipeline([*args.overrides, *args.reference])
    try:
        steps = step_ratios(args.step_epochs)
    except ImportError:
        steps = {}
    report(args, seed, server, ours, ref, steps)


def report(
    args: argparse.Namespace,
    seed: dict[str, float],
    server: float,
    ours: dict[str, Any],
    ref: dict[str, Any] | None,
    steps: dict[str, tuple[float, float]],
) -> None:
    wall, stages = ours["wall"], ours["stages"]
    said = args.overrides or "none (the defaults)"
    print(f"\nparams overrides: {said}; {len(ours['fits'])} fits")
    print("| part | s |\n|---|---|")
    print(f"| Prefect server start (one per run) | {server:.1f} |")
    for name, seconds in stages.items():
        print(f"| stage {name} | {seconds:.1f} |")
    overhead = wall - ours["fitting"]
    print(f"| model fit, sum over fits (they overlap) | {sum(ours['fits']):.1f} |")
    print(f"| epochs run, summed over fits | {ours['epochs']} |")
    print(f"| model fit, wall time while any fit ran | {ours['fitting']:.1f} |")
    print(f"| **total wall** | **{wall:.1f}** |")
    print(f"| everything but the train stage | {wall - stages.get('train', 0.0):.1f} |")
    print(f"| orchestration overhead: wall while no model was fitting | {overhead:.1f} |")
    print(f"| no-op rerun | {ours['noop']:.2f} |")
    seeds = sum(seed.values())
    print(f"| the seed's three bare-Keras scripts at 50 epochs (estimated) | {seeds:.1f} |")
    if not ref:
        print("\n| ticker/variant | backtest vs best baseline | test |\n|---|---|---|")
        for key, (back, test) in ours["versus"].items():
            print(f"| {'/'.join(key)} | {back:.4f} | {test:.4f} |")
    if ref:
        print(f"| reference run ({' '.join(args.reference)}): total wall | {ref['wall']:.1f} |")
        print(f"| reference run: epochs run, summed over fits | {ref['epochs']} |")
        print(f"| reference run: stage train | {ref['stages'].get('train', 0.0):.1f} |")
        print(f"| reference run: overhead | {ref['wall'] - ref['fitting']:.1f} |")
        print("\n| ticker/variant | backtest vs best baseline: ours | reference | difference "
              "| test: ours | reference |\n|---|---|---|---|---|---|")  # fmt: skip
        for key, (back, test) in ours["versus"].items():
            rb, rt = ref["versus"].get(key, (float("nan"), float("nan")))
            print(f"| {'/'.join(key)} | {back:.4f} | {rb:.4f} | {back - rb:+.4f} "
                  f"| {test:.4f} | {rt:.4f} |")  # fmt: skip
    if steps:
        print("\n| variant | pipeline Keras s/epoch | PyTorch eager s/epoch | Keras / PyTorch |")
        print("|---|---|---|---|")
        for variant, (k, t) in steps.items():
            print(f"| {variant} | {k:.3f} | {t:.3f} | {k / t:.2f} |")
    print("\n| target | figure | met |\n|---|---|---|")
    rows = [
        ("1. total wall <= 150 s", f"{wall:.0f} s", wall <= 150),
        ("1. <= 0.5x the seed's scripts", f"{wall / seeds:.2f}x of {seeds:.0f} s",
         wall <= 0.5 * seeds),
        ("3. overhead <= 20 s", f"{overhead:.0f} s", overhead <= 20),
        ("4. no-op <= 3 s", f"{ours['noop']:.1f} s", ours["noop"] <= 3),
    ]  # fmt: skip
    if ref:
        worst = max(b - ref["versus"][k][0] for k, (b, _) in ours["versus"].items())
        rows.insert(2, ("2. backtest vs best baseline within +0.005 of the reference",
                        f"worst {worst:+.4f}", worst <= 0.005))  # fmt: skip
        speed_up = ref["wall"] / wall
        rows.insert(1, ("faster than the reference run", f"{speed_up:.2f}x", speed_up > 1))
    for variant, (k, t) in steps.items():
        rows.append((f"5. {variant} step <= PyTorch eager", f"{k / t:.2f}x", k <= t))
    for name, figure, met in rows:
        print(f"| {name} | {figure} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    main()
