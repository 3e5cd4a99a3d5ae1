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

The dashboard's model worker keeps its answers the same way (``Remembering``), so a server started again draws
every page seen before from the disk cache while its model loads (ui/backends.py).
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
    "tokenize": None, "sample": None,  # a sample draws with its options' seed: the same arguments, the same draw
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


def identity(ref: str | None, device: str, files: list[Path], setting: dict | None = None) -> str:
    """A key for the model as these files, these library versions and this device make it (and ``setting``: what
    else a server's answers depend on, its prompt limits)."""
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
    extra = {"setting": setting} if setting else {}
    return make_key("model-identity", ref=ref, device=device, files=h.hexdigest(), versions=versions, **extra)


def call_key(fingerprint: str, name: str, args: tuple, kwargs: dict, scope: str | None = None) -> str | None:
    """The cache key of the call ``name(*args, **kwargs)`` on the model with this weights' ``fingerprint``, or None
    when it is not recalled (not in ``RECALLED``, its arguments fail the method's test, or one has no plain form).
    ``scope``: what else the answer depends on (a server's identity key, its prompt limits in it: a prompt another
    server or a command took may be too long for this one)."""
    test = RECALLED.get(name, False)
    if test is False:
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
    return make_key("call", model=fingerprint, method=name, arguments=plain, **({"scope": scope} if scope else {}))


def stored_answer(cache: ResultCache, key: str):
    """The answer kept under ``key`` (a LayerLens result, or a plain JSON value), or None."""
    from .serialize import NotThisType, join

    hit = cache.get(key)
    if hit is None:
        return None
    arrays, fields = hit
    if "__value__" in fields and not arrays:
        return fields["__value__"]
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


def store_answer(cache: ResultCache, key: str, result) -> None:
    """Keep ``result`` under ``key``: a LayerLens result's arrays and fields, or a plain JSON value (a token list);
    anything else is not kept."""
    from .serialize import split

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        arrays, fields = split(result)
        fields["__type__"] = f"{type(result).__module__}.{type(result).__qualname__}"
    else:
        arrays, fields = {}, {"__value__": result}
    try:
        json.dumps(fields)
    except (TypeError, ValueError):
        return  # a field JSON cannot hold: not recalled
    cache.put(key, arrays, fields)


class Recalling:
    """The backend ``load()`` makes, answering ``RECALLED`` calls from ``cache`` while it can without making it.
    ``store=False``: answers computed after the load are not kept here (a dashboard's worker keeps them);
    ``scoped``: the answers are the ones kept under this very identity (``Remembering``'s), not any of the model's."""

    def __init__(self, load: Callable[[], object], cache: ResultCache, model_key: str | None, store: bool = True,
                 scoped: bool = False):
        self._load, self._cache, self._model_key, self._keep = load, cache, model_key, store
        self._scope = model_key if scoped else None
        self._backend = None
        self._known = self._identity_entry() if model_key else None  # {"fingerprint", "info"} from the last load

    @property
    def can_recall(self) -> bool:
        """Whether the model was loaded before under this identity (else every call loads it)."""
        return self._known is not None

    def _identity_entry(self) -> dict | None:
        hit = self._cache.get(self._model_key)
        return hit[1] if hit is not None and isinstance(hit[1].get("fingerprint"), str) else None

    def backend(self):
        """The real backend (the model loaded now, once); its identity kept for the next command."""
        if self._backend is None:
            self._backend = self._load()
            if self._model_key and self._keep:
                self._known = remember_identity(self._cache, self._model_key, self._backend.info())
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
        if name not in RECALLED:
            return getattr(self.backend(), name)

        def recalled(*args, **kwargs):
            key = self._call_key(name, args, kwargs)
            if key is not None and self._backend is None:
                hit = stored_answer(self._cache, key)
                if hit is not None:
                    return hit
            result = getattr(self.backend(), name)(*args, **kwargs)
            if self._keep and self._known is not None:
                key = key or self._call_key(name, args, kwargs)
                if key is not None:
                    store_answer(self._cache, key, result)
            return result

        return recalled

    def _call_key(self, name: str, args: tuple, kwargs: dict) -> str | None:
        return None if self._known is None else call_key(self._known["fingerprint"], name, args, kwargs, self._scope)


def remember_identity(cache: ResultCache, model_key: str, info) -> dict:
    """Keep the loaded model's fingerprint and ``ModelInfo`` under its identity: what the next process recalls by."""
    known = {"fingerprint": info.fingerprint, "info": dataclasses.asdict(info)}
    cache.put(model_key, {}, known)
    return known


class Remembering:
    """A loaded model's recallable answers kept as a scoped ``Recalling`` finds them (under its identity, the
    server's limits in it): the dashboard's model worker keeps each one it computes, so a server started again with
    the same settings answers them while its model loads."""

    def __init__(self, cache: ResultCache, model_key: str, info):
        self.cache, self.model_key = cache, model_key
        self.fingerprint = remember_identity(cache, model_key, info)["fingerprint"]

    def remember(self, name: str, kwargs: dict, result) -> None:
        key = call_key(self.fingerprint, name, (), kwargs, self.model_key)
        if key is not None and not self.cache.has(key):
            store_answer(self.cache, key, result)


def dashboard_identity(ref: str, device: str, limits) -> str | None:
    """The identity key the dashboard's model worker keeps ``ref``'s answers under (on ``device``, with the server's
    prompt ``limits``: an answer kept under other limits may not have passed this server's), or None where nothing
    is recalled (a model without files to witness it)."""
    files = model_files(ref)
    if not files:
        return None
    try:
        return identity(ref.strip(), str(device), files, {"server limits": _plain(limits)})
    except (OSError, TypeError):
        return None


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
