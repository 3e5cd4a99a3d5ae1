"""The server's side of the model worker: ``Worker`` (the child process and its socket) and ``WorkerBackend``
(the Backend protocol for one model held there).

A call is sent with its arguments (text, numbers, option dataclasses), and the calling thread waits for its
answer while relaying what the worker reports meanwhile: progress lines to the call's ``progress=``, the place
in the job queue to the asker's ``on_wait`` (lens/jobs.py), both on the caller's own thread (a Streamlit page
draws them). An asker who leaves has the call cancelled in the worker (its work stops at its next checkpoint).
Errors come back as the worker raised them (type and message). If the worker dies, every call under way fails
with a message saying so, and the next load starts a new worker.
"""
from __future__ import annotations

import inspect
import itertools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path
from multiprocessing.connection import Connection

from ..backend import Backend, ModelInfo
from ..errors import LensError
from ..jobs import Cancelled, current
from . import wire

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.25  # how often a waiting caller checks that its asker is still there


class WorkerDied(LensError):
    """The model worker process ended while a call waited for it."""


class Worker:
    """One child process holding any number of models; started on first use, again after it died."""

    def __init__(self, slots: int = 1, max_waiting: int = 64, rate_per_minute: int | None = None,
                 no_cache: bool = False, env: dict | None = None):
        self.settings = {"queue": {"slots": slots, "max_waiting": max_waiting, "rate_per_minute": rate_per_minute},
                         "no_cache": no_cache}
        self.env = env
        self.generation = 0  # counts the processes started: a model loaded in an earlier one is gone
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[queue.SimpleQueue, Connection]] = {}  # each call's answers, and its process
        self._refs: dict[int, str] = {}  # the model each call under way is for
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._conn: Connection | None = None
        self.ended: str | None = None  # why the last process ended, when it did

    # ------------------------------------------------------------ the process

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._conn is not None

    def why_ended(self) -> str:
        """Why the last worker process ended (its exit code or signal), as far as known yet."""
        if self.ended:
            return self.ended
        code = self._proc.poll() if self._proc is not None else None
        return _exit_text(code) if code is not None else "restarted since"

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the process now (it imports PyTorch while the caller goes on), if it is not running."""
        self._ensure()

    def _ensure(self) -> tuple[Connection, int]:
        with self._lock:
            if not self.alive():
                self._start()
            return self._conn, self.generation

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        settings = {**self.settings, "parent": os.getpid()}
        env = {**os.environ, **(self.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lens.worker.child", str(theirs.fileno()), json.dumps(settings)],
            pass_fds=(theirs.fileno(),), cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        # A duplicate for the Connection, the socket kept to shut down: closing a descriptor another thread is
        # reading does not end that read (nor tell the worker), shutting the socket down does both.
        self._sock = ours
        self._conn = Connection(os.dup(ours.fileno()))
        self.generation += 1
        self.ended = None
        threading.Thread(target=self._read, args=(self._conn, self._proc, ours), daemon=True,
                         name=f"model worker {self._proc.pid}").start()

    def _read(self, conn: Connection, proc: subprocess.Popen, sock: socket.socket) -> None:
        """Hand each message to the call it answers; when the worker ends, fail every call still waiting."""
        while True:
            try:
                message = wire.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            except Exception as exc:  # a message this side refuses to rebuild: the worker is not to be trusted
                proc.kill()
                self._died(conn, proc, sock, f"it sent a message that was refused ({exc})")
                return
            call = self._calls.get(message[1])
            if call is not None:
                call[0].put(message)
        self._died(conn, proc, sock, None)

    def _died(self, conn: Connection, proc: subprocess.Popen, sock: socket.socket, why: str | None) -> None:
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        with self._lock:
            if self._conn is conn:
                self._conn = None
                self.ended = why or _exit_text(code)
            ended = self.ended or _exit_text(code)
        for end in (conn, sock):
            try:
                end.close()
            except OSError:
                pass
        for box, its in list(self._calls.values()):
            if its is conn:  # not the calls of a worker started since
                box.put(("died", None, ended))

    def close(self) -> None:
        """End the worker (its models go with it)."""
        with self._lock:
            proc, sock, self._conn = self._proc, self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the worker reads end of file and exits
            except OSError:
                pass
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _send(self, conn: Connection, message) -> None:
        data = wire.dumps(message)
        with self._send_lock:
            conn.send_bytes(data)

    # ------------------------------------------------------------ calls

    def load(self, ref: str, model: str | None = None, progress=None, **engine_kwargs) -> "WorkerBackend":
        """Load ``model`` (default: ``ref``) in the worker as ``ref``; ``engine_kwargs`` go to local_backend
        (``limits``, ``token_limit``) or load_model (``device``). Progress as the load reports it."""
        conn, generation = self._ensure()
        info = self._call(conn, ref, "__load__", {"model": model or ref, "engine_kwargs": engine_kwargs}, progress)
        return WorkerBackend(self, ref, info, generation)

    def unload(self, ref: str) -> None:
        conn = self._conn
        if conn is not None:
            try:
                self._send(conn, ("unload", ref))
            except OSError:
                pass

    def busy(self, ref: str) -> bool:
        return ref in list(self._refs.values())

    def _call(self, conn: Connection, ref: str, method: str, kwargs: dict, progress=None):
        asker = current()
        call_id = next(self._ids)
        box: queue.SimpleQueue = queue.SimpleQueue()
        self._calls[call_id] = (box, conn)
        self._refs[call_id] = ref
        flags = {"who": asker.who, "wait": asker.on_wait is not None, "progress": progress is not None,
                 "ahead": asker.ahead}
        answered = False
        try:
            try:
                self._send(conn, ("call", call_id, ref, method, kwargs, flags))
            except OSError:
                raise WorkerDied(f"the model worker has stopped ({self.ended or 'its connection is closed'}); "
                                 "ask again to start it and load the model") from None
            while True:
                try:
                    message = box.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    message = None
                # Asked after every report too, not only on a quiet poll: a caller in line gets its place at every
                # poll of the worker's queue, so a wait that only asked then could miss a caller who left. (An
                # answer that has come is taken.)
                if (message is None or message[0] in ("progress", "wait")) and asker.alive is not None \
                        and not asker.alive():
                    raise Cancelled()
                if message is None:
                    continue
                kind = message[0]
                if kind == "progress" and progress is not None:
                    progress(message[2], message[3])
                elif kind == "wait" and asker.on_wait is not None:
                    asker.on_wait(message[2], message[3])
                elif kind == "done":
                    answered = True
                    return message[2]
                elif kind == "error":
                    answered = True
                    _, _, blob, module, name, text, tb = message
                    exc = wire.rebuild_error(blob, module, name, text)
                    if tb:
                        exc.add_note(f"in the model worker (pid {self.pid()}):\n{tb.rstrip()}")
                    raise exc
                elif kind == "died":
                    answered = True
                    raise WorkerDied(f"the model worker stopped while computing ({message[2]}); "
                                     "ask again to start it and load the model")
        finally:
            self._calls.pop(call_id, None)
            self._refs.pop(call_id, None)
            if not answered:  # the caller left (or its page stopped): the worker drops the work
                try:
                    self._send(conn, ("cancel", call_id))
                except OSError:
                    pass


def _exit_text(code: int | None) -> str:
    if code is None:
        return "it is no longer reachable"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ------------------------------------------------------------------ the Backend over the worker

def _protocol_methods() -> dict[str, inspect.Signature]:
    """Every method of the Backend protocol but ``info`` (answered here), with its signature."""
    out = {}
    for name, fn in vars(Backend).items():
        if callable(fn) and not name.startswith("_") and name != "info":
            out[name] = inspect.signature(fn)
    return out


class WorkerBackend:
    """The Backend protocol for the model ``ref`` held by ``worker``; ``info()`` is kept from the load."""

    def __init__(self, worker: Worker, ref: str, info: ModelInfo, generation: int):
        self.worker, self.ref, self._info, self.generation = worker, ref, info, generation

    def info(self) -> ModelInfo:
        return self._info

    def alive(self) -> bool:
        """False once the worker that loaded this model has ended (a new one holds no model yet)."""
        return self.worker.alive() and self.worker.generation == self.generation

    def busy(self) -> bool:
        return self.worker.busy(self.ref)

    def close(self) -> None:
        """Unload the model from the worker."""
        if self.alive():
            self.worker.unload(self.ref)

    def _forward(self, method: str, signature: inspect.Signature, args: tuple, kwargs: dict):
        bound = signature.bind(self, *args, **kwargs)
        given = dict(bound.arguments)
        given.pop("self")
        progress = given.pop("progress", None)
        from ..recall import Recalling

        for name, value in given.items():
            if isinstance(value, Recalling):  # another model still loading, standing in (ui/backends.py)
                value = given[name] = value.backend()
            if isinstance(value, WorkerBackend):
                if value.worker is not self.worker:
                    raise LensError("both models must be served by the same model worker to be compared")
                given[name] = wire.OtherModel(value.ref)
            elif name == "other":  # a backend in this process: its model is not in the worker
                raise LensError("both models must run the same way (here or in the model worker) to be compared")
        if not self.alive():
            raise WorkerDied(f"the model worker that held {self.ref} has stopped "
                             f"({self.worker.why_ended()}); ask again to load the model")
        conn = self.worker._conn
        if conn is None:
            raise WorkerDied(f"the model worker that held {self.ref} has stopped; ask again to load the model")
        return self.worker._call(conn, self.ref, method, given, progress)


def _make(name: str, signature: inspect.Signature):
    def method(self, *args, **kwargs):
        return self._forward(name, signature, args, kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Backend.{name}, computed in the model worker."
    return method


for _name, _sig in _protocol_methods().items():
    setattr(WorkerBackend, _name, _make(_name, _sig))
