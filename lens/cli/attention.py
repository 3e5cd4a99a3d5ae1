"""Attention-flow commands: ``rollout``, ``contributions``, ``routes`` and ``heads``."""
from __future__ import annotations

from ..options import ContributionOptions, FlowOptions, HeadOptions, RolloutOptions, RouteOptions
from .common import backend, bar, checked_prompt, model_args, print_json


def _setup(args):
    """The prompt and the backend, with the options that need no model checked first (a bad one costs no load)."""
    from ..errors import LensError
    from ..options import check_threshold

    prompt = checked_prompt(args)
    if getattr(args, "layer", None) is not None and args.layer < 1:
        raise LensError(f"layer {args.layer} is out of range: layers are numbered from 1")
    if getattr(args, "threshold", None) is not None:
        check_threshold(args.threshold)
    return prompt, backend(args)


def flow_layers(text: str | None, flow: bool) -> tuple[int, ...] | None:
    """``--layers 2,4`` (1-based layer rows of the flow) as a tuple; None: every layer."""
    from ..errors import LensError

    if text is None:
        return None
    if not flow:
        raise LensError("--layers picks the rows of attention flow: add --flow (rollout gives every layer's row)")
    try:
        layers = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise LensError(f"--layers takes layers numbered from 1, separated by commas (e.g. 2,4), "
                        f"not {text!r}") from None
    if any(l < 1 for l in layers):
        raise LensError(f"--layers {text}: layers are numbered from 1")
    return layers


def cmd_rollout(args) -> int:
    from ..model.tokens import visible

    layers = flow_layers(args.layers, args.flow)  # before the model loads
    prompt, backend = _setup(args)
    result = (backend.attention_flow(prompt, FlowOptions(args.position, layers)) if args.flow
              else backend.rollout(prompt, RolloutOptions(args.position)))
    if args.json:
        return print_json(result)
    values = result.flow if args.flow else result.rollout
    print(f"{result.model}: {'attention flow' if args.flow else 'attention rollout'} for position {result.position} "
          f"({visible(result.tokens[result.position])!r}), "
          + (f"layer {result.layers[-1]}'s row:" if args.flow else "last layer's row:"))
    row = values[-1]
    for j, t in enumerate(result.tokens):
        print(f"{j:>4} {visible(t):<16} {row[j]:7.4f} {bar(float(row[j]))}")
    return 0


def cmd_contributions(args) -> int:
    from ..model.tokens import visible

    prompt, backend = _setup(args)
    result = backend.contributions(prompt, ContributionOptions(args.layer, args.position))
    if args.json:
        return print_json(result)
    print(f"{result.model}: attention block of layer {result.layer} at position {result.position} "
          f"({visible(result.tokens[result.position])!r})")
    print(f"residual: {result.residual:.4f} {bar(result.residual)}")
    for j in range(result.position + 1):
        top_h = int(result.heads[:, j].argmax())
        print(f"{j:>4} {visible(result.tokens[j]):<16} {result.sources[j]:7.4f} (most from head {top_h}) "
              f"{bar(float(result.sources[j]))}")
    return 0


def cmd_routes(args) -> int:
    from ..results import BLOCKS, KINDS
    from ..model.tokens import visible

    prompt, backend = _setup(args)
    g = backend.route_graph(prompt, RouteOptions(args.position, args.threshold))
    if args.json:
        return print_json(g)
    print(f"{g.model}: routes to the prediction {visible(g.prediction)!r} at position {g.position}, "
          f"threshold {g.threshold}: {len(g.edge_layer)} edges")
    for e in range(len(g.edge_layer)):
        print(f"L{g.edge_layer[e]:>3} {BLOCKS[g.edge_block[e]]:<4} {KINDS[g.edge_kind[e]]:<9} "
              f"{g.edge_src[e]:>4} -> {g.edge_dst[e]:<4} {g.edge_importance[e]:.3f}")
    return 0


def cmd_heads(args) -> int:
    import numpy as np

    prompt, backend = _setup(args)
    if args.layer is not None:
        result = backend.head_patterns(prompt, HeadOptions(args.layer))
        if args.json:
            return print_json(result)
        print(f"{result.model}: layer {result.layer}, {result.n_heads} heads, attention of the last position:")
        for h in range(result.n_heads):
            j = int(result.attention[h, -1].argmax())
            print(f"  head {h:>2}: most on position {j} ({result.attention[h, -1, j]:.3f})")
        return 0
    s = backend.head_summary(prompt)
    if args.json:
        return print_json(s)
    for name, m in (("previous-token", s.prev_token), ("induction", s.induction), ("entropy", s.entropy)):
        l, h = np.unravel_index(int(np.argmax(m)), m.shape)
        print(f"highest {name} score: layer {l + 1} head {h} ({m[l, h]:.3f})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("rollout", help="attention rollout (or --flow: attention flow) for one output position")
    model_args(p)
    p.add_argument("--position", type=int, default=None, help="output position, 0-based; negative counts from the end, -1 the last (default: the last)")
    p.add_argument("--flow", action="store_true", help="attention flow (max-flow) instead of rollout; short prompts only")
    p.add_argument("--layers", default=None, metavar="L[,L…]",
                   help="with --flow: only these layers' rows, numbered from 1 (e.g. the last one: a longer prompt "
                        "affords it); default: every layer")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("contributions", help="who the attention block of one layer reads from, at one position")
    model_args(p)
    p.add_argument("--layer", type=int, required=True, help="layer, 1-based (as in the lens rows)")
    p.add_argument("--position", type=int, default=None, help="target position, 0-based; negative counts from the end, -1 the last (default: the last)")
    p.set_defaults(func=cmd_contributions)

    p = sub.add_parser("routes", help="information-flow routes to one prediction (Ferrando & Voita)")
    model_args(p)
    p.add_argument("--position", type=int, default=None, help="the prediction's position, 0-based; negative counts from the end (default: the last)")
    p.add_argument("--threshold", type=float, default=0.04, help="drop edges less important than this (default 0.04)")
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("heads", help="per-head scores (entropy, previous-token, induction) or one layer's patterns")
    model_args(p)
    p.add_argument("--layer", type=int, default=None, help="show this layer's attention patterns (1-based)")
    p.set_defaults(func=cmd_heads)
