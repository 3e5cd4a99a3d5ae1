"""A command's backend calls answered from the disk cache without loading the model (``python -m lens``).

A command run again (``logit-lens --prompt … --json`` twice) used to load the model (PyTorch, transformers'
modelling code, the weights: several seconds) only to find its result in the results cache. ``Recalling``
stands in for the backend: each call of a method in ``RECALLED`` is looked up under a key of the model's
identity, the method and its arguments; only a miss loads the model (once), computes the result and keeps it
under that key for the next run.

The model's identity without loading it: its files (the bundled or given .gguf file, or a model folder's
config, tokenizer and weight files: path, size, modification time), the torch and transformers versions and
the device, mapped to the weights' fingerprint when the model was last loaded (kept as an entry of its own,
with the model's ``ModelInfo``). A changed file is another identity: the model is loaded and fingerprinted
again. Tiny test models and hub ids have no files to witness them: their calls always load the model.
Only calls whose answer depends on the model and the arguments alone are recalled (not a fitted lens, which
can be fitted again, nor saved steering vectors). Imports nothing heavy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import Callable

from .cache import ResultCache, make_key

# method -> a test of its arguments (None: any); each answers from the model's weights and its arguments alone
RECALLED: dict[str, Callable | None] = {
    "logit_lens": lambda a: getattr(a.get("options"), "lens", "logit") == "logit",
    "rollout": None, "attention_flow": None, "head_patterns": None, "head_summary": None, "route_graph": None,
    "node_detail": None, "contributions": None, "generate": None, "patch": None, "noise_trace": None,
    "patched_lens": None, "dla": None, "sublayer_lens": None, "knockout": None, "anatomy": None,
}


def _plain(value):
    """``value`` as JSON for a key, or raise TypeError (an argument with no plain form is never recalled)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": f"{type(value).__module__}.{type(value).__qualname__}",
                **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(type(value).__name__)


def model_files(ref: str | None) -> list[Path] | None:
    """The files that make the model ``ref`` (default: the bundled model), or None when there are none to witness
    it (a tiny test model, a hub id) or they cannot be found; found without importing torch."""
    from .model.registry import BUNDLED, DEFAULT_MODEL, bundled_file

    ref = (ref or DEFAULT_MODEL).strip()
    try:
        if ref in BUNDLED:
            found = bundled_file(BUNDLED[ref])
            return [found] if found.suffix == ".gguf" else _folder_files(found.parent)
        if ref.startswith("tiny-"):
            return None
        path = Path(ref).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            return [path.resolve()]
        if path.is_dir() and (path / "config.json").is_file():
            return _folder_files(path.resolve())
    except Exception:  # anything unusual: no recall, the command loads the model and says what is wrong
        return None
    return None


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def identity(ref: str | None, device: str, files: list[Path]) -> str:
    """A key for the model as these files, these library versions and this device make it."""
    import importlib.metadata as md

    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    versions = {}
    for dist in ("torch", "transformers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return make_key("model-identity", ref=ref, device=device, files=h.hexdigest(), versions=versions)


class Recalling:
    """The backend ``load()`` makes, answering ``RECALLED`` calls from ``cache`` while it can without making it."""

    def __init__(self, load: Callable[[], object], cache: ResultCache, model_key: str | None):
        self._load, self._cache, self._model_key = load, cache, model_key
        self._backend = None
        self._known = self._identity_entry() if model_key else None  # {"fingerprint", "info"} from the last load

    def _identity_entry(self) -> dict | None:
        hit = self._cache.get(self._model_key)
        return hit[1] if hit is not None and isinstance(hit[1].get("fingerprint"), str) else None

    def backend(self):
        """The real backend (the model loaded now, once); its identity kept for the next command."""
        if self._backend is None:
            self._backend = self._load()
            if self._model_key:
                info = self._backend.info()
                self._known = {"fingerprint": info.fingerprint, "info": dataclasses.asdict(info)}
                self._cache.put(self._model_key, {}, self._known)
        return self._backend

    def info(self):
        if self._backend is None and self._known is not None:
            from .backend import ModelInfo

            try:
                return ModelInfo(**self._known["info"])
            except TypeError:  # written by another version
                pass
        return self.backend().info()

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        method_test = RECALLED.get(name, False)
        if method_test is False:
            return getattr(self.backend(), name)

        def recalled(*args, **kwargs):
            key = self._call_key(name, method_test, args, kwargs)
            if key is not None and self._backend is None:
                hit = self._stored(key)
                if hit is not None:
                    return hit
            result = getattr(self.backend(), name)(*args, **kwargs)
            if key is not None or self._known is not None:
                key = key or self._call_key(name, method_test, args, kwargs)
                if key is not None:
                    self._store(key, result)
            return result

        return recalled

    def _call_key(self, name: str, test: Callable | None, args: tuple, kwargs: dict) -> str | None:
        if self._known is None:
            return None
        given = dict(kwargs)
        given.pop("progress", None)
        try:
            import inspect

            from .backend import Backend

            bound = inspect.signature(getattr(Backend, name)).bind(None, *args, **given)
            arguments = dict(bound.arguments)
            arguments.pop("self", None)
            arguments.pop("progress", None)
            if test is not None and not test(arguments):
                return None
            plain = _plain(arguments)
        except (TypeError, AttributeError):
            return None
        return make_key("call", model=self._known["fingerprint"], method=name, arguments=plain)

    def _stored(self, key: str):
        from .serialize import NotThisType, join

        hit = self._cache.get(key)
        if hit is None:
            return None
        arrays, fields = hit
        where = fields.pop("__type__", None)
        try:
            module, _, qualname = (where or "").rpartition(".")
            if not module.startswith("lens."):
                return None
            cls = getattr(importlib.import_module(module), qualname)
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                return None
            return join(cls, arrays, fields)
        except (NotThisType, ImportError, AttributeError, TypeError, ValueError):
            return None

    def _store(self, key: str, result) -> None:
        from .serialize import split

        if not dataclasses.is_dataclass(result):
            return
        arrays, fields = split(result)
        fields["__type__"] = f"{type(result).__module__}.{type(result).__qualname__}"
        try:
            json.dumps(fields)
        except (TypeError, ValueError):
            return  # a field JSON cannot hold: not recalled
        self._cache.put(key, arrays, fields)


def for_command(args, load: Callable[[], object]):
    """The backend a command's arguments name: ``load()``'s, behind ``Recalling`` where its calls can be recalled
    (a model with files, on this machine's hooks, with the cache on)."""
    if (getattr(args, "no_cache", False) or getattr(args, "backend", "local") != "local" or getattr(args, "remote", False)
            or getattr(args, "trust_remote_code", False)):
        return load()
    files = model_files(getattr(args, "model", None))
    if not files:
        return load()
    from .model.registry import DEFAULT_MODEL, default_cache_root

    ref = (getattr(args, "model", None) or DEFAULT_MODEL).strip()
    try:
        key = identity(ref, str(getattr(args, "device", "cpu")), files)
    except OSError:
        return load()
    return Recalling(load, ResultCache(default_cache_root() / "results"), key)
