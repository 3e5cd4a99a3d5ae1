"""``probe``: per-layer logistic-regression probes of a labelled prompt set (lens/probes/); ``vectors``: the saved
steering vectors (lens/steering/store.py)."""
from __future__ import annotations

import json
import sys

from .common import backend, model_args, terminal_progress


def cmd_probe(args) -> int:
    from ..errors import LensError
    from ..probes.data import load_set, to_jsonl
    from ..probes.options import ProbeOptions
    from ..probes.results import probe_json

    if args.prompt is not None or args.prompt_file is not None:
        raise LensError("probe reads a labelled set, not a prompt: give --set true-false, --set reviews or "
                        "--set FILE.csv")
    if (args.set is None) == (args.prompts_file is None):
        raise LensError("give the labelled set with --set (true-false, reviews or a .csv/.jsonl file) or "
                        "--prompts-file, one of them")
    s = load_set(args.set or args.prompts_file)
    options = ProbeOptions(folds=args.folds, l2=args.l2)
    fewest = min(sum(s.labels), len(s.labels) - sum(s.labels))
    options.check(fewest=fewest)
    if options.fitted(fewest).folds < options.folds:
        print(f"note: {fewest} prompts of a label: {fewest} folds, not {options.folds}", file=sys.stderr)
    if args.save_vector and args.layer is None:
        raise LensError("--save-vector needs --layer L: the stream entering block L, where the direction is read")
    b = backend(args)
    if vars(args).get("save_name"):
        args.saved_view = ("probe", to_jsonl(s), {"folds": options.folds, "l2": options.l2})
    r = b.probe(s, options, progress=terminal_progress)
    terminal_progress.close()
    if args.save_vector:
        save_probe_vector(b, s, r, args.layer, args.save_vector)
    if args.json:
        print(json.dumps(probe_json(r), ensure_ascii=False))
        return 0
    from ..figures.probes import probe_reading

    print(f"{r.model}: {r.n} prompts ({r.counts[1]} {r.classes[1]}, {r.counts[0]} {r.classes[0]}), {r.folds}-fold, "
          f"λ = {r.l2:g}; chance {r.chance:.1%} (band {r.band[0]:.1%}–{r.band[1]:.1%})")
    for l, a, t in zip(r.layers, r.accuracy, r.train_accuracy):
        print(f"  {l:>4}  {a:6.1%}  (training {t:6.1%})")
    print(probe_reading(r))
    return 0


def save_probe_vector(b, s, r, layer: int, name: str) -> None:
    """Save row ``layer − 1``'s direction (the stream entering block ``layer``) as the steering vector ``name``."""
    import sys

    from ..errors import LensError
    from ..steering.store import SavedVector, VectorStore

    info = b.info()
    if not 1 <= layer <= info.n_layers:
        raise LensError(f"the layer must be a whole number from 1 to {info.n_layers}, not {layer}")
    row = layer - 1
    v = VectorStore().save(SavedVector(
        name, info.name, info.fingerprint, layer, "probe",
        {"set": s.name, "classes": list(r.classes), "accuracy": float(r.accuracy[row]), "folds": r.folds,
         "l2": r.l2}, r.directions[row]))
    print(f"saved the probe's direction at layer {layer} as the steering vector “{v.name}” (‖v‖ = {v.norm:.4g}) "
          f"in {VectorStore().path}", file=sys.stderr)


def cmd_vectors(args) -> int:
    from ..errors import LensError
    from ..steering.store import VectorStore

    store = VectorStore()
    if args.action == "list":
        rows = store.list()
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        if not rows:
            print(f"no saved vectors in {store.path}")
        for v in rows:
            print(f"{v['name']}: damaged ({v['error']})" if "error" in v else
                  f"{v['name']}: {v['source']} at layer {v['layer']} of {v['model']}, ‖v‖ = {v['norm']:.4g}, "
                  f"saved {v['created']}")
        return 0
    if not args.name:
        raise LensError(f"vectors {args.action} needs the vector's name")
    if args.action == "show":
        v = store.get(args.name)
        out = {**v.summary(), "vector": [float(x) for x in v.vector]}
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        else:
            print(f"{v.label()}; ‖v‖ = {v.norm:.4g}, {v.d_model} numbers; made by {json.dumps(v.how, ensure_ascii=False)}")
        return 0
    store.delete(args.name)
    if not args.json:
        print(f"deleted the saved vector “{args.name}”")
    else:
        print(json.dumps({"deleted": args.name}, ensure_ascii=False))
    return 0


def register(sub) -> None:
    p = sub.add_parser("probe", help="per-layer logistic-regression probes of a labelled prompt set")
    model_args(p)
    p.add_argument("--set", default=None, metavar="NAME|FILE",
                   help="true-false, reviews, or a .csv/.jsonl file with prompt and label columns (two labels)")
    p.add_argument("--prompts-file", default=None, metavar="FILE", help="the same as --set FILE")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold cross-validation (default 5)")
    p.add_argument("--l2", type=float, default=1.0, help="the L2 penalty λ on standardised features (default 1)")
    p.add_argument("--layer", type=int, default=None,
                   help="with --save-vector: the stream entering this block (1-based)")
    p.add_argument("--save-vector", default=None, metavar="NAME",
                   help="save the probe's direction at --layer as a steering vector (steer --vector NAME)")
    p.set_defaults(func=cmd_probe)

    v = sub.add_parser("vectors", help="the saved steering vectors: list, show or delete one")
    v.add_argument("action", choices=["list", "show", "delete"])
    v.add_argument("name", nargs="?", default=None)
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_vectors)
