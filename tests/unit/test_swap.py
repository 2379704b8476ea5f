"""``paths.swap_dir``: a folder replaced by renames only, the old one kept until the last
step; what a crash at any step leaves is the last good folder, under a name git ignores."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockcast.paths import swap_dir

ROOT = Path(__file__).resolve().parents[2]


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "model.keras").write_text(text, encoding="utf-8")
    return path


def test_the_new_folder_replaces_the_old_and_nothing_is_left_beside_it(tmp_path: Path):
    target = _folder(tmp_path / "models", "old")
    _folder(tmp_path / "models.old", "a killed swap's leftover")
    swap_dir(_folder(tmp_path / "models.tmp", "new"), target)
    assert (target / "model.keras").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_a_first_swap_needs_no_old_folder(tmp_path: Path):
    swap_dir(_folder(tmp_path / "models.tmp", "new"), tmp_path / "models")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_a_crash_before_the_new_folder_lands_leaves_the_old_one_as_models_old(
    tmp_path: Path, monkeypatch
):
    target = _folder(tmp_path / "models", "old")
    new = _folder(tmp_path / "models.tmp", "new")
    real = Path.rename

    def crash_on_the_second_rename(self: Path, to: Path) -> Path:
        if self == new:
            raise OSError("killed mid-swap")
        return real(self, to)

    monkeypatch.setattr(Path, "rename", crash_on_the_second_rename)
    with pytest.raises(OSError, match="killed mid-swap"):
        swap_dir(new, target)
    assert (tmp_path / "models.old" / "model.keras").read_text() == "old"
    assert "/models.old/" in (ROOT / ".gitignore").read_text().splitlines()


def test_json_is_written_indented_and_any_value_as_text(tmp_path: Path):
    """Reports a person and ``dvc metrics diff`` read: two-space indents; a date as text."""
    import datetime
    import json

    from stockcast.paths import write_json

    path = write_json(tmp_path / "r.json", {"a": [1], "when": datetime.date(2026, 1, 2)})
    assert path.read_text(encoding="utf-8") == (
        '{\n  "a": [\n    1\n  ],\n  "when": "2026-01-02"\n}'
    )
    assert json.loads(path.read_text())["when"] == "2026-01-02"


def test_a_table_is_written_without_its_index(tmp_path: Path):
    """A filtered table (its index no longer 0..n-1) reads back with its own columns only."""
    import pandas as pd

    from stockcast.paths import write_parquet

    frame = pd.DataFrame({"ticker": ["A", "B", "C", "D"], "close": [1.0, 2.0, 3.0, 4.0]})
    kept = frame[frame["close"] > 2]
    back = pd.read_parquet(write_parquet(kept, tmp_path / "t.parquet"))
    assert list(back.columns) == ["ticker", "close"]
    assert list(back.index) == [0, 1] and list(back["ticker"]) == ["C", "D"]
