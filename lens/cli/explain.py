"""``explain``: one number's work shown — a logit-lens cell (``--layer L --position P``), one attention weight
(``--head L.H --query Q --key K``) or one MLP neuron at one position (``--neuron L.N --position P``)."""
from __future__ import annotations

from ..errors import LensError
from .common import backend, checked_prompt, model_args, print_json


def cmd_explain(args) -> int:
    from ..explain.options import AttentionWeightOptions, CellOptions, NeuronAtOptions, parse_pair
    from ..figures.explain import as_text, attention_steps, cell_steps, neuron_steps

    if vars(args).get("save_name"):
        raise LensError("explain prints a walk-through, not a view: --save does not apply")
    if args.head is not None and args.neuron is not None:
        raise LensError("give --head L.H or --neuron L.N, not both")
    if args.head is not None:
        if args.layer is not None:
            raise LensError("--head L.H names the layer: leave out --layer")
        layer, head = parse_pair(args.head, "--head")
        options = AttentionWeightOptions(layer=layer, head=head, query=args.query, key_position=args.key,
                                         dims=args.dims)
        options.check()
        run, steps = "explain_attention", attention_steps
    elif args.neuron is not None:
        if args.layer is not None:
            raise LensError("--neuron L.N names the layer: leave out --layer")
        layer, neuron = parse_pair(args.neuron, "--neuron")
        options = NeuronAtOptions(layer=layer, neuron=neuron, position=args.position, dims=args.dims)
        options.check()
        run, steps = "explain_neuron", neuron_steps
    else:
        if args.layer is None:
            raise LensError("give --layer L (0: the embeddings) for a lens cell, --head L.H for an attention "
                            "weight or --neuron L.N for a neuron")
        options = CellOptions(layer=args.layer, position=args.position, top=args.top, dims=args.dims)
        options.check()
        run, steps = "explain_cell", cell_steps
    text = checked_prompt(args)
    result = getattr(backend(args), run)(text, options)
    if args.json:
        return print_json(result)
    print(as_text(steps(result)))
    return 0


def register(sub) -> None:
    p = sub.add_parser("explain", help="one number's work shown: a lens cell, one attention weight or one neuron")
    model_args(p)
    p.add_argument("--layer", type=int, default=None, help="a lens cell's row: 0 the embeddings, L the output")
    p.add_argument("--position", type=int, default=-1, help="the position (negative: from the end; default -1)")
    p.add_argument("--head", default=None, metavar="L.H", help="one attention weight of head H of block L")
    p.add_argument("--query", type=int, default=-1, help="with --head: the query position (default -1)")
    p.add_argument("--key", type=int, default=0, help="with --head: the key position (default 0)")
    p.add_argument("--neuron", default=None, metavar="L.N", help="neuron N of block L's MLP, at --position")
    p.add_argument("--top", type=int, default=8, help="a lens cell's tokens shown (default 8, at least 5)")
    p.add_argument("--dims", type=int, default=8, help="largest dimensions of each vector shown (default 8)")
    p.set_defaults(func=cmd_explain)
