"""``make bench``: run every benchmark and write benchmarks/RESULTS.md with the date and machine.

Each script prints its own markdown table; this collects them in order, with each script's
wall time. Sizes are chosen so that the whole run stays under 15 minutes on 2 cores; the
scripts take larger settings when run by hand (see each one's ``--help``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RUNS = [
    ("Windowing (issue 6.1)", ["windowing.py"]),
    ("Epoch time against bare Keras (issue 6.2)", ["epoch_time.py", "--epochs", "3"]),
    ("Variants in parallel, per task runner (issue 6.3)", ["runners.py", "--epochs", "3"]),
    (
        "End to end, 3 fits: `-S backtest.folds=0` (issue 6.4)",
        ["end_to_end.py", "-S", "backtest.folds=0"],
    ),
    ("Scale: 10, 50, 100 tickers (issue 6.5)", ["scale.py", "--sizes", "10", "50", "100"]),
]


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


def main() -> int:
    started = time.perf_counter()
    out = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        "",
    ]
    failed = 0
    for title, cmd in RUNS:
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
    total = time.perf_counter() - started
    out.append(f"All benchmarks: {total:.0f} s.")
    (HERE / "RESULTS.md").write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"wrote benchmarks/RESULTS.md ({total:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
