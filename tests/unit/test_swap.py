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
