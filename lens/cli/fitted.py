"""Fitted lenses: ``fit-lens``, ``compare-lenses``, ``language`` and ``make-corpus``."""
from __future__ import annotations

from ..options import FitOptions, LanguageOptions
import sys

from .common import backend, checked_prompt, model_args, print_json, terminal_progress


def cmd_fit_lens(args) -> int:
    from ..errors import LensError

    if args.kind not in ("linear", "tuned", "jacobian"):
        raise LensError(f"unknown lens kind {args.kind!r}; choose linear, tuned or jacobian")
    if args.steps is not None and not 1 <= args.steps <= 100_000:
        raise LensError(f"steps must be from 1 to 100000, not {args.steps}")
    options = FitOptions(args.kind, corpus_file=args.corpus_file, checkpoint=args.checkpoint, steps=args.steps)
    options.check()  # before the model loads: a Jacobian lens without its file costs no wait
    fit = backend(args).fit_lens(options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(fit)
    already = fit.reused
    what = {"fitted": "fitted by least squares", "trained": "trained by gradient descent",
            "checkpoint": f"read from {fit.details.get('checkpoint')}"}.get(fit.source, fit.source)
    print(f"{fit.model}: {fit.kind} lens {what}" + (f" on {fit.tokens:,} tokens of the {fit.corpus} corpus"
                                                   if fit.tokens else "")
          + (" (already fitted: nothing to do)" if already else f" in {fit.seconds:.0f} s"))
    print(f"id {fit.lens_id}; use it with: python -m lens logit-lens --lens {fit.kind} ...")
    return 0


def cmd_compare_lenses(args) -> int:
    from ..model.tokens import visible

    prompt = checked_prompt(args)
    result = backend(args).lens_comparison(prompt)
    if args.json:
        return print_json(result)
    print(f"{result.model}: {len(result.tokens)} tokens; per row, the mean over positions of the KL to the final "
          "distribution (nats) and the share of positions whose top-1 is already the model's answer")
    print(f"{'layer':>5}  " + "  ".join(f"{k + ' KL':>10} {k + ' top-1':>12}" for k in result.lenses))
    for r, label in enumerate(result.layers):
        print(f"{label:>5}  " + "  ".join(f"{result.mean_kl[k, r]:10.3f} {result.top1_agreement[k, r]:12.2f}"
                                          for k in range(len(result.lenses))))
    if len(result.lenses) == 1:
        print("only the logit lens: fit a linear lens with `python -m lens fit-lens` to compare", file=sys.stderr)
    print("prompt: " + " ".join(visible(t) for t in result.tokens))
    return 0


def cmd_language(args) -> int:
    from ..model.tokens import visible
    from ..options import check_lens

    prompt = checked_prompt(args)
    check_lens(args.lens)
    words = tuple(w for w in (args.track.split(",") if args.track else []) if w)
    result = backend(args).latent_language(prompt, LanguageOptions(position=args.position, words=words, lens=args.lens))
    if args.json:
        return print_json(result)
    shown = [k for k, s in enumerate(result.scripts) if result.mass[:, k].max() >= 0.01]
    print(f"{result.model}, {result.lens} lens, position {result.position} "
          f"(after {visible(result.tokens[result.position])!r}): probability per script"
          + (" and per tracked word" if result.words else ""))
    head = "".join(f"{result.scripts[k]:>10}" for k in shown) + "".join(f"{w!r:>12}" for w in result.words)
    print(f"{'layer':>5}{head}")
    for r, label in enumerate(result.layers):
        print(f"{label:>5}" + "".join(f"{result.mass[r, k]:10.3f}" for k in shown)
              + "".join(f"{result.word_probs[r, w]:12.4f}" for w in range(len(result.words))))
    return 0


def cmd_make_corpus(args) -> int:
    from pathlib import Path

    from ..errors import LensError
    from ..fitted.corpus import generate_corpus, read_seeds, write_jsonl
    from ..model.loading import load_model

    out = Path(args.out)
    if not out.parent.is_dir():
        raise LensError(f"no such folder: {out.parent}")
    if not 8 <= args.new_tokens <= 2048:
        raise LensError(f"--new-tokens must be from 8 to 2048, not {args.new_tokens}")
    loaded = load_model(args.model, device=args.device, progress=terminal_progress)
    texts = generate_corpus(loaded.model, loaded.tokenizer, read_seeds(), args.new_tokens, seed=args.seed,
                            progress=terminal_progress)
    terminal_progress.close()
    write_jsonl(out, texts)
    print(f"wrote {len(texts)} texts to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("fit-lens", help="fit a linear-shortcut lens, train a tuned lens, or load a tuned-lens or "
                                        "Jacobian-lens checkpoint")
    model_args(p)
    p.add_argument("--kind", default="linear", help="linear (least squares, about two minutes for the bundled "
                                                    "model), tuned (gradient descent from the linear lens) or "
                                                    "jacobian (imported with --checkpoint)")
    p.add_argument("--corpus-file", default=None, metavar="PATH",
                   help="UTF-8 text (paragraphs) or .jsonl (one JSON string per line); default: the shipped corpus")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="tuned: a tuned-lens checkpoint folder (config.json and params.pt); jacobian: a Jacobian-lens "
                        "file (.pt of the jacobian-lens package, as Neuronpedia publishes them, or .safetensors of "
                        "J.<block> matrices) or a folder holding one")
    p.add_argument("--steps", type=int, default=None, help="tuned lens: training steps (default 100)")
    p.set_defaults(func=cmd_fit_lens)

    p = sub.add_parser("compare-lenses", help="per layer, how close each lens (logit and fitted) is to the final answer")
    model_args(p)
    p.set_defaults(func=cmd_compare_lenses)

    p = sub.add_parser("language", help="per layer, the lens's probability per script and on tracked words")
    model_args(p)
    p.add_argument("--position", type=int, default=None, help="position to read (default: the last)")
    p.add_argument("--track", default=None, help="words to follow, comma-separated (e.g. 'Blume,flower')")
    p.add_argument("--lens", default="logit", help="logit, linear, tuned or jacobian")
    p.set_defaults(func=cmd_language)

    p = sub.add_parser("make-corpus", help="write a fitting corpus: the model continues the shipped openings")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, metavar="PATH", help="the .jsonl file to write")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_corpus)
