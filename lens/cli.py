"""Command line: ``python -m lens COMMAND``. Errors are one line on stderr, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import LensError


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    # Set before transformers is imported (lazily, by the commands that need it).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _read_prompt(args) -> str:
    if args.prompt is not None and args.prompt_file is not None:
        raise LensError("give --prompt or --prompt-file, not both")
    if args.prompt_file is not None:
        try:
            # Bytes, not read_text(): newline translation would change the prompt's tokens.
            return Path(args.prompt_file).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise LensError(f"cannot read {args.prompt_file}: it is not UTF-8 text") from None
        except OSError as exc:
            raise LensError(f"cannot read {args.prompt_file}: {exc.strerror or exc}") from None
    if args.prompt is None:
        raise LensError("give a prompt with --prompt TEXT or --prompt-file PATH")
    return args.prompt


def _backend(args):
    from .backend import LocalBackend
    from .cache import ResultCache
    from .models import default_cache_root, load_model

    loaded = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code,
                        progress=_terminal_progress)
    cache = None if args.no_cache else ResultCache(default_cache_root() / "results")
    return LocalBackend(loaded, cache)


def cmd_models(args) -> int:
    from .models import DEFAULT_MODEL, known_models

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


def _terminal_progress(fraction: float, message: str) -> None:
    end = "\n" if fraction >= 1.0 else ""
    print(f"\r[{fraction:4.0%}] {message:<60}", end=end, file=sys.stderr, flush=True)


def cmd_prepare(args) -> int:
    """Load a model once so that its conversion (if any) happens now, with progress."""
    import time

    from .convert import converted_dir, is_complete
    from .registry import BUNDLED, DEFAULT_MODEL, bundled_file, default_cache_root

    t0 = time.perf_counter()
    name = args.model or DEFAULT_MODEL
    entry = BUNDLED.get(name)
    if entry is not None:
        found = bundled_file(entry)
        if found.suffix != ".gguf" or is_complete(converted_dir(default_cache_root(), name, found)):
            print(f"{name}: ready", file=sys.stderr)  # nothing to convert: skip loading torch at all
            return 0

    from .models import load_model

    loaded = load_model(name, progress=_terminal_progress)
    print(f"{loaded.name}: ready ({loaded.n_layers} layers, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def cmd_logit_lens(args) -> int:
    from .logit_lens import LensOptions
    from .results import to_json_dict
    from .tokens import check_prompt, visible

    prompt = check_prompt(_read_prompt(args))
    backend = _backend(args)
    result = backend.logit_lens(prompt, LensOptions(top_k=args.top_k, target=args.target))
    if args.json:
        out = to_json_dict(result)
        print(json.dumps(out, ensure_ascii=False))
        return 0
    last = len(result.positions) - 1
    print(f"{result.model}: {len(result.tokens)} tokens, {result.n_layers} layers")
    print("prompt: " + " ".join(visible(t) for t in result.tokens))
    print(f"at the last position (next token after {visible(result.tokens[-1])!r}):")
    print(f"{'layer':>5}  {'top-1':<16} {'prob':>6} {'entropy':>8} {'KL→final':>9}  target {visible(result.target_tokens[last])!r} rank")
    for r, label in enumerate(result.layers):
        print(f"{label:>5}  {visible(result.top_tokens[r][last][0]):<16} {result.top_probs[r, last, 0]:6.3f} "
              f"{result.entropy[r, last]:8.3f} {result.kl_to_final[r, last]:9.3f}  {result.target_rank[r, last]}")
    if result.target_note:
        print(f"note: {result.target_note}")
    return 0


def _read_texts(args):
    """A prompt (--prompt/--prompt-file) or a corpus (--corpus-file: one text per non-blank line)."""
    from .tokens import check_prompt

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
    return check_prompt(_read_prompt(args))


def cmd_project(args) -> int:
    from .projection import ProjectionOptions
    from .results import to_json_dict
    from .tokens import visible

    texts = _read_texts(args)
    options = ProjectionOptions(method=args.method, mode=args.mode, dims=args.dims, rms_scale=not args.no_rms_scale,
                                skip_first=not args.include_first, skip_special=not args.include_special)
    options.check()
    backend = _backend(args)
    result = backend.projection(texts, options, progress=_terminal_progress if args.method == "umap" else None)
    if args.json:
        print(json.dumps(to_json_dict(result), ensure_ascii=False))
        return 0
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
    from .geometry import EXPLANATIONS, GeometryOptions
    from .results import to_json_dict

    texts = _read_texts(args)
    options = GeometryOptions(skip_first=not args.include_first, skip_special=not args.include_special,
                              word=args.word or None)
    result = _backend(args).geometry(texts, options)
    if args.json:
        print(json.dumps(to_json_dict(result), ensure_ascii=False))
        return 0
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lens", description="LayerLens: look inside transformer LMs, layer by layer.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the known models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    def model_args(p):
        p.add_argument("--model", default=None, help="bundled name, tiny-ARCH, folder, .gguf file or hub id (default: smollm2-135m)")
        p.add_argument("--prompt", default=None)
        p.add_argument("--prompt-file", default=None, metavar="PATH")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
        p.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
        p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own Python code to run")

    p = sub.add_parser("prepare", help="load (and on first use convert) a model, showing progress")
    p.add_argument("--model", default=None)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("logit-lens", help="what every layer predicts at every position")
    model_args(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--target", default=None, help="token to track (default: the final top-1 at each position)")
    p.set_defaults(func=cmd_logit_lens)

    from .attention_cli import add_attention_commands  # rollout, contributions, routes, heads

    add_attention_commands(sub, model_args)

    def point_args(p):
        p.add_argument("--corpus-file", default=None, metavar="PATH",
                       help="several texts, one per line, instead of a prompt (each traced separately)")
        p.add_argument("--include-first", action="store_true", help="keep each text's first token (left out by default)")
        p.add_argument("--include-special", action="store_true", help="keep special tokens such as [CLS]/[SEP]")

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _quiet_libraries()
        return args.func(args)
    except LensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last guard: one line, no traceback unless asked
        if os.environ.get("LAYERLENS_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set LAYERLENS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
