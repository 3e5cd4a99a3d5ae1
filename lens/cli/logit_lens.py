"""``logit-lens``: what every layer predicts at every position, as a table or JSON."""
from __future__ import annotations

from ..options import FitOptions
import sys

from .common import backend, checked_prompt, model_args, print_json, terminal_progress


def cmd_logit_lens(args) -> int:
    from ..model.tokens import visible
    from ..options import LensOptions

    prompt = checked_prompt(args)
    options = LensOptions(top_k=args.top_k, target=args.target, lens=args.lens, alternatives=args.alternatives)
    options.check()  # before the model loads: a bad option costs no wait
    b = backend(args)
    if args.lens == "linear" and not any(f.kind == "linear" for f in b.lens_fits()):
        # Asked for on the command line: fitted here, before the lens (about 90 s for the bundled model).
        print("no linear lens yet: fitting one on the shipped corpus first", file=sys.stderr)
        b.fit_lens(FitOptions("linear"), progress=terminal_progress)
        terminal_progress.close()
    result = b.logit_lens(prompt, options)
    if args.json:
        return print_json(result)
    last = len(result.positions) - 1
    print(f"{result.model}: {len(result.tokens)} tokens, {result.n_layers} layers, {result.lens} lens")
    print("prompt: " + " ".join(visible(t) for t in result.tokens))
    print(f"at the last position (next token after {visible(result.tokens[-1])!r}):")
    # The alternatives' ranks, one column each (the page's target box switches to them).
    others = [f"{visible(t)!r:>10}" for t in result.alternative_tokens]
    print(f"{'layer':>5}  {'top-1':<16} {'prob':>6} {'entropy':>8} {'KL→final':>9}  target {visible(result.target_tokens[last])!r} rank"
          + (" | ranks of " + " ".join(others) if others else ""))
    exit_row = result.exit_layer[last]
    for r, label in enumerate(result.layers):
        mark = "  ← the final answer from here on" if r == exit_row else ""
        ranks = " ".join(f"{int(result.alternative_rank[j, r, last]):>10}" for j in range(len(others)))
        print(f"{label:>5}  {visible(result.top_tokens[r][last][0]):<16} {result.top_probs[r, last, 0]:6.3f} "
              f"{result.entropy[r, last]:8.3f} {result.kl_to_final[r, last]:9.3f}  {result.target_rank[r, last]}"
              + (f" | {ranks}" if others else "") + mark)
    if result.target_note:
        print(f"note: {result.target_note}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("logit-lens", help="what every layer predicts at every position")
    model_args(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--target", default=None, help="token to track (default: the final top-1 at each position)")
    p.add_argument("--alternatives", type=int, default=0, metavar="N",
                   help="also track the final layer's top-N tokens at the last position, each as a target")
    p.add_argument("--lens", default="logit", help="logit (default), linear (fitted here first if none is), tuned "
                                                   "or jacobian (see fit-lens)")
    p.set_defaults(func=cmd_logit_lens)
