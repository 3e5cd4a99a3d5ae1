"""``export``: a view as one self-contained HTML file (figure, numbers, prompt, explanation;
opens offline) or as a static SVG / PNG at slide size; ``tour`` writes the guided tour as one
offline HTML handout."""
from __future__ import annotations

from pathlib import Path

from ..errors import LensError
from .common import backend, model_args
from .projection import read_texts

OPTIONS = ("metric", "target", "stride", "position", "threshold", "layer", "method", "word", "max_new_tokens",
           "temperature", "seed", "foil", "site", "lens", "exits", "track")


def cmd_export(args) -> int:
    from ..export import export_view
    from ..export_code import FORMATS
    from ..views import render_view, view_named
    from ..views.entry import TWO_PROMPTS

    view = view_named(args.view)  # an unknown view: one line, exit 2 (as every other bad value)
    out = Path(args.out)
    if args.format is not None and args.format not in FORMATS.values():
        raise LensError(f"unknown format {args.format!r}; choose {' or '.join(FORMATS.values())} "
                        "(or name the picture by its --out suffix: .html, .svg, .png)")
    fmt = args.format or FORMATS.get(out.suffix.lower())
    if args.format is not None and out.suffix.lower() in (*FORMATS, ".html", ".htm", ".svg", ".png") \
            and FORMATS.get(out.suffix.lower()) != args.format:
        raise LensError(f"--format {args.format} does not write a {out.suffix} file: leave out --format or "
                        "rename --out")
    if fmt is None and out.suffix.lower() not in (".html", ".htm", ".svg", ".png"):
        raise LensError(f"cannot export to {out.name!r}: name a .html, .svg, .png, .py or .ipynb file")
    if not out.parent.is_dir():
        raise LensError(f"cannot write {out}: no folder {out.parent}")
    texts = read_texts(args)
    if view.reads == TWO_PROMPTS:  # the prompt is the clean one; --corrupt-prompt the other
        if not args.corrupt_prompt:
            raise LensError(f"the {view.name} view needs --corrupt-prompt TEXT besides the (clean) prompt")
        texts = [texts, args.corrupt_prompt]
    elif args.corrupt_prompt:
        raise LensError(f"the {view.name} view takes no --corrupt-prompt")
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None and k in view.params}
    ignored = [k for k in OPTIONS if getattr(args, k) is not None and k not in view.params]
    if ignored:
        raise LensError(f"the {view.name} view takes no --{', --'.join(k.replace('_', '-') for k in ignored)}")
    if fmt is not None:  # code: written out here, computed when it runs
        from ..export import write_file
        from ..export_code import notebook, python_script

        if args.remote:
            raise LensError("exported code runs the model where it runs: leave out --remote")
        if vars(args).get("save_name"):
            raise LensError("exported code computes nothing here, so there is nothing to save: leave out --save")
        make = python_script if fmt == "python" else notebook
        code = make(view.name, args.model, texts, given, device=args.device, backend=args.backend,
                    trust_remote_code=args.trust_remote_code)
        write_file(out, code)
        print(out)
        return 0
    rendered = render_view(backend(args), view.name, texts, **given)
    for path in export_view(rendered, out):
        print(path)
    return 0


def cmd_tour(args) -> int:
    from ..export import write_file
    from ..tour import handout

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise LensError(f"the tour handout is an HTML file, not {out.name!r}")
    if not out.parent.is_dir():
        raise LensError(f"cannot write {out}: no folder {out.parent}")
    write_file(out, handout(backend(args)))
    print(out)
    return 0


def register(sub) -> None:
    from ..views import VIEWS

    p = sub.add_parser("export", help="write a view as an offline HTML file, or an SVG / PNG image")
    # --view and --format are checked by the command (one line on stderr, exit 2), not by argparse's usage text
    p.add_argument("--view", required=True, metavar="VIEW", help=", ".join(VIEWS))
    p.add_argument("--out", required=True, metavar="FILE",
                   help="FILE.html (self-contained), FILE.svg, FILE.png, FILE.py (a script that prints the numbers) or "
                        "FILE.ipynb (a notebook that computes and draws them)")
    p.add_argument("--format", default=None, metavar="{python,ipynb}",
                   help="code instead of a picture: python (a script) or ipynb (a notebook); default: from the "
                        "--out suffix")
    model_args(p)
    p.add_argument("--corpus-file", default=None, metavar="PATH",
                   help="projection and geometry: several texts, one per line, instead of a prompt")
    p.add_argument("--metric", default=None, help="logit-lens: probability, entropy, kl, target_prob, target_rank; "
                                                  "heads: induction, prev_token or entropy")
    p.add_argument("--target", default=None, help="logit-lens: the token to follow; patch: the clean answer (e.g. ' Paris')")
    p.add_argument("--stride", type=int, default=None, help="logit-lens: show every n-th layer")
    p.add_argument("--position", type=int, default=None, help="rollout, flow, routes: the position to explain")
    p.add_argument("--threshold", type=float, default=None, help="routes: drop edges below this importance")
    p.add_argument("--layer", type=int, default=None, help="heads: that layer's patterns instead of every head's scores")
    p.add_argument("--method", default=None, choices=["pca", "umap"], help="projection: pca (default) or umap")
    p.add_argument("--word", default=None, help="projection, geometry: a word to follow")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generate: how many tokens to write (default 20)")
    p.add_argument("--temperature", type=float, default=None, help="generate: 0 greedy (default), above 0 sampled")
    p.add_argument("--seed", type=int, default=None, help="generate: the sampling seed")
    p.add_argument("--corrupt-prompt", default=None, help="patch: the corrupted prompt (the prompt is the clean one)")
    p.add_argument("--foil", default=None, help="patch: the corrupted prompt's answer (e.g. ' Rome')")
    p.add_argument("--site", default=None, choices=["resid", "attn", "mlp", "head"], help="patch: what to patch")
    p.add_argument("--lens", default=None, help="logit-lens, early-exit, language: logit, linear or tuned")
    p.add_argument("--exits", action="store_const", const=True, default=None,
                   help="logit-lens: mark each position's saturation layer")
    p.add_argument("--track", default=None, help="language: words to follow, comma-separated")
    p.set_defaults(func=cmd_export)

    t = sub.add_parser("tour", help="write the guided tour as one offline HTML handout")
    t.add_argument("--out", required=True, metavar="FILE.html")
    t.add_argument("--model", default=None, help="the tour's stories are written for the bundled smollm2-135m")
    t.add_argument("--device", default="cpu")
    t.add_argument("--no-cache", action="store_true")
    t.add_argument("--trust-remote-code", action="store_true")
    t.set_defaults(func=cmd_tour)
