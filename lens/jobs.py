"""A bounded first-come queue for heavy computations, shared by every session of a server.

A backend runs each result it must compute (a cache miss) through ``JobQueue.run``:
at most ``slots`` run at once, at most ``max_waiting`` wait, and each asker may start
only ``rate_per_minute`` a minute. Who is asking travels in a context variable set by
the front end (``asking``): an opaque name for the rate, a callback told the asker's
place in line while it waits, and a test of whether the asker is still there. An
asker that has left is dropped from the line (``Cancelled``), and long work calls
``checkpoint()`` between its steps to stop early. A computation asked *ahead* of need (the page's look-ahead
while a person types: ``Asker.ahead``) gives way to everybody else's: it joins no line that another asker waits
in, others asking now go before it, and one running stops at its next ``checkpoint()`` once another asker waits
for its slot. (The same asker's own run waits for it: it is of the text they run, or it has stopped.) It counts
in no rate. Imports nothing heavy.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
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
    ahead: bool = False  # asked before it is needed (a look-ahead): gives way to every other asker's work


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
        self._ahead: set[object] = set()  # of those, the tickets asked ahead of need (served after the others)
        self._whose: dict[object, str | None] = {}  # each waiting ticket's asker
        self._started: dict[str, deque[float]] = {}  # per asker: start times within the last minute
        self._held = threading.local()  # a thread inside a job runs nested jobs at once

    def status(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._cond:
            return self._running, len(self._line)

    def _needed(self) -> list[object]:
        """The tickets waiting of askers who need their result now, first come first (hold ``_cond``)."""
        return [t for t in self._line if t not in self._ahead]

    def others_wait(self, who: str | None) -> bool:
        """Whether an asker other than ``who`` (anyone, for None) waits for a slot for a result needed now."""
        with self._cond:
            return any(who is None or self._whose[t] != who for t in self._needed())

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
            needed = len(self._line) - len(self._ahead)
            if asker.ahead:
                if self.others_wait(asker.who):  # (the condition's lock is reentrant)
                    raise Busy("others wait for the server: nothing is computed ahead of need now")
                self._ahead.add(ticket)
            else:
                if (self._running >= self.slots or needed) and needed >= self.max_waiting:
                    raise Busy(f"the server is busy ({needed} computations waiting); try again in a minute")
                self._check_rate(asker.who)
            self._line.append(ticket)
            self._whose[ticket] = asker.who
        try:
            self._wait_for_slot(ticket, asker)
        except BaseException:
            with self._cond:
                if ticket in self._line:
                    self._line.remove(ticket)
                self._ahead.discard(ticket)
                self._whose.pop(ticket, None)
                self._cond.notify_all()
            raise
        self._held.depth = 1
        try:
            if asker.on_wait is not None:
                asker.on_wait(0, self._running)
            if not asker.ahead:
                return fn()
            # Asked ahead: its checkpoints also stop it once another asker waits for the slot.
            alive = asker.alive
            with asking(replace(asker, alive=lambda: (alive is None or alive()) and not self.others_wait(asker.who))):
                return fn()
        finally:
            self._held.depth = 0
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _wait_for_slot(self, ticket: object, asker: Asker) -> None:
        while True:
            with self._cond:
                needed = self._needed()
                first = needed[0] if needed else self._line[0]  # those asked ahead go after all the others
                if self._running < self.slots and first is ticket:
                    self._line.remove(ticket)
                    self._ahead.discard(ticket)
                    self._whose.pop(ticket, None)
                    self._running += 1
                    self._cond.notify_all()  # the next in line may move up
                    return
                # (those asked ahead, behind every other, count in no one's place)
                place = needed.index(ticket) + 1 if ticket in needed else len(self._line)
                running = self._running
            if asker.alive is not None and not asker.alive():
                raise Cancelled()
            if asker.on_wait is not None:
                asker.on_wait(place, running)  # at every poll, outside the lock: a page redraws (and may stop) here
            with self._cond:
                self._cond.wait(POLL_SECONDS)
