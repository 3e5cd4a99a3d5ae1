"""A bounded on-disk cache of analysis results, in safe formats only.

Each entry is one safetensors file: the arrays, plus the non-array fields as JSON
in its metadata, plus a SHA-256 of the arrays' bytes. Nothing in an entry can run
code when read. Entries are written to a temporary file and renamed, so a reader
never sees half an entry; an entry whose digest, header or JSON does not check is
deleted and reported as a miss. Reads touch the file's mtime; when the folder
grows past its byte budget the least recently used entries go first.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

FORMAT_VERSION = "3"  # 2: flow rows are the solved layers only; 3: byte pieces written as <0xNN>


def make_key(kind: str, **parts) -> str:
    blob = json.dumps({"kind": kind, "v": FORMAT_VERSION, **parts}, sort_keys=True, ensure_ascii=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ResultCache:
    def __init__(self, root: Path, max_bytes: int = 512 * 2**20):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            arrays = load_file(str(path))
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            if meta.get("sha256") != _digest(arrays):
                raise ValueError("digest mismatch")
            fields = json.loads(meta["json"])
        except Exception:
            path.unlink(missing_ok=True)  # corrupt or partial: drop it, the caller recomputes
            return None
        self._touch(path)
        return arrays, fields

    def _touch(self, path: Path) -> None:
        """Mark ``path`` as the most recently used: strictly newer than every other entry,
        even when the file-system clock has not moved since the last write."""
        newest = max((p.stat().st_mtime_ns for p in self.entries() if p != path), default=0)
        t = max(time.time_ns(), newest + 1)
        os.utime(path, ns=(t, t))

    def put(self, key: str, arrays: dict[str, np.ndarray], fields: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        meta = {"json": json.dumps(fields, ensure_ascii=False), "sha256": _digest(arrays)}
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(fd)
        try:
            save_file(arrays, tmp, metadata=meta)
            os.replace(tmp, self._path(key))
            self._touch(self._path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.evict()

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def evict(self) -> None:
        entries = self.entries()
        total = sum(p.stat().st_size for p in entries)
        for p in entries:  # oldest use first
            if total <= self.max_bytes:
                break
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
