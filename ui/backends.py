"""One Backend per model per process, shared by every browser session."""
from __future__ import annotations

import threading

import streamlit as st

from lens.backend import Backend, LocalBackend
from lens.cache import ResultCache
from lens.models import default_cache_root, load_model

UI_MAX_TOKENS = 2048  # the page stays interactive; the CLI takes the model's full context
_MAX_LOADED = 2  # models kept in memory at once

_lock = threading.Lock()
_loaded: dict[str, Backend] = {}


def get_backend(ref: str) -> Backend:
    """The backend for ``ref``, loading (and on first use converting) it with a progress bar."""
    with _lock:
        if ref in _loaded:
            return _loaded[ref]
        box = st.empty()
        with box.container():
            bar = st.progress(0.0, text=f"Loading {ref}…")

            def progress(fraction: float, message: str) -> None:
                bar.progress(min(1.0, max(0.0, fraction)), text=f"{ref}: {message}")

            loaded = load_model(ref, progress=progress)
        box.empty()
        backend = LocalBackend(loaded, ResultCache(default_cache_root() / "results"), max_tokens=UI_MAX_TOKENS)
        while len(_loaded) >= _MAX_LOADED:
            _loaded.pop(next(iter(_loaded)))
        _loaded[ref] = backend
        return backend
