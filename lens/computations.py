"""Where a backend's results come from: the disk cache, a computation already under way, or a new one.

``Computations.get(kind, key, compute)`` looks a result up in the optional disk cache under one key
scheme (kind, model fingerprint, prompt, options), else runs ``compute`` through the job queue and
stores what it returns. Callers asking for the same result at once (several sessions, a warm-up)
share one computation. ``Memo`` keeps the last value of each kind of forward pass in memory, so the
calls a page makes in a row (the threshold slider, another node, another window, rollout then flow)
cost no new pass.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Callable

from .cache import ResultCache, make_key
from .jobs import Cancelled, JobQueue, checkpoint
from .serialize import NotThisType, join, split

log = logging.getLogger("layerlens")


class Computations:
    def __init__(self, fingerprint: str, result_types: dict[str, type], cache: ResultCache | None = None,
                 jobs: JobQueue | None = None):
        self.fingerprint, self.result_types, self.cache, self.jobs = fingerprint, result_types, cache, jobs
        self._pending: dict[str, Future] = {}  # results being computed, by cache key
        self._pending_lock = threading.Lock()

    def busy(self) -> bool:
        return bool(self._pending)

    def run(self, compute: Callable[[], object]):
        """``compute()`` through the job queue (at once when there is none)."""
        return self.jobs.run(compute) if self.jobs is not None else compute()

    def has(self, kind: str, key: dict) -> bool:
        """Whether the cache holds a ``kind`` entry for ``key`` (read when asked for; a damaged one is a miss then)."""
        return self.cache is not None and self.cache.has(make_key(kind, model=self.fingerprint, **key))

    def get(self, kind: str, key: dict, compute: Callable[[], object]):
        """The cached ``kind`` result for ``key`` (prompt and options), else ``compute()``'s, stored.

        An entry that cannot be rebuilt into its result type (another version's fields, a damaged
        file) is a miss: recomputed and overwritten, never an error. A second caller asking while
        the first computes waits for the first's result or error.
        """
        cls = self.result_types[kind]
        cache_key = make_key(kind, model=self.fingerprint, **key)
        with self._pending_lock:
            pending = self._pending.get(cache_key)
            if pending is None:
                mine = self._pending[cache_key] = Future()
        if pending is not None:
            return self._wait_for(pending, lambda: self.get(kind, key, compute))
        try:
            result = self._stored(cls, cache_key)
            if result is None:
                result = self.run(compute)
                self._store(cache_key, result)
            mine.set_result(result)
            return result
        except Cancelled:
            mine.set_exception(Cancelled())  # its waiters compute it themselves
            raise
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._pending_lock:
                del self._pending[cache_key]

    @staticmethod
    def _wait_for(pending: Future, again: Callable[[], object]):
        """``pending``'s result; if the asker computing it left, compute it ourselves (``again``)."""
        while True:
            checkpoint()
            try:
                return pending.result(timeout=0.25)
            except TimeoutError:
                continue
            except Cancelled:
                return again()

    def _store(self, cache_key: str, result) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(cache_key, *split(result))
        except Exception as exc:  # a cache is a speed-up: failing to write one is not an error
            log.warning("could not cache %s (%s): going on without it", cache_key, exc)

    def _stored(self, cls: type, cache_key: str):
        """The cache's entry for ``cache_key`` as a ``cls``, or None (also when the cache fails)."""
        try:
            hit = self.cache.get(cache_key) if self.cache is not None else None
        except Exception as exc:
            log.warning("could not read cache entry %s (%s): recomputing", cache_key, exc)
            hit = None
        if hit is None:
            return None
        try:
            return join(cls, *hit)
        except (NotThisType, TypeError, ValueError) as exc:
            log.warning("cache entry %s is not a %s (%s): recomputing", cache_key, cls.__name__, exc)
            return None


class Memo:
    """The last value of each kind, with the key it was made for."""

    def __init__(self):
        self._values: dict[str, tuple[str, object]] = {}

    def get(self, kind: str, key: str, compute: Callable[[], object]):
        memo = self._values.get(kind)
        if memo is not None and memo[0] == key:
            return memo[1]
        value = compute()
        self._values[kind] = (key, value)
        return value
