"""The saved runs' database: one SQLite file, outside ``cache/`` (runs are user data, not re-creatable).

Where: ``LAYERLENS_RUNS`` (a file path), else ``$XDG_DATA_HOME/layerlens/runs.sqlite``, else
``~/.local/share/layerlens/runs.sqlite``. Every save, edit and delete is one transaction in SQLite's
write-ahead log: a writer killed half-way leaves every run saved before it whole (tests/test_runs.py kills one).
Results are stored as JSON fields and safetensors bytes, never pickle: opening a run runs no code.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LensError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL, view TEXT NOT NULL, model TEXT NOT NULL, fingerprint TEXT NOT NULL,
  texts TEXT NOT NULL, token_ids TEXT NOT NULL, params TEXT NOT NULL, info TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL, method TEXT NOT NULL, type TEXT NOT NULL, fields TEXT NOT NULL, arrays BLOB NOT NULL,
  PRIMARY KEY (run_id, seq));
"""


def default_runs_path() -> Path:
    if os.environ.get("LAYERLENS_RUNS"):
        return Path(os.environ["LAYERLENS_RUNS"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "layerlens" / "runs.sqlite"


@dataclass
class Run:
    """One saved view: what it showed (the results of the backend calls it made) and how to show it again."""

    id: int | None
    name: str
    view: str  # a view of the registry (lens.views.VIEWS)
    model: str
    fingerprint: str
    texts: str | list[str]
    token_ids: list[list[int]]  # per text, the exact ids the model read
    params: dict
    info: object  # lens.backend.ModelInfo
    calls: list = field(default_factory=list)  # [(backend method, typed result)], in the order the view asked
    note: str = ""
    created: float = 0.0

    @property
    def results(self) -> list:
        return [r for _, r in self.calls if dataclasses.is_dataclass(r)]


def _encode(result) -> tuple[str, str, bytes]:
    """A result as (type name, JSON fields, safetensors arrays); a list of tokens as a JSON list."""
    from safetensors.numpy import save

    from ..serialize import plain, split

    if not dataclasses.is_dataclass(result):
        return "json", json.dumps(plain(result), ensure_ascii=False), b""
    arrays, fields = split(result)
    # safetensors writes an array's buffer as it lies: a strided view (a column of a matrix) must be copied first.
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return type(result).__name__, json.dumps(plain(fields), ensure_ascii=False), save(arrays) if arrays else b""


def _decode(kind: str, fields: str, arrays: bytes):
    from safetensors.numpy import load

    from .. import results as result_types
    from ..serialize import NotThisType, join

    if kind == "json":
        return json.loads(fields)
    from ..attribution import results as attribution_types
    from ..circuits import results as circuit_types
    from ..suites import results as suite_types
    from ..weights import results as weight_types
    from ..steering import results as steering_types
    from ..probes import results as probe_types
    from ..anatomy import results as anatomy_types

    # Only the result types LayerLens defines: a name in the file picks one of them, never anything else.
    known = {m.__name__: m for m in (result_types, suite_types, attribution_types, circuit_types, weight_types,
                                       steering_types, anatomy_types, probe_types)}
    cls = next((getattr(m, kind) for m in known.values() if isinstance(getattr(m, kind, None), type)), None)
    if cls is None or not dataclasses.is_dataclass(cls) or cls.__module__ not in known:
        raise LensError(f"a saved result of unknown type {kind!r} (saved by another version?)")
    try:
        return join(cls, load(arrays) if arrays else {}, json.loads(fields))
    except (NotThisType, ValueError, TypeError) as exc:
        raise LensError(f"a saved {kind} cannot be read: {exc}") from None


def _info(text: str):
    from ..backend import ModelInfo

    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(ModelInfo)}
    return ModelInfo(**{k: v for k, v in data.items() if k in names})


class RunStore:
    """The runs in the database at ``path`` (created, with its folder, on first use)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_runs_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LensError(f"cannot open the saved runs at {self.path}: {exc} (set LAYERLENS_RUNS to another "
                            "file to start a new list)") from None
        except OSError as exc:
            raise LensError(f"cannot create the saved runs' folder {self.path.parent}: {exc.strerror or exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=FULL")  # a save that returned is on disk
        return db

    def save(self, run: Run) -> Run:
        """Store ``run`` as a new run (one transaction); the run with its id and time."""
        created = time.time()
        rows = [(seq, method, *_encode(result)) for seq, (method, result) in enumerate(run.calls)]
        db = self._connect()
        try:
            with db:
                cur = db.execute(
                    "INSERT INTO runs (name, view, model, fingerprint, texts, token_ids, params, info, note, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run.name, run.view, run.model, run.fingerprint, json.dumps(run.texts, ensure_ascii=False),
                     json.dumps(run.token_ids), json.dumps(run.params, ensure_ascii=False),
                     json.dumps(dataclasses.asdict(run.info), ensure_ascii=False), run.note, created))
                run_id = cur.lastrowid
                db.executemany("INSERT INTO results (run_id, seq, method, type, fields, arrays) VALUES (?, ?, ?, ?, ?, ?)",
                               [(run_id, *row) for row in rows])
        finally:
            db.close()
        return dataclasses.replace(run, id=run_id, created=created)

    def list(self, text: str = "", model: str = "", view: str = "") -> list[dict]:
        """The runs, newest first, as summaries (no results); filtered by words in the name, texts or note, by
        model and by view."""
        where, args = [], []
        if text:
            where.append("(name LIKE ? OR texts LIKE ? OR note LIKE ?)")
            args += [f"%{text}%"] * 3
        if model:
            where.append("model = ?")
            args.append(model)
        if view:
            where.append("view = ?")
            args.append(view)
        sql = ("SELECT id, name, view, model, texts, note, created FROM runs"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, id DESC")
        db = self._connect()
        try:
            rows = db.execute(sql, args).fetchall()
        finally:
            db.close()
        return [{"id": i, "name": n, "view": v, "model": m, "texts": json.loads(t), "note": note,
                 "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c))}
                for i, n, v, m, t, note, c in rows]

    def get(self, run_id: int) -> Run:
        db = self._connect()
        try:
            row = db.execute("SELECT id, name, view, model, fingerprint, texts, token_ids, params, info, note, created "
                             "FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            results = db.execute("SELECT method, type, fields, arrays FROM results WHERE run_id = ? ORDER BY seq",
                                 (int(run_id),)).fetchall()
        finally:
            db.close()
        if row is None:
            raise LensError(f"no saved run {run_id}; `python -m lens runs list` shows the saved ones")
        i, name, view, model, fp, texts, ids, params, info, note, created = row
        return Run(id=i, name=name, view=view, model=model, fingerprint=fp, texts=json.loads(texts),
                   token_ids=json.loads(ids), params=json.loads(params), info=_info(info),
                   calls=[(method, _decode(kind, fields, arrays)) for method, kind, fields, arrays in results],
                   note=note, created=created)

    def set_note(self, run_id: int, note: str) -> None:
        self._change("UPDATE runs SET note = ? WHERE id = ?", (note, int(run_id)), run_id)

    def rename(self, run_id: int, name: str) -> None:
        self._change("UPDATE runs SET name = ? WHERE id = ?", (name, int(run_id)), run_id)

    def delete(self, run_id: int) -> None:
        self._change("DELETE FROM runs WHERE id = ?", (int(run_id),), run_id)

    def _change(self, sql: str, args: tuple, run_id: int) -> None:
        db = self._connect()
        try:
            with db:
                if db.execute(sql, args).rowcount == 0:
                    raise LensError(f"no saved run {run_id}; `python -m lens runs list` shows the saved ones")
        finally:
            db.close()
