"""``dvc.yaml``'s code dependencies, derived from the imports: each stage depends on its flow
module and every file of ours that module imports, directly or through another (lazy imports
inside functions included), and on no other code file. A new import without its ``dvc.yaml``
line, or a line for a file the stage no longer reads, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"stockcast": ROOT / "src", "flows": ROOT}  # our top-level packages, and their roots

# Files a stage imports that cannot change its outputs, with the reason. Everything else a
# stage imports is one of its dependencies.
NOT_SHAPING = {
    "flows/__init__.py": "a docstring",
    "flows/env.py": "process settings (telemetry off, log filters), no output",
    "flows/stages/__init__.py": "the table of stage flows",
    "flows/runners.py": "how fits are executed (execution.*), never what they compute",
    "src/stockcast/__init__.py": "the package's docstring and version",
    "src/stockcast/stages/__init__.py": "a docstring",
    "src/stockcast/errors.py": "the exceptions: a stage that raises writes no output",
}

# Per stage: files its flow imports only on a path where the stage writes no output.
NOT_SHAPING_IN = {
    "validate": {
        "src/stockcast/tracking.py": "records a failed validation in MLflow; nothing is published",
        "src/stockcast/lineage.py": "the tags of that record",
    },
}


def module_file(name: str) -> Path | None:
    """Our file that defines module ``name`` (a module or a package's ``__init__``), or None
    for another library's."""
    top = name.split(".")[0]
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The modules ``path`` imports anywhere in it (inside functions too), with the packages
    each import loads on the way (``a.b.c`` loads ``a`` and ``a.b``); ``from a import b``
    names ``a.b`` when ``b`` is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = next(r for name, r in PACKAGES.items() if path.is_relative_to(r / name))
    package = ".".join(path.relative_to(top).with_suffix("").parts)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this file is in
                parent = package.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    loaded = set()
    for name in names:
        parts = name.split(".")
        loaded.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return loaded


def code_dependencies(
    start: Path, root: Path = ROOT, skip: frozenset[str] = frozenset()
) -> set[str]:
    """Every file of ours that ``start`` loads, transitively, ``start`` included, as paths
    relative to ``root``; what a file of :data:`NOT_SHAPING` loads is not followed, nor
    ``skip`` (files that are not followed and not counted)."""

    def rel(path: Path) -> str:
        return str(path.relative_to(root if path.is_relative_to(root) else ROOT))

    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen or rel(path) in skip:
            continue
        seen.add(path)
        if rel(path) in NOT_SHAPING:
            continue
        todo.extend(f for m in imported_modules(path) if (f := module_file(m)) is not None)
    return {rel(p) for p in seen}


def declared(stage: str) -> set[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return {d for d in deps if d.endswith(".py")}


STAGES = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_depends_on_exactly_the_code_it_imports(stage):
    skip = frozenset(NOT_SHAPING_IN.get(stage, {}))
    derived = code_dependencies(ROOT / "flows/stages" / f"{stage}.py", ROOT, skip) - set(
        NOT_SHAPING
    )
    have = declared(stage)
    assert not derived - have, f"dvc.yaml stage {stage} lacks the code it imports"
    assert not have - derived, f"dvc.yaml stage {stage} names code it does not import"


def test_every_stage_has_a_flow_module_and_the_exemptions_exist():
    assert sorted(STAGES) == sorted(p.stem for p in (ROOT / "flows/stages").glob("[!_]*.py"))
    assert all((ROOT / f).exists() for f in NOT_SHAPING)
    assert all((ROOT / f).exists() for files in NOT_SHAPING_IN.values() for f in files)


def test_an_import_added_without_its_dvc_line_is_caught(tmp_path, monkeypatch):
    """The check itself: a lazy import of a module the stage did not read shows in what the
    stage depends on."""
    flow = ROOT / "flows/stages/drift.py"
    copy = tmp_path / "flows/stages/drift.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(
        flow.read_text() + "\n\ndef later():\n    from stockcast import serving\n",
        encoding="utf-8",
    )
    monkeypatch.setitem(PACKAGES, "flows", tmp_path)
    found = code_dependencies(copy, tmp_path)
    assert "src/stockcast/serving.py" in found
    assert "src/stockcast/serving.py" not in declared("drift")
