"""A bounded on-disk cache of analysis results, in safe formats only.

Each entry is one safetensors file: the arrays, plus the non-array fields as JSON
in its metadata, plus a SHA-256 over both. Nothing in an entry can run code when
read, and nothing in it is served unless the digest checks. Entries are written to
a temporary file and renamed, so a reader never sees half an entry (a writer killed
mid-write leaves only a ``.tmp`` file, which is never read and is swept later).
Reads touch the file's mtime; when the folder grows past its byte budget the least
recently used entries go first.

Several threads and processes may share one folder: any file may vanish between
listing and reading it (another writer evicted it), so every file-system call here
treats a vanished file as a miss. A cache that cannot be read or written is only
slower, never an error: ``get`` answers None and ``put`` gives up quietly.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from .files import atomic_path

log = logging.getLogger("layerlens")
FORMAT_VERSION = "5"  # 2: flow rows are the solved layers only; 3: byte pieces written as <0xNN>; 4: patch rows named as lens rows; 5: lens results name their lens and exit rows
STALE_TMP_SECONDS = 600  # a temporary file this old belongs to a writer that died


def make_key(kind: str, **parts) -> str:
    blob = json.dumps({"kind": kind, "v": FORMAT_VERSION, **parts}, sort_keys=True, ensure_ascii=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def _digest(arrays: dict[str, np.ndarray], fields_json: str) -> str:
    """One hash over every array (name, dtype, shape, bytes) and the JSON fields."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(b"json:")
    h.update(fields_json.encode("utf-8"))
    return h.hexdigest()


class ResultCache:
    def __init__(self, root: Path, max_bytes: int = 512 * 2**20):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            arrays = load_file(str(path))
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            text = meta["json"]
            if meta.get("sha256") != _digest(arrays, text):
                raise ValueError("digest mismatch")
            fields = json.loads(text)
            if not isinstance(fields, dict):
                raise ValueError("fields are not an object")
        except FileNotFoundError:
            return None  # evicted by another writer since is_file()
        except Exception:
            try:
                path.unlink(missing_ok=True)  # corrupt or foreign: drop it, the caller recomputes
            except OSError:
                pass
            return None
        self._touch(path)
        return arrays, fields

    def _touch(self, path: Path) -> None:
        """Mark ``path`` as the most recently used: strictly newer than every other entry,
        even when the file-system clock has not moved since the last write."""
        newest = max((t for p, t, _ in self._entries() if p != path), default=0)
        t = max(time.time_ns(), newest + 1)
        try:
            os.utime(path, ns=(t, t))
        except OSError:
            pass  # evicted meanwhile: nothing to mark

    def put(self, key: str, arrays: dict[str, np.ndarray], fields: dict) -> bool:
        """Store an entry; False (and the cache unchanged) when the folder cannot take it."""
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        text = json.dumps(fields, ensure_ascii=False)
        meta = {"json": text, "sha256": _digest(arrays, text)}
        target = self._path(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_path(target, mode=0o600) as tmp:
                save_file(arrays, str(tmp), metadata=meta)
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)  # something made a folder of an entry's name
            self._touch(target)
        except OSError as exc:
            log.warning("could not write cache entry %s (%s); going on without it", key, exc)
            return False
        self.evict()
        return True

    def _entries(self) -> list[tuple[Path, int, int]]:
        """(path, mtime in ns, size) of every entry, oldest use first; files that vanish while
        being listed are left out."""
        found = []
        try:
            paths = list(self.root.glob("*.safetensors"))
        except OSError:
            return []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_file():
                found.append((p, st.st_mtime_ns, st.st_size))
        return sorted(found, key=lambda e: e[1])

    def entries(self) -> list[Path]:
        return [p for p, _, _ in self._entries()]

    def size(self) -> int:
        return sum(size for _, _, size in self._entries())

    def evict(self) -> None:
        """Drop least recently used entries until the folder fits its budget, and the
        temporary files of writers that died."""
        entries = self._entries()
        total = sum(size for _, _, size in entries)
        for p, _, size in entries:  # oldest use first
            if total <= self.max_bytes:
                break
            total -= size
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        cutoff = time.time() - STALE_TMP_SECONDS
        try:
            for p in self.root.glob("*.tmp"):
                try:
                    if p.stat().st_mtime < cutoff:
                        p.unlink(missing_ok=True)
                except OSError:
                    pass
        except OSError:
            pass
