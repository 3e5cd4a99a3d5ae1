"""``project`` (PCA/UMAP of every token at every layer) and ``geometry`` (per-layer metrics),
for a prompt or a corpus (one text per line)."""
from __future__ import annotations

from pathlib import Path

from ..errors import LensError
from .common import backend, model_args, print_json, read_prompt, terminal_progress


def point_args(p) -> None:
    p.add_argument("--corpus-file", default=None, metavar="PATH",
                   help="several texts, one per line, instead of a prompt (each traced separately)")
    p.add_argument("--include-first", action="store_true", help="keep each text's first token (left out by default)")
    p.add_argument("--include-special", action="store_true", help="keep special tokens such as [CLS]/[SEP]")


def read_texts(args):
    """A prompt (--prompt/--prompt-file) or a corpus (--corpus-file: one text per non-blank line)."""
    from ..model.tokens import check_prompt

    if getattr(args, "corpus_file", None) is not None:
        if args.prompt is not None or args.prompt_file is not None:
            raise LensError("give a prompt or --corpus-file, not both")
        try:
            lines = Path(args.corpus_file).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise LensError(f"cannot read {args.corpus_file}: it is not UTF-8 text") from None
        except OSError as exc:
            raise LensError(f"cannot read {args.corpus_file}: {exc.strerror or exc}") from None
        texts = [check_prompt(line) for line in lines if line.strip()]
        if not texts:
            raise LensError(f"{args.corpus_file} holds no text (one sentence per line)")
        return texts
    return check_prompt(read_prompt(args))


def cmd_project(args) -> int:
    from ..model.tokens import visible
    from ..options import ProjectionOptions

    texts = read_texts(args)
    options = ProjectionOptions(method=args.method, mode=args.mode, dims=args.dims, rms_scale=not args.no_rms_scale,
                                skip_first=not args.include_first, skip_special=not args.include_special)
    options.check()
    result = backend(args).projection(texts, options, progress=terminal_progress if args.method == "umap" else None)
    if args.json:
        return print_json(result)
    print(f"{result.model}: {len(result.tokens)} tokens from {result.n_texts} text(s), {len(result.layers)} rows, "
          f"{result.method.upper()} ({result.mode}), fitted in {result.seconds:.2f} s")
    print("tokens: " + " ".join(visible(t) for t in result.tokens))
    dims = result.coords.shape[-1]
    head = "  ".join(f"var{i + 1:>2}" for i in range(dims))
    print(f"{'layer':>5}  {head}  last token {visible(result.tokens[-1])!r} at")
    for r, label in enumerate(result.layers):
        ex = "  ".join("  -  " if result.explained[r, i] != result.explained[r, i] else f"{result.explained[r, i]:5.1%}"
                       for i in range(dims))
        at = ", ".join(f"{v:7.2f}" for v in result.coords[r, -1])
        print(f"{label:>5}  {ex}  ({at})")
    return 0


def cmd_geometry(args) -> int:
    from ..options import GeometryOptions
    from ..results import EXPLANATIONS

    texts = read_texts(args)
    options = GeometryOptions(skip_first=not args.include_first, skip_special=not args.include_special,
                              word=args.word or None)
    result = backend(args).geometry(texts, options)
    if args.json:
        return print_json(result)
    print(f"{result.model}: {len(result.tokens)} tokens from {result.n_texts} text(s), {len(result.layers)} rows")
    cols = ["anisotropy", "intra_similarity", "pc1_share", "prompt_entropy", "curvature", "norm_mean", "norm_ratio"]
    short = ["aniso", "intra", "pc1", "entropy", "curv°", "norm", "ratio"]
    if result.word:
        cols += ["self_similarity", "word_mev"]
        short += ["self", "mev"]
    print(f"{'layer':>5} " + " ".join(f"{c:>8}" for c in short))
    for r, label in enumerate(result.layers):
        print(f"{label:>5} " + " ".join(f"{getattr(result, c)[r]:8.3f}" for c in cols))
    for c, name in zip(cols, short):
        print(f"{name:>8}: {EXPLANATIONS[c][1]}")
    if result.word:
        print(f"word {result.word!r}: {result.word_count} occurrences in {result.word_texts} text(s)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("project", help="every token at every layer projected to 2-D/3-D (PCA or UMAP)")
    model_args(p)
    point_args(p)
    p.add_argument("--method", choices=["pca", "umap"], default="pca")
    p.add_argument("--mode", choices=["joint", "aligned"], default="joint",
                   help="joint: one fit over all layers (trajectories); aligned: one PCA per layer, Procrustes-aligned")
    p.add_argument("--dims", type=int, choices=[2, 3], default=2)
    p.add_argument("--no-rms-scale", action="store_true", help="do not divide each layer by its RMS before fitting")
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("geometry", help="per-layer geometry: anisotropy, similarity, entropy, curvature, norms")
    model_args(p)
    point_args(p)
    p.add_argument("--word", default=None, help="word for self-similarity and MEV across contexts")
    p.set_defaults(func=cmd_geometry)
