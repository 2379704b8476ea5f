"""The register stage's walk: how far a reader follows ``cfg`` from the stage's ``run``.

Runs the register stage (``stockcast.stages.register.run``) on a copy of this project's
stage outputs (``data/processed``, ``models``, ``reports``) against a new SQLite store, traces
every call into ``stockcast`` with :func:`sys.setprofile`, and keeps the calls that are handed
the whole configuration (a ``Config`` argument: what the reader must follow; a function given
only the section or the values it reads needs no more of it).
Over the distinct caller -> callee edges it prints:

- stops: the functions ``cfg`` (or a section of it) reaches, and the files they are in;
- climbs back up: edges into a module that is already further up the call path (A -> B -> A);
- returns: edges between two modules, each of which the reader comes back along;
- re-entries: in the order the stops are first reached, a step into a file read before
  (tracking -> promotion -> tracking counts one).

Run it on another checkout's code to compare (the data and params are this project's)::

    .venv/bin/python benchmarks/register_walk.py                      # this checkout
    PYTHONPATH=/path/to/other/src .venv/bin/python benchmarks/register_walk.py \
        --code other --params /path/to/other/params.yaml

Needs ``make pipeline`` to have run (the stage outputs it reads).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default="this checkout", help="a label for the code measured")
    parser.add_argument(
        "--params", default=str(ROOT / "params.yaml"), help="the params file that code reads"
    )
    parser.add_argument(
        "--every-call", action="store_true", help="follow every call of ours, not only cfg's"
    )
    args = parser.parse_args()
    import stockcast
    from stockcast import config as config_module
    from stockcast.config import load_config
    from stockcast.paths import Paths

    package = Path(stockcast.__file__).parent
    sections = (config_module.Config,)
    with tempfile.TemporaryDirectory(prefix="stockcast-walk-") as tmp:
        root = Path(tmp)
        for part in ("data/processed", "models", "reports"):
            shutil.copytree(ROOT / part, root / part)
        shutil.copy2(args.params, root / "params.yaml")
        shutil.copy2(ROOT / "dvc.lock", root / "dvc.lock")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        cfg = load_config(root / "params.yaml")
        from stockcast.stages import register

        everything = (object,) if args.every_call else sections
        edges, stack = _trace(lambda: register.run(cfg, Paths(root)), package, everything)
    stops = {callee for _, callee in edges}
    files = {f for f, _ in stops}
    cross = [(a, b) for a, b in edges if a is not None and a[0] != b[0]]
    climbs = [(a, b) for a, b in cross if b[0] in stack.get((a, b), ())]
    print(f"register walk ({args.code}, stockcast at {package}):")
    print(f"  stops {len(stops)} in {len(files)} files; climbs back up {len(climbs)};", end=" ")
    order = list(dict.fromkeys(callee for _, callee in edges))
    modules = [m for m, _ in order]
    back = sum(
        1
        for i in range(1, len(modules))
        if modules[i] != modules[i - 1] and modules[i] in modules[:i]
    )
    print(f"returns {len(cross)}; re-entries {back}")
    for f in sorted(files):
        print(f"    {f}: {', '.join(sorted(n for m, n in stops if m == f))}")
    for a, b in sorted(climbs):
        print(f"  climb: {a[0]}.{a[1]} -> {b[0]}.{b[1]}")
    return 0


def _trace(call, package: Path, sections: tuple[type, ...]):  # type: ignore[no-untyped-def]
    """Run ``call`` and return the distinct (caller, callee) edges between the project's
    functions that were handed the configuration (caller None: the stage's entry), and for
    each edge the modules above the callee on the path at its first crossing."""
    edges: dict[tuple[tuple[str, str] | None, tuple[str, str]], None] = {}  # in first-call order
    above: dict[tuple, tuple[str, ...]] = {}
    path: list[tuple[str, str] | None] = []  # per frame of ours: the function, None if no cfg
    frames: list[object] = []

    def handed_cfg(frame) -> bool:  # type: ignore[no-untyped-def]
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if sections == (object,):
            return True
        return any(isinstance(frame.f_locals.get(n), sections) for n in names)

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        file = frame.f_code.co_filename
        if not file.startswith(str(package)):
            return
        if event == "call":
            here = None
            if handed_cfg(frame):
                module = str(Path(file).relative_to(package.parent).with_suffix(""))
                here = (module.replace("/", "."), frame.f_code.co_qualname)
                caller = next((p for p in reversed(path) if p is not None), None)
                edge = (caller, here)
                if edge not in edges:
                    edges[edge] = None
                    above[edge] = tuple(p[0] for p in path if p is not None)
            path.append(here)
            frames.append(frame)
        elif event == "return" and frames and frames[-1] is frame:
            path.pop()
            frames.pop()

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return edges, above


if __name__ == "__main__":
    raise SystemExit(main())
