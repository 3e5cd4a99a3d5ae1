"""A talk: a title and scenes, kept as a plain JSON file the speaker owns.

``{"title": …, "scenes": [{"title", "view", "params", "notes", "question", "answer"}]}``: ``view`` is a dashboard
page as the registry knows it (``logit_lens``, ``attention``, ``patching``…; ``logit-lens`` is read as
``logit_lens``), ``params`` exactly that page's URL query (strings), so a scene opens as a link does. A question is
shown first and its answer on the next key press (predict, then reveal).

Saved talks live beside the saved runs, in the user's data folder (``LAYERLENS_TALKS`` moves them), never in the
cache: clearing the cache never touches them. Any other path works too.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import LensError
from ..files import atomic_write_text
from .links import TALK_KEYS, canonical_view, resolve

MAX_SCENES = 200
MAX_BYTES = 2_000_000  # a talk is text: a larger file is not one
MAX_TEXT = 20_000  # characters of one title, note, question, answer or parameter
FIELDS = ("title", "view", "params", "notes", "question", "answer")
SUFFIX = ".json"


@dataclass(frozen=True)
class Scene:
    view: str  # a page's URL path (lens.views.PAGES)
    params: dict = field(default_factory=dict)  # that page's URL query: name -> text
    title: str = ""
    notes: str = ""  # the speaker's notes, hidden from the room
    question: str = ""  # asked first; "" for none
    answer: str = ""  # revealed on the next key press

    def to_dict(self) -> dict:
        return {"title": self.title, "view": self.view, "params": dict(self.params), "notes": self.notes,
                "question": self.question, "answer": self.answer}


@dataclass(frozen=True)
class Talk:
    title: str
    scenes: tuple[Scene, ...] = ()

    def to_dict(self) -> dict:
        return {"title": self.title, "scenes": [s.to_dict() for s in self.scenes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"

    # Edits return a new talk (the page keeps one in its state and replaces it).
    def with_scenes(self, scenes) -> "Talk":
        return replace(self, scenes=tuple(scenes))

    def moved(self, i: int, step: int) -> "Talk":
        j = i + step
        if not (0 <= i < len(self.scenes) and 0 <= j < len(self.scenes)):
            return self
        s = list(self.scenes)
        s[i], s[j] = s[j], s[i]
        return self.with_scenes(s)

    def deleted(self, i: int) -> "Talk":
        return self.with_scenes(s for k, s in enumerate(self.scenes) if k != i)

    def added(self, scene: Scene) -> "Talk":
        if len(self.scenes) >= MAX_SCENES:
            raise LensError(f"a talk holds at most {MAX_SCENES} scenes")
        return self.with_scenes((*self.scenes, scene))

    def edited(self, i: int, **changes) -> "Talk":
        s = list(self.scenes)
        s[i] = replace(s[i], **changes)
        return self.with_scenes(s)


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LensError(f"{what} must be text, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise LensError(f"{what} is longer than {MAX_TEXT:,} characters")
    return value


def scene_from_dict(d, where: str = "scene") -> Scene:
    """A checked scene: its page known, its params the page's URL query (text values), which the registry
    can draw (lens.talks.links.resolve)."""
    if not isinstance(d, dict):
        raise LensError(f"{where} must be an object with {', '.join(FIELDS)}, not {type(d).__name__}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise LensError(f"{where} has no field {', '.join(map(repr, unknown))}; it takes {', '.join(FIELDS)}")
    if "view" not in d:
        raise LensError(f"{where} names no view (a page such as logit_lens or attention)")
    if not isinstance(d["view"], str):
        raise LensError(f"{where}: view must be text, not {type(d['view']).__name__}")
    try:
        view = canonical_view(d["view"])
    except LensError as exc:
        raise LensError(f"{where}: {exc}") from None
    params = d.get("params") or {}
    if not isinstance(params, dict):
        raise LensError(f"{where}: params must be an object of URL parameters, not {type(params).__name__}")
    for k, v in params.items():
        if not isinstance(v, str):
            raise LensError(f"{where}: URL parameter {k!r} must be text, not {type(v).__name__}")
        _text(v, f"{where}: URL parameter {k!r}")
    scene = Scene(view, dict(params), *(_text(d.get(f), f"{where}: {f}") for f in
                                        ("title", "notes", "question", "answer")))
    if scene.answer and not scene.question:
        raise LensError(f"{where} has an answer but no question")
    try:
        resolve(scene)
    except LensError as exc:
        raise LensError(f"{where}: {exc}") from None
    return scene


def talk_from_dict(d) -> Talk:
    if not isinstance(d, dict):
        raise LensError(f"a talk is an object {{\"title\": …, \"scenes\": […]}}, not {type(d).__name__}")
    unknown = sorted(set(d) - {"title", "scenes"})
    if unknown:
        raise LensError(f"a talk has no field {', '.join(map(repr, unknown))}; it takes title and scenes")
    scenes = d.get("scenes", [])
    if not isinstance(scenes, list):
        raise LensError(f"the talk's scenes must be a list, not {type(scenes).__name__}")
    if len(scenes) > MAX_SCENES:
        raise LensError(f"the talk has {len(scenes)} scenes; a talk holds at most {MAX_SCENES}")
    return Talk(_text(d.get("title"), "the talk's title"),
                tuple(scene_from_dict(s, f"scene {i + 1}") for i, s in enumerate(scenes)))


def parse_talk(data: str | bytes, name: str = "the talk") -> Talk:
    """A talk from a file's bytes or text; a broken one is refused in one line naming what is wrong."""
    if len(data) > MAX_BYTES:
        raise LensError(f"{name} is {len(data) / 1e6:.1f} MB; a talk file is at most {MAX_BYTES / 1e6:.0f} MB")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise LensError(f"{name} is not UTF-8 text") from None
    try:
        d = json.loads(data)
    except json.JSONDecodeError as exc:
        raise LensError(f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    try:
        return talk_from_dict(d)
    except LensError as exc:
        raise LensError(f"{name}: {exc}") from None


def load_talk(path: str | os.PathLike) -> Talk:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise LensError(f"{path.name} is {size / 1e6:.1f} MB; a talk file is at most {MAX_BYTES / 1e6:.0f} MB")
        data = path.read_bytes()
    except OSError as exc:
        raise LensError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_talk(data, path.name)


def save_talk(talk: Talk, path: str | os.PathLike) -> Path:
    """Write ``talk`` to ``path`` in one piece (a half-written talk never replaces a whole one)."""
    path = Path(path)
    talk_from_dict(talk.to_dict())  # only a talk that loads again is written
    try:
        atomic_write_text(path, talk.to_json())
    except OSError as exc:
        raise LensError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# ---------------------------------------------------------------- the user's talks folder

def talks_dir() -> Path:
    """``LAYERLENS_TALKS``, else a ``talks`` folder beside the saved runs' database (user data, not cache)."""
    if os.environ.get("LAYERLENS_TALKS"):
        return Path(os.environ["LAYERLENS_TALKS"]).expanduser()
    from ..runs.store import default_runs_path

    return default_runs_path().parent / "talks"


def file_name(name: str) -> str:
    """A saved talk's file name for ``name`` (letters, digits, - and _; others become -)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip()).strip("-")[:80]
    if not stem:
        raise LensError("name the talk (letters, digits, - or _)")
    return stem + SUFFIX


def saved_talks() -> list[str]:
    """The names of the talks saved in ``talks_dir()``, sorted."""
    folder = talks_dir()
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def save_named(talk: Talk, name: str) -> Path:
    folder = talks_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LensError(f"cannot make the talks folder {folder}: {exc.strerror or exc}") from None
    return save_talk(talk, folder / file_name(name))


def load_named(name: str) -> Talk:
    path = talks_dir() / file_name(name)
    if not path.exists():
        raise LensError(f"no saved talk named {name!r} in {talks_dir()}")
    return load_talk(path)


# ---------------------------------------------------------------- a pasted link

def scene_query(url: str) -> tuple[str, dict[str, str]]:
    """A pasted LayerLens link (``http://host/attention?view=Heads&prompt=…``, or only its path and query) as its
    page and URL query; the player's own keys (present, talk, scene) are left out, and a multi-choice box's
    repeated key kept as its values one per line."""
    text = (url or "").strip()
    if not text:
        raise LensError("paste a LayerLens link (its address, e.g. http://localhost:8501/attention?view=Heads)")
    parts = urlsplit(text if "://" in text or text.startswith("/") else "/" + text)
    page = parts.path.strip("/").rpartition("/")[2]
    if not page:
        raise LensError("the link opens the home page, which is not a view: open a page and copy its link")
    view = canonical_view(page)
    from .urls import MULTI

    query = {k: "\n".join(v) if k in MULTI else v[-1]
             for k, v in parse_qs(parts.query, keep_blank_values=True).items() if k not in ("present", *TALK_KEYS)}
    return view, query


def scene_from_url(url: str, title: str = "", **texts):
    """A checked scene for a pasted link."""
    view, query = scene_query(url)
    return scene_from_dict({"view": view, "params": query, "title": title, **texts}, "that link")
