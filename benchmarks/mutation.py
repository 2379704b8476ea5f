"""The mutation score per module, from the last ``mutmut run`` (``make mutate`` runs both).

    python benchmarks/mutation.py [--out benchmarks/MUTATION.md] [--only stockcast.ops ...]

Reads ``mutmut results --all true`` and writes a markdown report: per module the mutants
killed (a test failed, or it timed out), survived, and left without a test, the score
(killed / every mutant: a mutant no test reaches counts against the score), and each
survivor with its diff, so the ones that matter can be killed by a better test.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check"}
# Survivors that change nothing a caller can observe, each with the reason (name: reason).
EQUIVALENT_FILE = Path(__file__).with_name("equivalent_mutants.txt")


def equivalents() -> dict[str, str]:
    """Mutant name -> why it is equivalent, from ``equivalent_mutants.txt``."""
    if not EQUIVALENT_FILE.exists():
        return {}
    out = {}
    for line in EQUIVALENT_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(":")
            out[name.strip()] = why.strip()
    return out


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+)$")


def parse(out: str) -> dict[str, str]:
    """mutant name -> status, from the text ``mutmut results --all true`` prints."""
    found = {}
    for line in out.splitlines():
        if m := LINE.match(line):
            found[m["name"]] = m["status"].strip()
    return found


def results(mutmut: str, earlier: Sequence[Path] = ()) -> dict[str, str]:
    """mutant name -> status, as ``mutmut results`` prints them, with the mutants this run
    has not checked taken from ``earlier`` runs' saved output (a run stopped and another
    started on what was left, in a fresh ``mutants/``)."""
    out = subprocess.run(
        [mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    found = parse(out)
    for path in earlier:
        for name, status in parse(path.read_text(encoding="utf-8")).items():
            if found.get(name, "not checked") == "not checked":
                found[name] = status
    return found


def module_sample(found: dict[str, str], module: str, size: int) -> list[str]:
    """``module``'s seeded random sample of ``size`` mutants (:func:`sample`)."""
    return sample([n for n in found if module_of(n) == module], size)


def only_sample(found: dict[str, str], module: str, size: int) -> dict[str, str]:
    """``module``'s mutants outside its seeded random sample of ``size`` marked not checked:
    the module's score is then the sample's, whatever else of it happened to run."""
    chosen = set(module_sample(found, module, size))
    return {
        n: (s if module_of(n) != module or n in chosen else "not checked") for n, s in found.items()
    }


def module_of(mutant: str) -> str:
    """``stockcast.evaluate.x_score__mutmut_3`` -> ``stockcast.evaluate``."""
    return re.split(r"\.x_|\.xǁ", mutant, maxsplit=1)[0]


def diff(mutmut: str, mutant: str) -> str:
    shown = subprocess.run([mutmut, "show", mutant], capture_output=True, text=True).stdout
    lines = [
        ln
        for ln in shown.splitlines()
        if ln.startswith(("-", "+")) and ln[:3] not in ("---", "+++")
    ]
    return "\n".join(lines[:6])


def sample(names: list[str], size: int, seed: int = 0) -> list[str]:
    """A random sample of mutant names, the same for a seed (for a module whose tests are too
    slow to run every mutant: its score is then an estimate, with its interval)."""
    import random

    return sorted(random.Random(seed).sample(sorted(names), min(size, len(names))))


def wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion killed / n."""
    if n == 0:
        return 0.0, 1.0
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return centre - half, centre + half


def report(
    found: dict[str, str], mutmut: str, note: str = "", sampled: frozenset[str] = frozenset()
) -> str:
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    equivalent = equivalents()
    for name, status in sorted(found.items()):
        module = module_of(name)
        key = "killed" if status in KILLED else status
        if key == "survived" and name in equivalent:
            key = "equivalent"
        by_module[module][key] += 1
        if status in ("survived", "no tests", "suspicious"):
            survivors[module].append(name)
    rows = [
        "| module | mutants | not run yet | killed | survived | equivalent | no test | score "
        "| score without the equivalent |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    total = Counter()
    for module, counts in [*sorted(by_module.items()), ("**all**", None)]:
        counts = counts if counts is not None else total
        n = sum(counts.values())
        real = n - counts["equivalent"]
        if module in sampled:  # a sample was run: the score is over the sample, an estimate
            run = n - counts["not checked"]
            low, high = wilson(counts["killed"], run - counts["equivalent"])
            rows.append(
                f"| `{module}` (a random sample of {run} of {n}) | {run} | 0 | "
                f"{counts['killed']} | {counts['survived']} | {counts['equivalent']} | "
                f"{counts['no tests']} | {100 * counts['killed'] / max(run, 1):.1f}% | "
                f"{100 * counts['killed'] / max(run - counts['equivalent'], 1):.1f}% "
                f"(95 % interval {100 * low:.0f}-{100 * high:.0f}%) |"
            )
            continue
        if module != "**all**":
            total.update(counts)
            module = f"`{module}`"
        rows.append(
            f"| {module} | {n} | {counts['not checked']} | {counts['killed']} | "
            f"{counts['survived']} | {counts['equivalent']} | {counts['no tests']} | "
            f"{100 * counts['killed'] / max(n, 1):.1f}% | "
            f"{100 * counts['killed'] / max(real, 1):.1f}% |"
        )
    parts = [
        "# Mutation testing (`make mutate`)",
        "",
        f"mutmut against `tests/unit`, `tests/data` and the `tests/model` tests that fit no "
        f"network (`-m 'not fits'`), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, the code and tests "
        f"as of commit {commit()}. Score = killed "
        "(a test failed or timed out) / every mutant; a mutant no test reaches counts as "
        'not killed. An interrupted run leaves mutants not run yet: "of those run" is the '
        "score over the rest, and `mutmut run` picks up where it stopped. Plot rendering is "
        "excluded (`# pragma: no mutate block`).",
        "",
        *([note, ""] if note else []),
        *rows,
        "",
        "## Surviving mutants",
    ]
    for module, names in sorted(survivors.items()):
        parts += ["", f"### `{module}` ({len(names)})", ""]
        for name in names:
            why = f"equivalent: {equivalent[name]}" if name in equivalent else found[name]
            parts += [f"- `{name}` ({why})", "", "```diff", diff(mutmut, name), "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/MUTATION.md")
    parser.add_argument("--only", nargs="*", default=[], help="report only these modules")
    parser.add_argument("--note", default="", help="a paragraph to put above the table")
    parser.add_argument("--note-file", default=None, help="a file whose text goes below the table")
    parser.add_argument(
        "--sampled", nargs="*", default=[], help="modules of which only a random sample ran"
    )
    parser.add_argument(
        "--sample",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODULE", "SIZE"),
        help="score MODULE on its seeded random sample of SIZE mutants (--print-sample's)",
    )
    parser.add_argument(
        "--results-file",
        action="append",
        type=Path,
        default=[],
        help="an earlier run's `mutmut results --all true` output, for what this run skipped",
    )
    parser.add_argument(
        "--print-sample",
        nargs=2,
        metavar=("MODULE", "SIZE"),
        help="print a random sample (seed 0) of MODULE's mutants, for `mutmut run`",
    )
    args = parser.parse_args(argv)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    found = results(mutmut, args.results_file)
    for module, size in args.sample:
        found = only_sample(found, module, int(size))
    sampled = frozenset(args.sampled) | {module for module, _ in args.sample}
    if args.print_sample:
        module, size = args.print_sample
        print(" ".join(module_sample(found, module, int(size))))
        return 0
    if args.only:
        found = {k: v for k, v in found.items() if module_of(k) in args.only}
    if not found:
        print("no mutmut results: run `make mutate` (or `mutmut run`) first", file=sys.stderr)
        return 1
    text = report(found, mutmut, args.note, sampled)
    if args.note_file:
        extra = Path(args.note_file).read_text(encoding="utf-8").strip()
        head, _, tail = text.partition("## Surviving mutants")
        text = f"{head}{extra}\n\n## Surviving mutants{tail}"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text.split("## Surviving mutants")[0])
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
