"""NDIF's job updates while a remote trace waits, passed on to a page's progress bar."""
from __future__ import annotations

import contextlib

from ..options import Progress


@contextlib.contextmanager
def ndif_status(progress: Progress | None):
    """While a remote trace waits, NDIF's job updates (received, queued with its place in line, running)
    go to ``progress`` as well as to nnsight's own display."""
    if progress is None:
        yield
        return
    from nnsight.intervention.backends.remote import RemoteBackend

    original = RemoteBackend.note

    def note(backend, response):
        status = getattr(response.status, "name", str(response.status)).lower()
        progress(0.0 if status != "completed" else 0.99, f"NDIF: {status} {response.description or ''}".strip())
        return original(backend, response)
    RemoteBackend.note = note
    try:
        yield
    finally:
        RemoteBackend.note = original
