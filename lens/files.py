"""Writing a file or a folder in one piece.

The new content is written under a temporary name beside the target and renamed over it,
so a reader sees the old content or the new, never half of either; when the writing fails
the temporary file or folder is removed and the old content stays. A writer killed
mid-write can still leave its temporary behind: files end in ``.tmp`` and folders in
``.tmp-<pid>``, which is how the cache and the converter recognise and sweep them.
"""
from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DIR_TMP_MARK = ".tmp-"  # a temporary folder is named <name>.tmp-<pid of its writer>


def _new_temp_file(path: Path, mode: int) -> Path:
    """An empty file beside ``path`` that no one else has; ``mode`` less the umask, as ``open`` does."""
    for _ in range(100):
        # A short random part, and the name cut, so the temporary name stays within NAME_MAX.
        tmp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int = 0o666) -> Iterator[Path]:
    """A temporary path beside ``path`` (created empty) to write the new content to; when the
    block ends it replaces ``path`` in one rename, and when the block raises it is removed.
    ``mode`` is the new file's permissions before the umask (0o600: only the owner reads it)."""
    path = Path(path)
    tmp = _new_temp_file(path, mode)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int = 0o666) -> None:
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int = 0o666, encoding: str = "utf-8") -> None:
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_text(text, encoding=encoding)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` to fill; when the block ends it replaces the
    folder ``path`` (whatever was there is removed first: a folder cannot be renamed over a
    full one), and when the block raises it is removed. Between the removal and the rename
    ``path`` is briefly missing, never half-written."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{DIR_TMP_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own leftover from an earlier failure
    try:
        tmp.mkdir(parents=True)
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
