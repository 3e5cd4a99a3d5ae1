"""A bounded first-come queue for heavy computations, shared by every session of a server.

A backend runs each result it must compute (a cache miss) through ``JobQueue.run``:
at most ``slots`` run at once, at most ``max_waiting`` wait, and each asker may start
only ``rate_per_minute`` a minute. Who is asking travels in a context variable set by
the front end (``asking``): an opaque name for the rate, a callback told the asker's
place in line while it waits, and a test of whether the asker is still there. An
asker that has left is dropped from the line (``Cancelled``), and long work calls
``checkpoint()`` between its steps to stop early. Imports nothing heavy.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from .errors import LensError

T = TypeVar("T")
POLL_SECONDS = 0.25


class Busy(LensError):
    """The server cannot take this computation now: its line is full, or the asker's rate is spent."""


class Cancelled(BaseException):
    """The asker has left: stop its work. (A BaseException, so ``except Exception`` lets it pass.)"""


@dataclass(frozen=True)
class Asker:
    who: str | None = None  # rate-limited per name; None: not limited (the server's own warm-up)
    # Called while waiting, every POLL_SECONDS, with (place in line from 1, running now); (0, n): started.
    on_wait: Callable[[int, int], None] | None = None
    alive: Callable[[], bool] | None = None  # False once the asker has gone


_asker: contextvars.ContextVar[Asker] = contextvars.ContextVar("layerlens_asker", default=Asker())


@contextlib.contextmanager
def asking(asker: Asker) -> Iterator[None]:
    """Run the enclosed calls on behalf of ``asker``."""
    token = _asker.set(asker)
    try:
        yield
    finally:
        _asker.reset(token)


def current() -> Asker:
    return _asker.get()


def checkpoint() -> None:
    """Raise Cancelled if the current asker has left."""
    alive = _asker.get().alive
    if alive is not None and not alive():
        raise Cancelled()


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def place_text(place: int, running: int) -> str:
    """'You are 2nd in line …' for a waiting asker."""
    ahead = place - 1
    return (f"The server is busy: you are {_ordinal(place)} in line ({running} computation"
            f"{'s' if running != 1 else ''} running, {ahead} waiting ahead of yours). Your chart follows.")


class JobQueue:
    def __init__(self, slots: int = 1, max_waiting: int = 64, rate_per_minute: int | None = None):
        self.slots, self.max_waiting, self.rate_per_minute = int(slots), int(max_waiting), rate_per_minute
        self._cond = threading.Condition()
        self._running = 0
        self._line: deque[object] = deque()  # tickets of the askers waiting, first come first
        self._started: dict[str, deque[float]] = {}  # per asker: start times within the last minute
        self._held = threading.local()  # a thread inside a job runs nested jobs at once

    def status(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._cond:
            return self._running, len(self._line)

    def _check_rate(self, who: str | None) -> None:
        if who is None or self.rate_per_minute is None:
            return
        now = time.monotonic()
        starts = self._started.setdefault(who, deque())
        while starts and now - starts[0] > 60:
            starts.popleft()
        if len(starts) >= self.rate_per_minute:
            wait = int(60 - (now - starts[0])) + 1
            raise Busy(f"you have started {len(starts)} new computations in the last minute, the most this "
                       f"server allows; try again in {wait} s (results already computed still show at once)")
        starts.append(now)

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` once a slot is free, on behalf of the current asker."""
        if getattr(self._held, "depth", 0):
            return fn()  # nested in a job that already holds a slot
        asker = _asker.get()
        ticket = object()
        with self._cond:
            if (self._running >= self.slots or self._line) and len(self._line) >= self.max_waiting:
                raise Busy(f"the server is busy ({len(self._line)} computations waiting); try again in a minute")
            self._check_rate(asker.who)
            self._line.append(ticket)
        try:
            self._wait_for_slot(ticket, asker)
        except BaseException:
            with self._cond:
                if ticket in self._line:
                    self._line.remove(ticket)
                self._cond.notify_all()
            raise
        self._held.depth = 1
        try:
            if asker.on_wait is not None:
                asker.on_wait(0, self._running)
            return fn()
        finally:
            self._held.depth = 0
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _wait_for_slot(self, ticket: object, asker: Asker) -> None:
        while True:
            with self._cond:
                if self._running < self.slots and self._line[0] is ticket:
                    self._line.popleft()
                    self._running += 1
                    self._cond.notify_all()  # the next in line may move up
                    return
                place = list(self._line).index(ticket) + 1
                running = self._running
            if asker.alive is not None and not asker.alive():
                raise Cancelled()
            if asker.on_wait is not None:
                asker.on_wait(place, running)  # at every poll, outside the lock: a page redraws (and may stop) here
            with self._cond:
                self._cond.wait(POLL_SECONDS)
