"""``models`` (the known models) and ``prepare`` (convert a bundled model once, with progress).

Neither imports torch unless a conversion has to run.
"""
from __future__ import annotations

import json
import sys


def cmd_models(args) -> int:
    from ..model.registry import DEFAULT_MODEL, known_models

    rows = [{"name": e.name, "kind": e.kind, "available": e.available(), "description": e.description,
             "default": e.name == DEFAULT_MODEL} for e in known_models()]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for r in rows:
        mark = "*" if r["default"] else " "
        state = "" if r["available"] else "  (not installed)"
        print(f"{mark} {r['name']:<20} {r['kind']:<8} {r['description']}{state}")
    print("\nAlso accepted: a local model folder, a .gguf file, or a Hugging Face hub id (needs network).")
    return 0


def cmd_prepare(args) -> int:
    """Load a model once so that its conversion (if any) happens now, with progress."""
    import time

    from ..model.convert import converted_dir, is_complete
    from ..model.registry import BUNDLED, DEFAULT_MODEL, bundled_file, default_cache_root
    from .common import terminal_progress

    t0 = time.perf_counter()
    name = args.model or DEFAULT_MODEL
    entry = BUNDLED.get(name)
    if entry is not None:
        found = bundled_file(entry)
        if found.suffix != ".gguf" or is_complete(converted_dir(default_cache_root(), name, found)):
            print(f"{name}: ready", file=sys.stderr)  # nothing to convert: skip loading torch at all
            return 0

    from ..model.loading import load_model

    loaded = load_model(name, progress=terminal_progress)
    print(f"{loaded.name}: ready ({loaded.n_layers} layers, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list the known models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("prepare", help="load (and on first use convert) a model, showing progress")
    p.add_argument("--model", default=None)
    p.set_defaults(func=cmd_prepare)
