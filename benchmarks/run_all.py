"""``make bench``: run every benchmark and write benchmarks/RESULTS.md with the date and machine.

Each script prints its own markdown table; this collects them in order, with each script's
wall time. Sizes are chosen so that the whole run stays under 15 minutes on 2 cores; the
scripts take larger settings when run by hand (see each one's ``--help``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RUNS = {
    "windowing": ("Windowing (issue 6.1)", ["windowing.py"]),
    "epoch": ("Epoch time against bare Keras (issue 6.2)", ["epoch_time.py", "--epochs", "3"]),
    "runners": (
        "Variants in parallel, per task runner (issue 6.3)",
        ["runners.py", "--epochs", "6", "--configs", "threads:1:0", "threads:3:0"]
        + ["processes:2:0", "dask:2:0"],
    ),
    "end_to_end": (
        "End to end, 3 fits: `-S backtest.folds=0` (issue 6.4)",
        ["end_to_end.py", "-S", "backtest.folds=0", "--import-repeats", "1", "--no-reference"],
    ),
    "scale": (
        "Scale: 10, 30, 100 tickers; training at 10 and 30 (issue 6.5)",
        ["scale.py", "--sizes", "10", "30", "100", "--train-up-to", "30", "--no-register"],
    ),
}
# Too long for make bench (20-50 min each on 2 cores): run by name, `run_all.py champion`; a
# default run keeps its last section.
LONG = {
    "end_to_end_default": (  # two full pipelines: about 20 min
        "End to end: the default run against its references in the same run (issues 6.4, 13)",
        ["end_to_end.py", "--skip-imports"],
    ),
    "scale_global": (  # every stage at 100 and 1000 tickers: about 50 min (training 31)
        "Scale: 100 and 1000 tickers through every stage, one global model (issue 16)",
        ["scale.py", "--sizes", "100", "1000", "--scope", "global", "--train-up-to", "1000"],
    ),
    "train_configs": (  # six full pipelines: about 22 min
        "Training configurations: time against accuracy, the defaults (issue 13)",
        ["train_configs.py"],
    ),
    "champion": (
        "Feature configuration x candidate: the champion (issue 12)",
        ["champion.py", "--configs", "opens,close_intraday,anchor_close,anchor_close_intraday"],
    ),
}


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    system = f"{platform.platform()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}){mem}, {system}"


def previous_sections(path: Path) -> dict[str, str]:
    """The sections of an earlier RESULTS.md, by title, to keep those not rerun."""
    if not path.exists():
        return {}
    sections, title = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            title = line[3:]
            sections[title] = []
        elif title and not line.startswith("All benchmarks:"):
            sections[title].append(line)
    return {t: "\n".join(lines).strip() for t, lines in sections.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "only", nargs="*", choices=[[], *RUNS, *LONG], help="rerun only these (LONG ones too)"
    )
    args = parser.parse_args()
    chosen = args.only or list(RUNS)
    results = HERE / "RESULTS.md"
    kept = previous_sections(results)  # what is not rerun now stays as it was
    started = time.perf_counter()
    out = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        + (
            f" (rerun: {', '.join(chosen)}; other sections from an earlier run)."
            if args.only
            else "."
        ),
        f"Machine: {machine()}.",
        "",
    ]
    failed = 0
    for key, (title, cmd) in {**RUNS, **LONG}.items():
        if key not in chosen:
            if title in kept:
                out += [f"## {title}", "", kept[title], ""]
            continue
        print(f"== {title}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / cmd[0]), *cmd[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        print(proc.stdout, flush=True)
        out += [f"## {title}", "", f"`benchmarks/{' '.join(cmd)}` ({seconds:.0f} s)", ""]
        out += [proc.stdout.strip(), ""]
        if proc.returncode:
            failed += 1
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            out += ["Failed:", "", "```", tail, "```", ""]
            print(tail, file=sys.stderr)
    titles = {title for title, _ in (*RUNS.values(), *LONG.values())}
    for title, text in kept.items():  # e.g. a longer run of a script, made by hand earlier
        if title not in titles:
            out += [f"## {title}", "", text, ""]
    total = time.perf_counter() - started
    out.append(f"All benchmarks: {total:.0f} s.")
    results.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"wrote benchmarks/RESULTS.md ({total:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
