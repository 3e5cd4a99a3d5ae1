"""Small dense decompositions without thread contention.

On a busy laptop (or a 2-core box running the app and the model), a
multi-threaded LAPACK eigendecomposition of a few-hundred-square matrix can take
seconds instead of milliseconds: its BLAS threads spin waiting for each other.
The matrices here are small, so one thread is both faster and predictable.
"""
from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_controller = None


def _get_controller():
    global _controller
    with _lock:
        if _controller is None:
            try:  # a dependency of scikit-learn, which umap-learn pulls in
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()  # scans the loaded libraries once
            except Exception:  # pragma: no cover - without it we run with the default threads
                _controller = False
        return _controller


def serial():
    """Context: numpy's BLAS/LAPACK on one thread for the block."""
    controller = _get_controller()
    if not controller:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
