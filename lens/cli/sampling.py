"""``sample``: temperature, top-k and top-p on a prompt's final logits, and one sample (lens/sampling/)."""
from __future__ import annotations

from ..errors import LensError
from .common import backend, checked_prompt, model_args, print_json


def cmd_sample(args) -> int:
    from ..figures.explain import as_text
    from ..figures.sampling import sampling_summary, sampling_table
    from ..sampling.options import SampleOptions

    if vars(args).get("save_name"):
        raise LensError("sample prints a walk-through, not a view: --save does not apply")
    options = SampleOptions(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                            shown=args.rows)
    options.check()
    text = checked_prompt(args)
    r = backend(args).sample(text, options)
    if args.json:
        return print_json(r)
    print(as_text([(f"{r.model}: the next token after {r.context!r}", [sampling_table(r), sampling_summary(r)])]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("sample", help="temperature, top-k and top-p on the prompt's next-token logits, and a sample")
    model_args(p)
    p.add_argument("--temperature", type=float, default=1.0, help="divides the logits (default 1)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (default 0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="then keep the smallest set holding p (default 1: off)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the draw (default 0)")
    p.add_argument("--rows", type=int, default=20, help="rows of the walk-through printed (default 20)")
    p.set_defaults(func=cmd_sample)
