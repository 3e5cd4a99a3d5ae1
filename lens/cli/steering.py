"""``steer``: continue a prompt plainly and with a steering vector added to (or removed from) the residual stream
entering one block, from the same seed (lens/steering/)."""
from __future__ import annotations

import json

from .common import backend, checked_prompt, model_args, terminal_progress


def cmd_steer(args) -> int:
    from ..errors import LensError
    from ..steering.options import SteerOptions
    from ..steering.results import steer_json

    prompt = checked_prompt(args)
    if args.token is not None and (args.positive or args.negative):
        raise LensError("give --token, or --positive and --negative, not both")
    options = SteerOptions(
        positive=tuple(args.positive or ()), negative=tuple(args.negative or ()), layer=args.layer, coef=args.coef,
        mode=args.mode, positions=args.positions, unit=args.unit, vector="token" if args.token is not None else "contrast",
        token=args.token, front_tokens=args.front_tokens, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, seed=args.seed, target=args.target, dose=not args.no_dose)
    options.check()
    r = backend(args).steer(prompt, options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        print(json.dumps(steer_json(r), ensure_ascii=False))
        return 0
    print(f"{r.model}: {r.mode} at the stream entering block {r.layer} ({r.positions} positions), coefficient "
          f"{r.coef:g} ({r.unit}; ×{r.coef_raw:.4g} the raw vector), ‖v‖ = {r.vector_norm:.4g}, "
          f"mean ‖h‖ = {r.mean_norm:.4g}")
    print(f"plain:   {prompt}{r.plain_text}")
    print(f"steered: {prompt}{r.steered_text}")
    if len(r.dose_coefs):
        print(f"\nlog p({r.target!r}) next after the prompt:")
        for c, lp in zip(r.dose_coefs, r.dose_logprob):
            print(f"  {c:>10.4g}  {lp:8.3f}")
        for c, t in zip(r.text_coefs, r.texts):
            print(f"  {c:>10.4g}  {t!r}")
    return 0


def register(sub) -> None:
    from ..options import MAX_NEW_TOKENS
    from ..steering.options import MODES, POSITIONS

    p = sub.add_parser("steer", help="continue the prompt plainly and steered by a vector in the residual stream")
    model_args(p)
    p.add_argument("--positive", action="append", metavar="TEXT",
                   help="a positive text (repeat for a list; pairs with --negative in order)")
    p.add_argument("--negative", action="append", metavar="TEXT", help="a negative text (repeat for a list)")
    p.add_argument("--token", default=None, help="steer along this token's unembedding row instead of a contrast")
    p.add_argument("--layer", type=int, required=True, help="1-based: the stream entering this block")
    p.add_argument("--coef", type=float, default=4.0, help="the coefficient (default 4; 0: the plain run)")
    p.add_argument("--unit", choices=["raw", "norm"], default="raw",
                   help="raw (default): multiplies the raw vector; norm: a fraction of the mean residual norm")
    p.add_argument("--mode", choices=list(MODES), default="add", help="add (default), orthogonal, cap or ablate")
    p.add_argument("--positions", choices=list(POSITIONS), default="all", help="all (default), after-prompt or front")
    p.add_argument("--front-tokens", type=int, default=4, help="with --positions front: how many (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=20, help=f"1 to {MAX_NEW_TOKENS} (default 20)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sampled")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed (default 0)")
    p.add_argument("--target", default=None, help="the dose-response's token (default: the steered first new token)")
    p.add_argument("--no-dose", action="store_true", help="skip the dose-response (faster)")
    p.set_defaults(func=cmd_steer)
