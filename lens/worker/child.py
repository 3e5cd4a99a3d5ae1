"""The model worker: ``python -m lens.worker.child FD SETTINGS`` (started by ``Worker``, never by hand).

Reads calls from the socket ``FD`` (its parent holds the other end) and answers each on a thread of its own,
so a cached result or a progress line is never stuck behind a long computation; computations wait in this
process's one JobQueue, as they did in the server (first come, ``slots`` at once, results shared through each
backend's ``Computations``). Models load here, with PyTorch and transformers imported here only.
Exits when its parent goes: the socket reads end of file, and a watch on the parent's id catches the rest,
so no worker outlives its server.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

from . import wire
from ..logs import log_to_stderr

STARTED = time.perf_counter()


def _die_with_parent(parent: int) -> None:
    """Exit once the parent has gone, even if something else still holds its end of the socket: a child
    whose parent dies is handed to another process, so its parent id changes. (Linux's PR_SET_PDEATHSIG
    would fire when the *thread* that started us ends, which a server's loading thread does.)"""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    if os.getppid() != parent:
        os._exit(0)  # it died before we got here
    threading.Thread(target=watch, name="parent watch", daemon=True).start()


class Child:
    def __init__(self, conn: Connection, settings: dict):
        self.conn, self.settings = conn, settings
        self.send_lock = threading.Lock()
        self.backends: dict[str, object] = {}
        self.memories: dict[str, object] = {}  # ref -> its Remembering (lens/recall.py), where answers are kept
        self.running: set[int] = set()  # calls answered now
        self.cancelled: set[int] = set()  # of those, the ones whose caller left
        self._calls_lock = threading.Lock()
        self._jobs = None
        self._load_lock = threading.Lock()

    def send(self, message) -> None:
        data = wire.dumps(message)
        with self.send_lock:
            self.conn.send_bytes(data)

    @property
    def jobs(self):
        if self._jobs is None:
            from ..jobs import JobQueue

            q = self.settings.get("queue") or {}
            self._jobs = JobQueue(q.get("slots", 1), q.get("max_waiting", 64), q.get("rate_per_minute"))
        return self._jobs

    def serve(self) -> None:
        while True:
            try:
                message = wire.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                os._exit(0)  # the server has gone: so do we, computations and all
            kind = message[0]
            if kind == "cancel":
                with self._calls_lock:  # a call already answered has nothing to stop (and would stay in the set)
                    if message[1] in self.running:
                        self.cancelled.add(message[1])
            elif kind == "unload":
                self.backends.pop(message[1], None)
                self.memories.pop(message[1], None)  # its memory goes once no call of it is left
            elif kind == "call":
                with self._calls_lock:
                    self.running.add(message[1])
                threading.Thread(target=self.answer, args=message[1:], daemon=True,
                                 name=f"call {message[1]}").start()

    def answer(self, call_id: int, ref: str, method: str, kwargs: dict, flags: dict) -> None:
        from ..jobs import Asker, asking

        def on_wait(place: int, running: int) -> None:
            self.send(("wait", call_id, place, running))

        def progress(fraction: float, text: str) -> None:
            self.send(("progress", call_id, fraction, text))

        asker = Asker(who=flags.get("who"), on_wait=on_wait if flags.get("wait") else None,
                      alive=lambda: call_id not in self.cancelled, ahead=bool(flags.get("ahead")))
        try:
            with asking(asker):
                if flags.get("progress"):
                    kwargs["progress"] = progress
                if method == "__load__":
                    result = self.load(ref, **kwargs)
                else:
                    backend = self.backend(ref)
                    for name, value in kwargs.items():  # another model held here
                        if isinstance(value, wire.OtherModel):
                            kwargs[name] = self.backend(value.ref)
                    result = getattr(backend, method)(**kwargs)
            self.send(("done", call_id, result))
            if method != "__load__":
                self.remember(ref, method, kwargs, result)
        except BaseException as exc:
            from ..errors import LensError

            blob, module, name, text = wire.error_message(exc)
            tb = "" if isinstance(exc, LensError) else "".join(traceback.format_exception(exc))
            try:
                self.send(("error", call_id, blob, module, name, text, tb))
            except (OSError, EOFError):
                os._exit(0)
        finally:
            with self._calls_lock:
                self.running.discard(call_id)
                self.cancelled.discard(call_id)

    def remember(self, ref: str, method: str, kwargs: dict, result) -> None:
        """Keep a recallable answer for the next server's start (once: an answer kept before is not written again),
        after it was sent: the page does not wait for the write."""
        memory = self.memories.get(ref)
        if memory is None:
            return
        try:
            memory.remember(method, kwargs, result)
        except Exception as exc:  # a cache that cannot be written only means a slower next start
            logging.getLogger("layerlens").warning("could not keep %s's answer for the next start (%s)", method, exc)

    def backend(self, ref: str):
        try:
            return self.backends[ref]
        except KeyError:
            from ..errors import LensError

            raise LensError(f"the model worker holds no model {ref!r} (unloaded): ask again to load it") from None

    def load(self, ref: str, model: str, engine_kwargs: dict, progress=None):
        """Load ``model`` as the backend ``ref`` (progress as ui/backends.py's load reports it); its ModelInfo."""
        report = progress or (lambda fraction, text: None)
        with self._load_lock:  # one load at a time: two would only slow each other down
            if ref in self.backends:
                return self.backends[ref].info()
            t0 = time.perf_counter()
            report(0.02, "importing PyTorch…")
            import torch  # noqa: F401  (seconds: the first model of this process)

            t1 = time.perf_counter()
            report(0.3, "importing transformers…")
            from ..cache import ResultCache
            from ..engine_backend import local_backend
            from ..model.loading import load_model
            from ..model.registry import default_cache_root
            from ..recall import Remembering, dashboard_identity

            report(0.5, "the model code and its weights…")
            device = engine_kwargs.pop("device", "cpu")
            loaded = load_model(model, progress=progress, device=device)
            cache = None if self.settings.get("no_cache") else ResultCache(default_cache_root() / "results")
            backend = local_backend(loaded, cache, jobs=self.jobs, **engine_kwargs)
            self.backends[ref] = backend
            self.memories.pop(ref, None)
            identity = dashboard_identity(model, device, backend.limits) if cache is not None else None
            if identity is not None:  # its answers kept where a server started again finds them (ui/backends.py)
                try:
                    self.memories[ref] = Remembering(cache, identity, backend.info())
                except Exception as exc:  # only a slower next start: never a failed load
                    logging.getLogger("layerlens").warning("%s's answers will not be kept (%s)", model, exc)
            logging.getLogger("layerlens").info(
                "%s loaded in %.1f s (PyTorch imported in %.1f s), %.1f s after this worker started", model,
                time.perf_counter() - t0, t1 - t0, time.perf_counter() - STARTED)
            return backend.info()


def main(argv: list[str]) -> None:
    fd, settings = int(argv[0]), json.loads(argv[1])
    _die_with_parent(int(settings.get("parent", os.getppid())))
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    log_to_stderr("LayerLens (model worker)")
    Child(Connection(fd), settings).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
