"""One Backend per model per process, shared by every browser session.

Loaded models are kept least-recently-used first out: the model a session asks
for is always the most recent, so it is never the one unloaded to make room.
lens.local_backend (torch, transformers) is imported on first use, not when a
page is imported, so the page can start drawing while it loads.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import streamlit as st

from lens.backend import Backend

UI_TOKEN_LIMIT = 2048  # the page stays interactive; the CLI takes the model's full context
MAX_LOADED = 2  # models kept in memory at once

_lock = threading.Lock()
_loaded: OrderedDict[str, Backend] = OrderedDict()


def _load(ref: str) -> Backend:
    box = st.empty()
    with box.container():
        # The first model of a server process also imports PyTorch and transformers (several
        # seconds): say so, rather than leave the page blank.
        bar = st.progress(0.02, text=f"Loading {ref}: importing PyTorch…")
        import torch  # noqa: F401

        bar.progress(0.3, text=f"Loading {ref}: importing transformers…")
        from lens.cache import ResultCache
        from lens.local_backend import LocalBackend
        from lens.model.loading import load_model
        from lens.model.registry import default_cache_root

        bar.progress(0.5, text=f"Loading {ref}: the model code and its weights…")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(1.0, max(0.0, fraction)), text=f"{ref}: {message}")

        loaded = load_model(ref, progress=progress)
    box.empty()
    return LocalBackend(loaded, ResultCache(default_cache_root() / "results"), token_limit=UI_TOKEN_LIMIT)


def get_backend(ref: str) -> Backend:
    """The backend for ``ref``, loading (and on first use converting) it with a progress bar."""
    with _lock:
        if ref in _loaded:
            _loaded.move_to_end(ref)
            return _loaded[ref]
        backend = _load(ref)
        _loaded[ref] = backend
        while len(_loaded) > MAX_LOADED:
            _loaded.popitem(last=False)  # the least recently used; never ``ref``, just added
        return backend


def loaded_models() -> list[str]:
    """Names of the loaded models, least recently used first."""
    with _lock:
        return list(_loaded)
