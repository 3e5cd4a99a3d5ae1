"""lens/files.py: a write replaces the target in one piece, or leaves it as it was."""
from __future__ import annotations

import os
import stat

import pytest

from lens.files import DIR_TMP_MARK, atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text


def test_a_successful_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "entry.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="cut off"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the n")
            assert tmp.parent == tmp_path and tmp.name.endswith(".tmp")  # what the cache sweeps
            raise RuntimeError("cut off")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.bin"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("old")
    with pytest.raises(OSError):  # a file cannot be renamed over a folder
        atomic_write_text(target, "new")
    assert (target / "inside").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_missing_folder_is_an_os_error_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "no" / "such.bin", b"x")
    assert not any(tmp_path.iterdir())


def test_permissions_follow_the_mode_and_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.html", "x")
        atomic_write_text(tmp_path / "private.bin", "x", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.html").stat().st_mode) == 0o644  # as open() would make it
    assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.safetensors").write_text("old")

    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            assert tmp.is_dir() and not any(tmp.iterdir())
            assert tmp.name == f"model{DIR_TMP_MARK}{os.getpid()}"  # how the converter's sweep finds its writer
            (tmp / "new.safetensors").write_text("half")
            raise RuntimeError("cut off")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in target.iterdir()) == ["old.safetensors"]

    with atomic_dir(target) as tmp:
        (tmp / "new.safetensors").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in target.iterdir()) == ["new.safetensors"]


def test_a_folder_can_be_written_where_none_was(tmp_path):
    target = tmp_path / "models" / "toy"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("a")
    assert (target / "a").read_text() == "a"
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy"]
