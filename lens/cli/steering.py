"""``steer``: continue a prompt plainly and with a steering vector added to (or removed from) the residual stream
entering one block, from the same seed (lens/steering/)."""
from __future__ import annotations

import json
import sys

from .common import backend, checked_prompt, model_args, terminal_progress


def cmd_steer(args) -> int:
    from ..errors import LensError
    from ..steering.options import SteerOptions
    from ..steering.results import steer_json

    prompt = checked_prompt(args)
    given = [what for what, on in (("--token", args.token is not None), ("--positive/--negative",
                                   bool(args.positive or args.negative)), ("--vector", args.vector is not None),
                                   ("--probe-set", args.probe_set is not None)) if on]
    if len(given) > 1:
        raise LensError(f"give one steering vector: {' or '.join(given)}, not both")
    vector = {"--token": "token", "--vector": "saved", "--probe-set": "probe"}.get(given[0] if given else "",
                                                                                  "contrast")
    layer = args.layer
    if layer is None:
        if vector != "saved":
            raise LensError("give --layer L: the stream entering block L (1-based)")
        from ..steering.store import VectorStore

        layer = VectorStore().get(args.vector).layer  # a saved vector is applied where it was read
    options = SteerOptions(
        positive=tuple(args.positive or ()), negative=tuple(args.negative or ()), layer=layer, coef=args.coef,
        mode=args.mode, positions=args.positions, unit=args.unit, vector=vector, token=args.token,
        saved=args.vector, probe_set=args.probe_set, front_tokens=args.front_tokens,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed, target=args.target,
        dose=not args.no_dose, grid=not args.no_grid)
    options.check()
    b = backend(args)
    if args.save_vector:
        from ..steering.store import VectorStore, check_name

        name = check_name(args.save_vector)
        saved = VectorStore().save(b.steering_vector(options, name))
        print(f"saved the vector as “{saved.name}” (layer {saved.layer}, ‖v‖ = {saved.norm:.4g}) in "
              f"{VectorStore().path}", file=sys.stderr)
    r = b.steer(prompt, options, progress=terminal_progress)
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
    p.add_argument("--vector", default=None, metavar="NAME",
                   help="steer with a saved vector (python -m lens vectors list); --layer defaults to its own")
    p.add_argument("--probe-set", default=None, choices=["true-false", "reviews"],
                   help="steer along the direction of a probe of this shipped set, fitted at --layer")
    p.add_argument("--save-vector", default=None, metavar="NAME",
                   help="also save the vector used under NAME (replacing one of that name)")
    p.add_argument("--layer", type=int, default=None, help="1-based: the stream entering this block")
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
    p.add_argument("--no-grid", action="store_true", help="skip the full lens of both runs (faster)")
    p.set_defaults(func=cmd_steer)
