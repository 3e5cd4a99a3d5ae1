"""``generate``: continue a prompt (greedy, or sampled with a seed) and say, for each new token,
the probability it had and from which layer the logit lens already had it as the top guess."""
from __future__ import annotations

import json

from .common import backend, checked_prompt, model_args


def cmd_generate(args) -> int:
    from ..figures.generation import token_table
    from ..options import GenerateOptions, LensOptions
    from ..serialize import to_json_dict

    prompt = checked_prompt(args)
    options = GenerateOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    options.check()
    b = backend(args)
    gen = b.generate(prompt, options)
    lens = b.generation_lens(prompt, options, LensOptions(top_k=1))
    table = token_table(gen, lens)
    if args.json:
        print(json.dumps({**to_json_dict(gen), "steps": table}, ensure_ascii=False))
        return 0
    print(gen.text)
    print(f"\n{gen.model}: {len(table)} new tokens "
          f"({'greedy' if gen.temperature == 0 else f'temperature {gen.temperature:g}, seed {gen.seed}'}; "
          f"stopped: {gen.stopped})")
    for row in table:
        print(f"{row['step']:>4} {row['token']:<16} p={row['probability']:.3f}  top-1 from layer {row['top-1 from layer']}")
    return 0


def register(sub) -> None:
    from ..options import MAX_NEW_TOKENS

    p = sub.add_parser("generate", help="continue the prompt, and when each new token became the top guess")
    model_args(p)
    p.add_argument("--max-new-tokens", type=int, default=20, help=f"1 to {MAX_NEW_TOKENS} (default 20)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sampled")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed (default 0)")
    p.set_defaults(func=cmd_generate)
