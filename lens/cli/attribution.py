"""``dla``, ``sublayer-lens`` and ``knockout``: who writes the answer, as a table or JSON."""
from __future__ import annotations

from .common import backend, checked_prompt, model_args, print_json, terminal_progress


def _position(text):
    from ..options import check_position_value

    return check_position_value(text)


def cmd_dla(args) -> int:
    from ..attribution.options import DLAOptions
    from ..model.tokens import visible

    prompt = checked_prompt(args)
    options = DLAOptions(target=args.target, foil=args.foil, position=_position(args.position), top_k=args.top_k)
    options.check()  # before the model loads
    r = backend(args).dla(prompt, options)
    if args.json:
        return print_json(r)
    what = f"logit({visible(r.target)})" + (f" − logit({visible(r.foil)})" if r.foil is not None else "")
    print(f"{r.model}: direct logit attribution to {what} at position {r.position} "
          f"({visible(r.tokens[r.position])}); final norm's scale frozen at {r.scale:.4g}")
    print(f"parts: embeddings {r.embed:+.3f}, attention {r.attn.sum():+.3f}, MLPs {r.mlp.sum():+.3f}, "
          f"biases {r.bias:+.3f}; sum {r.total:.4f}, the model's {r.logit_diff:.4f}")
    print(f"{'layer':>5} {'attn':>8} {'mlp':>8}   heads")
    for i, label in enumerate(r.layers):
        heads = " ".join(f"{v:+6.2f}" for v in r.heads[i]) if r.heads.shape[1] else ""
        print(f"{label:>5} {r.attn[i]:+8.3f} {r.mlp[i]:+8.3f}   {heads}")
    if r.note:
        print(f"note: {r.note}")
    return 0


def cmd_sublayer(args) -> int:
    from ..attribution.options import SublayerOptions
    from ..model.tokens import visible

    prompt = checked_prompt(args)
    options = SublayerOptions(target=args.target, top_k=args.top_k)
    options.check()
    r = backend(args).sublayer_lens(prompt, options)
    if args.json:
        return print_json(r)
    last = len(r.positions) - 1
    print(f"{r.model}: each block's attention and MLP output decoded on its own at the last position "
          f"({visible(r.tokens[-1])}); target {visible(r.target)}")
    print(f"{'layer':>5} {'attn: top':>14} {'target':>8}   {'mlp: top':>14} {'target':>8}")
    for i, label in enumerate(r.layers):
        print(f"{label:>5} {visible(r.attn_top_tokens[i][last][0])[:14]:>14} {r.attn_target[i, last]:+8.3f}   "
              f"{visible(r.mlp_top_tokens[i][last][0])[:14]:>14} {r.mlp_target[i, last]:+8.3f}")
    return 0


def cmd_knockout(args) -> int:
    from ..attribution.options import KnockoutOptions, sources_from_text

    prompt = checked_prompt(args)
    options = KnockoutOptions(target=args.target, sources=sources_from_text(args.sources), window=args.window,
                              align=args.align)
    options.check()
    r = backend(args).knockout(prompt, options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(r)
    print(f"{r.model}: attention from the last position blocked in windows of {r.window} layers "
          f"({'centred on' if r.align == 'centre' else 'starting at'} each layer); the target's probability "
          f"{r.base_prob:.4f} unblocked; change in %")
    print(f"{'':>24} " + " ".join(f"{l:>5}" for l in r.layers))
    for label, row in zip(r.rows, r.change):
        print(f"{label[:24]:>24} " + " ".join(f"{100 * v:5.0f}" for v in row))
    return 0


def register(sub) -> None:
    d = sub.add_parser("dla", help="direct logit attribution: each head's, attention's, MLP's and the embeddings' "
                                   "direct part of the answer")
    model_args(d)
    d.add_argument("--target", default=None, help="one token (e.g. ' Paris'); default: the model's top-1")
    d.add_argument("--foil", default=None, help="one token: the metric is logit(target) − logit(foil); default: "
                                                "logit(target) alone")
    d.add_argument("--position", default=None, help="0-based, negative from the end (default: the last)")
    d.add_argument("--top-k", type=int, default=5, help="tokens listed per head (default 5)")
    d.set_defaults(func=cmd_dla)

    s = sub.add_parser("sublayer-lens", help="each block's attention and MLP output decoded on its own")
    model_args(s)
    s.add_argument("--target", default=None, help="the token whose logit each cell shows (default: the model's "
                                                  "top-1)")
    s.add_argument("--top-k", type=int, default=3, help="tokens kept per cell (default 3)")
    s.set_defaults(func=cmd_sublayer)

    k = sub.add_parser("knockout", help="attention knockout: block the last position's attention to some tokens "
                                        "in a window of layers")
    model_args(k)
    k.add_argument("--target", default=None, help="one token (default: the model's top-1)")
    k.add_argument("--sources", default=None, metavar="P,…",
                   help="positions to block (e.g. the subject's: 2,3 or 2-4); default: each token on its own")
    k.add_argument("--window", type=int, default=None, help="layers per window (default 9, at most the model's)")
    k.add_argument("--align", choices=["centre", "start"], default="centre",
                   help="each window centred on its layer (default) or starting at it")
    k.set_defaults(func=cmd_knockout)
