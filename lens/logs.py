"""LayerLens's own log lines (a visitor who left the line, a cache that could not be written, a model loaded in
the worker) on stderr, beside the server's."""
from __future__ import annotations

import logging
import sys


def log_to_stderr(prefix: str = "LayerLens") -> None:
    log = logging.getLogger("layerlens")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
