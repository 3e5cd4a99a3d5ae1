"""Steering vectors saved by name: one SQLite file beside the saved runs (user data, not cache).

Where: ``LAYERLENS_VECTORS`` (a file path), else ``vectors.sqlite`` in the saved runs' folder (beside
``LAYERLENS_RUNS``, else ``$XDG_DATA_HOME/layerlens/``, else ``~/.local/share/layerlens/``). Each save or delete is one transaction in SQLite's write-ahead log, so a
writer killed half-way leaves every vector saved before it whole. A vector is stored as safetensors bytes and
how it was made as JSON, never pickle: reading one runs no code. A damaged or missing vector is one clear line.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LensError

SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
  name TEXT PRIMARY KEY, model TEXT NOT NULL, fingerprint TEXT NOT NULL, d_model INTEGER NOT NULL,
  layer INTEGER NOT NULL, source TEXT NOT NULL, how TEXT NOT NULL, norm REAL NOT NULL, vector BLOB NOT NULL,
  created REAL NOT NULL);
"""
NAME = re.compile(r"^[^/\\\"'`]{1,64}$")  # printable, at most 64 characters, no slashes or quotes
SOURCES = ("contrast", "token", "probe")


def default_vectors_path() -> Path:
    if os.environ.get("LAYERLENS_VECTORS"):
        return Path(os.environ["LAYERLENS_VECTORS"]).expanduser()
    # Beside the saved runs (lens/runs/store.py default_runs_path: the same rules, not imported, since the run
    # store's module reads the backend's types and those name this one)
    if os.environ.get("LAYERLENS_RUNS"):
        return Path(os.environ["LAYERLENS_RUNS"]).expanduser().with_name("vectors.sqlite")
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "layerlens" / "vectors.sqlite"


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not (NAME.match(name) and name.isprintable()):
        raise LensError(f"a vector's name is 1 to 64 printable characters without slashes or quotes, not {name!r}")
    return name


@dataclass
class SavedVector:
    """A steering vector and how it was made: read at ``resid_pre.{layer}`` of ``model``."""

    name: str
    model: str
    fingerprint: str
    layer: int  # 1-based: the stream entering this block
    source: str  # contrast | token | probe
    how: dict  # what made it: the texts, the token, or the probe's set and accuracy
    vector: np.ndarray  # [d_model] float64
    created: float = 0.0
    note: str = field(default="", repr=False)

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.vector))

    @property
    def digest(self) -> str:
        """Names the vector's numbers in cache keys (a name saved again with other numbers is another vector)."""
        return hashlib.sha256(np.ascontiguousarray(self.vector, np.float64).tobytes()).hexdigest()[:16]

    def label(self) -> str:
        """What it is, in a few words (the steering result's vector label)."""
        h = self.how
        made = {"contrast": lambda: " / ".join(f"{p!r} − {n!r}" for p, n in zip(h.get("positive", []),
                                                                               h.get("negative", []))),
                "token": lambda: f"the unembedding of {h.get('token')!r}",
                "probe": lambda: f"the {h.get('set')} probe's direction"}.get(self.source, lambda: self.source)()
        return f"saved “{self.name}” ({made}, layer {self.layer} of {self.model})"

    def summary(self) -> dict:
        return {"name": self.name, "model": self.model, "layer": self.layer, "source": self.source,
                "d_model": self.d_model, "norm": self.norm, "how": self.how,
                "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))}

    def fits(self, model: str, d_model: int) -> None:
        """Refuse a vector of another width: it was made on a model with another residual stream."""
        if self.d_model != d_model:
            raise LensError(f"the saved vector “{self.name}” has {self.d_model} numbers (made on {self.model}) but "
                            f"{model}'s residual stream has {d_model}: it belongs to another model")


class VectorStore:
    """The saved vectors in the database at ``path`` (created, with its folder, on first use)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_vectors_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            try:
                with db:
                    db.executescript(SCHEMA)
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise LensError(f"cannot open the saved vectors at {self.path}: {exc} (set LAYERLENS_VECTORS to "
                            "another file to start a new list)") from None
        except OSError as exc:
            raise LensError(f"cannot create the saved vectors' folder {self.path.parent}: "
                            f"{exc.strerror or exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a save that returned is on disk
        return db

    def _run(self, sql: str, args: tuple = (), write: bool = False) -> list:
        try:
            db = self._connect()
            try:
                if write:
                    with db:
                        cur = db.execute(sql, args)
                        return [cur.rowcount]
                return db.execute(sql, args).fetchall()
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise LensError(f"the saved vectors at {self.path} cannot be read: {exc}") from None

    def save(self, v: SavedVector, replace: bool = True) -> SavedVector:
        """Store ``v`` under its name (one transaction; ``replace``: an existing one of that name is replaced)."""
        from safetensors.numpy import save

        name = check_name(v.name)
        if v.source not in SOURCES:
            raise LensError(f"unknown vector source {v.source!r}; choose {', '.join(SOURCES)}")
        vec = np.ascontiguousarray(np.asarray(v.vector, np.float64).reshape(-1))
        if not vec.size or not np.isfinite(vec).all() or not np.linalg.norm(vec) > 0:
            raise LensError(f"the vector “{name}” is zero or not finite: nothing to save")
        created = time.time()
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            self._run(f"{verb} INTO vectors (name, model, fingerprint, d_model, layer, source, how, norm, vector, "
                      "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (name, v.model, v.fingerprint, int(vec.size), int(v.layer), v.source,
                       json.dumps(v.how, ensure_ascii=False), float(np.linalg.norm(vec)),
                       save({"vector": vec}), created), write=True)
        except LensError as exc:
            if "UNIQUE" in str(exc):
                raise LensError(f"a vector named “{name}” is saved already: choose another name") from None
            raise
        return SavedVector(name, v.model, v.fingerprint, int(v.layer), v.source, dict(v.how), vec, created)

    def names(self, model: str | None = None) -> list[str]:
        sql = "SELECT name FROM vectors" + (" WHERE model = ?" if model else "") + " ORDER BY created DESC, name"
        return [n for (n,) in self._run(sql, (model,) if model else ())]

    def list(self) -> list[dict]:
        """Every saved vector's summary (no numbers), newest first; a damaged one says so in its row."""
        rows = self._run("SELECT name FROM vectors ORDER BY created DESC, name")
        out = []
        for (name,) in rows:
            try:
                out.append(self.get(name).summary())
            except LensError as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def get(self, name: str) -> SavedVector:
        from safetensors.numpy import load

        rows = self._run("SELECT name, model, fingerprint, d_model, layer, source, how, vector, created FROM vectors "
                         "WHERE name = ?", (str(name).strip(),))
        if not rows:
            raise LensError(f"no saved vector “{name}”; `python -m lens vectors list` shows the saved ones")
        n, model, fp, d, layer, source, how, blob, created = rows[0]
        try:
            vec = load(bytes(blob))["vector"]
            how = json.loads(how)
            if vec.dtype != np.float64 or vec.shape != (int(d),) or not np.isfinite(vec).all() \
                    or not isinstance(how, dict):
                raise ValueError("its numbers do not match its record")
        except Exception as exc:  # safetensors raises its own errors for damaged bytes
            raise LensError(f"the saved vector “{n}” is damaged and cannot be read ({type(exc).__name__}): delete "
                            f"it with `python -m lens vectors delete {n!r}` and save it again") from None
        return SavedVector(n, model, fp, int(layer), source, how, vec, float(created))

    def delete(self, name: str) -> None:
        if self._run("DELETE FROM vectors WHERE name = ?", (str(name).strip(),), write=True)[0] == 0:
            raise LensError(f"no saved vector “{name}”; `python -m lens vectors list` shows the saved ones")
