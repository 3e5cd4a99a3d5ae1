"""One Backend per model per process, shared by every browser session.

A model loads once, on a thread of its own: a second session asking for it while it
loads waits for that load (with its progress) instead of starting another, and a
load started at server launch (``ui.launch``) is picked up by the first page.
Loaded models are kept least-recently-used first out: the model a session asks for
is always the most recent, so it is never the one unloaded to make room, and a model
still computing for someone is kept until it is idle. In demo mode (lens/hosting.py)
a model off the allowlist is refused before anything is loaded or looked up. Every
computation of every model waits in one queue (``JOBS``).
lens.engine_backend (torch, transformers) is imported on first use, not when a page
is imported, so the page can start drawing while it loads.

Where the model runs: with ``LAYERLENS_WORKER=1`` (set by ``python -m ui.launch``, what ``make run``
starts) models on this machine's hook engine load and compute in one child process (lens/worker/),
so this server never imports torch or transformers and keeps drawing pages while they import; the
child holds the job queue and the results cache. Otherwise (``streamlit run app.py``, the page tests)
they run in this process. The nnsight and NDIF engines always run here. A worker that died is
started again, and its models loaded again, by the next request for them. The worker keeps its answers
where a server started again finds them (lens/recall.py): while that server's worker loads the model, a page
seen before is drawn from them, and only a new computation waits for the load.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future

from lens.backend import Backend
from lens.hosting import hosting
from lens.jobs import JobQueue

HOSTING = hosting()
MAX_LOADED = HOSTING.max_loaded_models  # models kept in memory at once
JOBS = JobQueue(HOSTING.slots, HOSTING.max_waiting, HOSTING.rate_per_minute)
log = logging.getLogger("layerlens")


def default_model() -> str:
    """The model a page shows when none is asked for (ui.state.default_model; here without Streamlit)."""
    from lens.model.registry import DEFAULT_MODEL

    return HOSTING.models[0] if HOSTING.demo else DEFAULT_MODEL


def use_worker() -> bool:
    """Whether local models run in the model worker process (``LAYERLENS_WORKER=1``)."""
    return os.environ.get("LAYERLENS_WORKER", "0").strip() == "1"


_worker = None
_worker_lock = threading.Lock()


def worker():
    """The model worker this server's local models run in (started with the first load)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            from lens.worker import Worker

            # The worker's own queue, with this server's settings: computations wait there, first come first.
            _worker = Worker(HOSTING.slots, HOSTING.max_waiting, HOSTING.rate_per_minute)
        return _worker


ENGINES = {"local": "this machine", "nnsight": "this machine, through nnsight", "ndif": "NDIF (remote GPUs)"}


def engine_key(ref: str, engine: str = "local") -> str:
    """What a loaded backend is kept under: the model alone when it runs here with hooks."""
    return ref if engine == "local" else f"{engine}:{ref}"


class _Load:
    """A model load under way: its result to come, and how far it has got."""

    def __init__(self, ref: str, engine: str = "local"):
        self.ref, self.engine = engine_key(ref, engine), engine
        self.model_ref = ref
        self.future: Future[Backend] = Future()
        self.fraction, self.message = 0.02, "importing PyTorch…"

    def report(self, fraction: float, message: str) -> None:
        self.fraction, self.message = min(1.0, max(0.0, fraction)), message

    def run(self) -> None:
        try:
            backend = self._load()
        except BaseException as exc:  # handed to every waiting page, which shows it
            _finished(self, None)
            self.future.set_exception(exc)
            return
        _finished(self, backend)  # kept before anyone is told, so a waiter finds it loaded
        self.future.set_result(backend)

    def _load(self) -> Backend:
        if self.engine == "local" and use_worker():  # torch and transformers import in the worker, not here
            return worker().load(self.model_ref, progress=self.report, limits=HOSTING.limits)
        import torch  # noqa: F401  (the first model of a process imports it: seconds)

        self.report(0.3, "importing transformers…")
        from lens.cache import ResultCache
        from lens.engine_backend import local_backend
        from lens.model.loading import load_model
        from lens.model.registry import default_cache_root

        cache = ResultCache(default_cache_root() / "results")
        if self.engine == "ndif":
            from lens.model.remote import load_remote
            from lens.engine_backend import nnsight_backend

            self.report(0.5, "asking NDIF and the hub for the model's configuration…")
            return nnsight_backend(load_remote(self.model_ref), cache, remote=True, limits=HOSTING.limits, jobs=JOBS)
        self.report(0.5, "the model code and its weights…")
        loaded = load_model(self.model_ref, progress=self.report)
        if self.engine == "nnsight":
            from lens.engine_backend import nnsight_backend

            return nnsight_backend(loaded, cache, limits=HOSTING.limits, jobs=JOBS)
        return local_backend(loaded, cache, limits=HOSTING.limits, jobs=JOBS)


_lock = threading.Lock()
_loaded: OrderedDict[str, Backend] = OrderedDict()
_loading: dict[str, _Load] = {}


def _finished(load: _Load, backend: Backend | None) -> None:
    with _lock:
        _loading.pop(load.ref, None)
        if backend is None:
            return  # nothing kept from a failure: the next request tries again
        _loaded[load.ref] = backend
        _loaded.move_to_end(load.ref)
        _trim(load.ref)


def _trim(keep: str) -> None:
    """Unload least recently used models beyond MAX_LOADED: never ``keep`` (the one asked for),
    nor one still computing (it goes at a later request, once idle). Called under ``_lock``."""
    idle = [r for r in _loaded if r != keep and not _busy(_loaded[r])]  # least recently used first
    while len(_loaded) > MAX_LOADED and idle:
        _close(_loaded.pop(idle.pop(0)))


def _close(backend: Backend) -> None:
    close = getattr(backend, "close", None)  # a worker's model: its memory is freed there
    if callable(close):
        close()


def _alive(backend: Backend) -> bool:
    alive = getattr(backend, "alive", None)  # a worker's model is gone with its worker
    return bool(alive()) if callable(alive) else True


def _busy(backend: Backend) -> bool:
    busy = getattr(backend, "busy", None)
    return bool(busy()) if callable(busy) else False


def _start(ref: str, engine: str = "local") -> Backend | _Load:
    """The loaded backend for ``ref`` on ``engine``, else its load (started here if none is under way)."""
    ref = HOSTING.check_model(ref)
    if engine not in ENGINES or (engine == "ndif" and HOSTING.demo):
        from lens.errors import LensError

        raise LensError(f"unknown engine {engine!r}" if engine not in ENGINES else
                        "a demo server runs its models here, not on NDIF")
    key = engine_key(ref, engine)
    with _lock:
        if key in _loaded and not _alive(_loaded[key]):
            worker_of = getattr(_loaded[key], "worker", None)
            log.warning("the model worker holding %s stopped (%s); loading the model again", key,
                        worker_of.why_ended() if worker_of is not None else "unknown cause")
            del _loaded[key]
        if key in _loaded:
            _loaded.move_to_end(key)
            _trim(key)
            return _loaded[key]
        load = _loading.get(key)
        if load is None:
            load = _loading[key] = _Load(ref, engine)
            threading.Thread(target=load.run, name=f"load {ref}", daemon=True).start()
        return load


def preload(ref: str) -> Future[Backend]:
    """Start loading ``ref`` in the background (no page needed); its result as a future."""
    got = _start(ref)
    if isinstance(got, _Load):
        return got.future
    done: Future[Backend] = Future()
    done.set_result(got)
    return done


def get_backend(ref: str, engine: str = "local") -> Backend:
    """The backend for ``ref`` on ``engine``, loading (and on first use converting) it with a progress bar. While
    the model worker loads a model it loaded before, a stand-in that answers what it answered then from the disk
    cache (``recalled``): a page seen before draws at once, and only a new computation waits for the load."""
    got = _start(ref, engine)
    if not isinstance(got, _Load):
        return got
    stand_in = recalled(got)
    if stand_in is not None:
        return stand_in
    return _waited(got)


def _waited(got: _Load) -> Backend:
    """The backend ``got`` loads, a progress bar in the page until it is there."""
    import streamlit as st  # here, not at the top: ui.launch starts the load before Streamlit is imported

    from ui.live import prefetch_charts

    box = st.empty()
    with box.container():
        bar = st.progress(got.fraction, text=f"Loading {got.model_ref}: {got.message}")
        prefetch_charts()  # the browser loads its chart code meanwhile
        while True:
            try:
                backend = got.future.result(timeout=0.1)
                break
            except TimeoutError:
                bar.progress(got.fraction, text=f"Loading {got.model_ref}: {got.message}")
            except BaseException:
                box.empty()  # the error is shown in the page, not under a stale progress bar
                raise
    box.empty()
    return backend


def recalled(got: _Load) -> Backend | None:
    """A stand-in for the backend ``got`` is loading in the model worker: the answers the worker kept in the disk
    cache the last time it held this model (lens/recall.py; same files, library versions and prompt limits) come
    from there, anything else waits for the load (with its progress bar). None where there is nothing to recall."""
    if got.engine != "local" or not use_worker() or worker().settings.get("no_cache"):
        return None
    from lens.cache import ResultCache
    from lens.model.registry import default_cache_root
    from lens.recall import Recalling, dashboard_identity

    key = dashboard_identity(got.model_ref, "cpu", HOSTING.limits)
    if key is None:
        return None
    def load() -> Backend:  # a call with no kept answer: the load, its failure shown as get_backend's callers show it
        from ui.errors import shown_in_page

        with shown_in_page(f"Loading model {got.model_ref!r}"):
            return _waited(got)

    stand_in = Recalling(load, ResultCache(default_cache_root() / "results"), key, store=False, scoped=True)
    return stand_in if stand_in.can_recall else None


def loaded_models() -> list[str]:
    """Names of the loaded models, least recently used first."""
    with _lock:
        return list(_loaded)
