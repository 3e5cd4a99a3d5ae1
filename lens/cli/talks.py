"""``talk``: a speaker's talk file (lens/talks/): ``talk show TALK`` lists its scenes, checked, and what each one
draws; ``talk export TALK --out deck.html`` writes the self-contained HTML deck. TALK is a .json file, the name of
a saved talk, or ``tour`` (the shipped guided tour)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import LensError
from .common import terminal_progress


def register(sub) -> None:
    talk = sub.add_parser("talk", help="a talk: scenes of live views with notes and questions; show or export it")
    tsub = talk.add_subparsers(dest="talk_command", required=True)
    for name, helptext in (("show", "the talk's scenes, checked, and what each one draws"),
                           ("export", "one self-contained HTML deck: live charts, ← → between scenes, N for notes, W for a notes window")):
        p = tsub.add_parser(name, help=helptext)
        p.add_argument("talk", metavar="TALK", help="a talk file (.json), a saved talk's name, or 'tour'")
        p.add_argument("--model", default=None, help="draw every scene with this model (default: the model each "
                                                     "scene's link names, else smollm2-135m)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
        p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
        if name == "export":
            p.add_argument("--out", required=True, metavar="PATH", help="the deck's file (.html)")
        p.set_defaults(func=run_show if name == "show" else run_export, command=f"talk {name}")


def read_talk(ref: str):
    from ..talks import SHIPPED, load_named, load_talk, saved_talks

    path = Path(ref)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.exists():
            raise LensError(f"no talk file {ref}")
        return load_talk(path)
    if ref in saved_talks():
        return load_named(ref)
    if ref in SHIPPED:
        return SHIPPED[ref]()
    raise LensError(f"no talk {ref!r}: name a .json file, a saved talk ({', '.join(saved_talks()) or 'none yet'}) "
                    f"or {', '.join(SHIPPED)}")


def run_show(args) -> int:
    from ..talks import resolve

    talk = read_talk(args.talk)
    scenes = []
    for s in talk.scenes:
        r = resolve(s)
        scenes.append({**s.to_dict(), "draws": {"view": r.view, "texts": r.texts, "params": r.params,
                                                "model": args.model or r.model, "unused": list(r.unused)}})
    if args.json:
        print(json.dumps({"title": talk.title, "scenes": scenes}, ensure_ascii=False))
        return 0
    print(f"{talk.title} · {len(scenes)} scenes")
    for i, s in enumerate(scenes, 1):
        q = " · asks a question" if s["question"] else ""
        print(f"{i:>3}. {s['title'] or '(untitled)'} — {s['view']} → {s['draws']['view']}{q}")
    return 0


def _backends(args):
    from ..cache import ResultCache
    from ..engine_backend import local_backend
    from ..model.loading import load_model
    from ..model.registry import default_cache_root

    cache = None if args.no_cache else ResultCache(default_cache_root() / "results")
    loaded = {}

    def backend_for(ref):
        key = ref or ""
        if key not in loaded:
            loaded[key] = local_backend(load_model(ref, device=args.device, progress=terminal_progress), cache)
        return loaded[key]
    return backend_for


def run_export(args) -> int:
    from ..export import write_file
    from ..talks.deck import deck_html

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise LensError(f"a deck is one HTML file: name a .html file, not {out.name!r}")
    talk = read_talk(args.talk)
    if not talk.scenes:
        raise LensError("the talk has no scenes to export")
    html = deck_html(talk, _backends(args), terminal_progress, model=args.model)
    write_file(out, html)
    size = len(html.encode("utf-8"))
    if args.json:
        print(json.dumps({"out": str(out), "scenes": len(talk.scenes), "bytes": size}))
        return 0
    print(f"wrote {out} ({len(talk.scenes)} scenes, {size / 1e6:.1f} MB); open it in a browser: → next, ← back, "
          "N notes, W notes in a second window", file=sys.stderr)
    return 0
