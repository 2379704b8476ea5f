"""Replay the daily job: the bundled file cut ``--days`` trading days short, one cold pipeline
run, then one row appended per day and the daily retrain flow run, as the schedule would.

In a temporary copy of the project (git + DVC initialised) with one Prefect server for the
whole replay (as a served deployment has), prints per day: wall time, fits run, warm or
cold (and why), the champion's version and variant, the forecast made for the next day
with its 80 % band, the realised value of the day's own forecast and its hits. At the end:
the mean day's wall time against the cold run measured here, the ledger rows scored, live
80/95 % coverage and RMSE against ``last_close`` over the replay, and the registry versions
added.

    .venv/bin/python benchmarks/replay.py [--days 20] [-S train.cold_every=5]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.end_to_end import copy_project  # noqa: E402

BIN = Path(sys.executable).parent


def run(
    cmd: list[str], root: Path, env: dict[str, str], logs: Path | None = None
) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("run-*.log")))
        (logs / f"run-{n:02d}.log").write_text(f"{cmd}\n{wall:.1f} s\n{proc.stdout}{proc.stderr}")
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return wall, proc.stdout


def fits_since(root: Path, since: float) -> int:
    """Fits whose record says they ended after ``since`` (Unix time)."""
    n = 0
    for name in ("train.json", "backtest.json"):
        path = root / "models" / name
        if not path.exists():
            continue
        for variants in json.loads(path.read_text()).values():
            for rec in variants.values():
                for r in rec if isinstance(rec, list) else [rec]:
                    n += r.get("fit_ended", 0) > since
    return n


def main_fits(root: Path) -> dict[str, dict[str, float]]:
    """variant -> its main model's best validation loss and epochs run, from ``train.json``."""
    path = root / "models" / "train.json"
    out: dict[str, dict[str, float]] = {}
    for variants in json.loads(path.read_text()).values():
        for variant, rec in variants.items():
            if isinstance(rec, dict) and rec.get("best_val_loss") is not None:
                out[variant] = {"val": rec["best_val_loss"], "epochs": rec.get("epochs_run", 0)}
    return out


def versions(root: Path, env: dict[str, str]) -> int:
    code = (
        "from mlflow import MlflowClient; import sys;"
        f"c = MlflowClient(tracking_uri='sqlite:///{root}/mlflow.db');"
        "print(len(c.search_model_versions(\"name LIKE 'stockcast-%'\")))"
    )
    return int(
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    )


def ledger(root: Path, env: dict[str, str], summary: bool = False) -> list[dict[str, str]]:
    cmd = [str(BIN / "stockcast"), "ledger", *(["--summary"] if summary else [])]
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=True)
    return list(csv.DictReader(io.StringIO(out.stdout)))


def champion(root: Path) -> str:
    registry = json.loads((root / "reports/registry.json").read_text())
    d = next(iter(registry.values()))
    live = "champion" if d.get("promote") else "not promoted"
    return f"v{d['version']} {d['variant']} ({live})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    parser.add_argument("--logs", type=Path, help="keep each run's output here (day-N.log)")
    parser.add_argument("--keep", type=Path, help="replay in this new folder and leave it there")
    args = parser.parse_args(argv)
    from flows.server import prefect_api

    with tempfile.TemporaryDirectory() as tmp, prefect_api() as api:
        root = Path(tmp)
        if args.keep:
            args.keep.mkdir(parents=True)
            root = args.keep.resolve()
        env = copy_project(root, args.overrides)
        env["PREFECT_API_URL"] = api
        raw = root / "data/raw/SH600519.csv"
        lines = raw.read_text().splitlines()
        header, rows = lines[0], lines[1:]
        kept = rows[: -args.days]
        raw.write_text("\n".join([header, *kept]) + "\n")
        for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "replay start"]):
            subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)

        cold, _ = run([sys.executable, "-m", "flows.repro"], root, env, args.logs)
        print(f"cold pipeline run ({len(kept)} rows): {cold:.1f} s, {fits_since(root, 0)} fits")
        start_versions = versions(root, env)
        run([sys.executable, "-m", "flows.retrain", "run"], root, env)  # day 0's forecast
        print(
            "| day | date | wall s | fits | start | champion | forecast next day [80 %] "
            "| realised (day's own forecast) | hit 80 / 95 | main fits: val_loss x1e4 (epochs) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        walls: list[float] = []
        warm_walls: list[float] = []
        val_losses: list[dict[str, dict[str, float]]] = []
        for day, row in enumerate(rows[-args.days :], start=1):
            kept.append(row)
            raw.write_text("\n".join([header, *kept]) + "\n")
            began = time.time()
            wall, out = run([sys.executable, "-m", "flows.retrain", "run"], root, env, args.logs)
            walls.append(wall)
            fitted = main_fits(root)
            val_losses.append(fitted)
            said = json.loads(out[out.rindex("{\n") :])
            record = json.loads((root / "models/continuation.json").read_text())
            start = ("warm" if record["warm"] else "cold") + (
                "" if record["warm"] else f" ({record['reason'][:40]})"
            )
            if said["status"] != "retrained":
                start = f"kept ({said['status']})"
            elif record["warm"]:
                warm_walls.append(wall)
            table = ledger(root, env)
            made = table[-1]  # the forecast this run made for the next day
            scored = sorted((r for r in table if r["actual"]), key=lambda r: r["actual_date"])
            s = scored[-1] if scored and scored[-1]["actual_date"] == made["made_on"] else {}
            realised = f"{float(s['actual']):.2f} (f {float(s['forecast']):.2f})" if s else "-"
            hits = f"{s.get('hit_80', '-')} / {s.get('hit_95', '-')}"
            print(
                f"| {day} | {made['made_on']} | {wall:.1f} | {fits_since(root, began)} "
                f"| {start} | {champion(root)} | {float(made['forecast']):.2f} "
                f"[{float(made['lower_80']):.2f}, {float(made['upper_80']):.2f}] "
                f"| {realised} | {hits} | "
                + ", ".join(
                    f"{v} {f['val'] * 1e4:.3f} ({f['epochs']:.0f})" for v, f in fitted.items()
                )
                + " |",
                flush=True,
            )
        table = ledger(root, env)
        done = [r for r in table if r["actual"]]
        summary = {r["model_version"]: r for r in ledger(root, env, summary=True)}
        served = summary.get("served", {})
        mean = statistics.mean(walls)
        print(
            f"\nmean day: {mean:.1f} s = {mean / cold:.3f}x the cold run ({cold:.1f} s)"
            " measured in this replay (target <= 0.25x)"
        )
        every = yaml.safe_load((root / "params.yaml").read_text())["train"]["cold_every"]
        if warm_walls and every:
            warm = statistics.mean(warm_walls)
            # a schedule's long-run mean: each cold_every days, one cold day and the rest warm
            cycle = (cold + (every - 1) * warm) / every
            print(
                f"mean warm day: {warm:.1f} s = "
                f"{warm / cold:.3f}x the cold run; over a train.cold_every "
                f"cycle ({every} days: 1 cold, {every - 1} warm) {cycle:.1f} s a day = "
                f"{cycle / cold:.3f}x"
            )
        print(f"ledger rows scored: {len(done)} of {len(table)} ({args.days} expected scored)")
        if served:
            print(
                f"live coverage 80 % {float(served['live_coverage_80']):.2f}, 95 % "
                f"{float(served['live_coverage_95']):.2f}; live RMSE "
                f"{float(served['live_rmse_20']):.3f}"
                f" vs last_close {float(served['live_last_close_rmse_20']):.3f} over the last 20 "
                f"scored days ({float(served['live_rmse_20_vs_last_close']):.3f}x)"
            )
        print(f"registry versions added: {versions(root, env) - start_versions}")
        for variant in sorted({v for day in val_losses for v in day}):
            vals = [day[variant]["val"] for day in val_losses if variant in day]
            epochs = [day[variant]["epochs"] for day in val_losses if variant in day]
            print(
                f"{variant}: the day's main model's mean validation loss "
                f"{statistics.mean(vals):.4e} over {len(vals)} days, "
                f"{statistics.mean(epochs):.1f} epochs a day"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
