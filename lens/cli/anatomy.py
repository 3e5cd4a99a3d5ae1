"""``anatomy`` and ``contrastive``: per-layer measurements of one prompt or of every prompt of a suite (lens/anatomy/),
and autocontrastive decoding (an early layer's logit lens as the amateur)."""
from __future__ import annotations

import json

from ..errors import LensError
from .common import backend, checked_prompt, model_args, terminal_progress


def _suite_of(args):
    """The suite ``--suite NAME`` or ``--prompts-file FILE`` names, or None (one prompt); one of them only."""
    from ..suites.suite import example, read_suite

    given = [f for f, v in (("--suite", args.suite), ("--prompts-file", args.prompts_file),
                            ("--prompt", args.prompt), ("--prompt-file", args.prompt_file)) if v is not None]
    if len(given) > 1:
        raise LensError(f"give one of --prompt, --prompt-file, --suite or --prompts-file, not {' and '.join(given)}")
    if args.suite is not None:
        return example(args.suite)
    return read_suite(args.prompts_file) if args.prompts_file is not None else None


def cmd_anatomy_suite(args, suite, options) -> int:
    from ..anatomy.readings import (suite_norm_reading, suite_outlier_reading, suite_similarity_reading,
                                    suite_skip_reading)
    from ..anatomy.results import anatomy_suite_json
    from ..anatomy.spread import outliers, spread

    # What --save keeps: the page's suite view, with the suite itself as JSONL.
    args.saved_view = ("anatomy-suite", suite.to_jsonl(), {"suite": suite.name, "swap": options.swap})
    s = backend(args).anatomy_suite(suite, options, progress=None if args.json else terminal_progress)
    terminal_progress.close()
    if args.json:
        print(json.dumps(anatomy_suite_json(s), ensure_ascii=False))
        return 0
    N = len(s.prompts)
    print(f"{s.model}, suite {s.suite}: {N} prompts, each measured on its own; per row, the mean over the prompts "
          "[10th–90th percentile]; every measure over positions 1… (the first token left out)")
    norm, change, kl = spread(s.norm), spread(s.block_change), spread(s.skip_kl)
    max_abs, kurt, o = spread(s.max_abs), spread(s.kurtosis), outliers(s)
    print(f"{'row':>5} {'mean ‖h‖':>10} {'1−cos':>8} {'skip KL':>9} {'[10–90 %]':>17} {'max |h|':>9} "
          f"{'dim':>5} {'prompts':>7} {'kurt':>8}")
    for i, row in enumerate(s.rows):
        b = i - 1
        block = (f"{change['mean'][b]:>8.4f} {kl['mean'][b]:>9.4g} [{kl['p10'][b]:>7.3g}, {kl['p90'][b]:>7.3g}]"
                 if i else f"{'':>8} {'':>9} {'':>17}")
        print(f"{row:>5} {norm['mean'][i]:>10.4g} {block} {max_abs['mean'][i]:>9.4g} {o['row_dim'][i]:>5} "
              f"{o['row_count'][i]:>7} {kurt['mean'][i]:>8.3g}")
    for line in (suite_norm_reading(s), suite_skip_reading(s), suite_similarity_reading(s), suite_outlier_reading(s)):
        print(line)
    return 0


def cmd_anatomy(args) -> int:
    from ..anatomy.options import AnatomyOptions
    from ..anatomy.readings import norm_reading, outlier_reading, similarity_reading, skip_reading
    from ..anatomy.results import anatomy_json

    suite = _suite_of(args)
    options = AnatomyOptions(swap=args.swap, top_dims=args.top_dims)
    options.check()
    if suite is not None:
        return cmd_anatomy_suite(args, suite, options)
    prompt = checked_prompt(args)
    r = backend(args).anatomy(prompt, options)
    if args.json:
        print(json.dumps(anatomy_json(r), ensure_ascii=False))
        return 0
    print(f"{r.model}: {len(r.tokens)} tokens; every measure over positions 1… (the first token left out); the last "
          f"row is the last block's raw output (before the final norm)")
    print(f"{'row':>5} {'mean ‖h‖':>10} {'1−cos':>8} {'attn':>6} {'mlp':>6} {'skip KL':>9} {'max |h|':>9} {'dim':>5} "
          f"{'kurt':>8}")
    for i, row in enumerate(r.rows):
        b = i - 1
        block = (f"{r.block_change[b]:>8.4f} {r.attn_share[b]:>6.0%} {r.mlp_share[b]:>6.0%} {r.skip_kl[b]:>9.4g}"
                 if i else f"{'':>8} {'':>6} {'':>6} {'':>9}")
        print(f"{row:>5} {r.norm[i]:>10.4g} {block} {r.max_abs[i]:>9.4g} {int(r.max_dim[i]):>5} {r.kurtosis[i]:>8.3g}")
    for line in (norm_reading(r), skip_reading(r), similarity_reading(r.rows, r.cka), outlier_reading(r)):
        print(line)
    return 0


def cmd_contrastive(args) -> int:
    from ..anatomy.options import ContrastiveOptions
    from ..anatomy.readings import contrastive_reading
    from ..anatomy.results import contrastive_json

    prompt = checked_prompt(args)
    options = ContrastiveOptions(amateur_layer=args.amateur_layer, alpha=args.alpha, top_k=args.top_k,
                                 max_new_tokens=args.max_new_tokens)
    options.check()
    r = backend(args).contrastive(prompt, options)
    if args.json:
        print(json.dumps(contrastive_json(r), ensure_ascii=False))
        return 0
    print(contrastive_reading(r))
    print(f"{'plain':<24} {'p':>7}   {'contrastive':<24} {'score':>7} {'p_L':>7} {'p_l':>9}")
    for i in range(max(len(r.plain_tokens), len(r.contrast_tokens))):
        left = f"{r.plain_tokens[i]!r:<24} {r.plain_prob[i]:>7.3f}" if i < len(r.plain_tokens) else " " * 32
        right = (f"{r.contrast_tokens[i]!r:<24} {r.contrast_score[i]:>7.3f} {r.contrast_prob[i]:>7.3f} "
                 f"{r.amateur_prob[i]:>9.2e}" if i < len(r.contrast_tokens) else "")
        print(f"{left}   {right}")
    print(f"plain:       {prompt}{r.plain_text}")
    print(f"contrastive: {prompt}{r.contrast_text}")
    return 0


def register(sub) -> None:
    from ..anatomy.options import MAX_TOP_DIMS, MAX_TOP_K
    from ..options import MAX_NEW_TOKENS

    p = sub.add_parser("anatomy", help="per layer: residual norms, block change, skipping each block, CKA, outliers")
    model_args(p)
    p.add_argument("--swap", action="store_true", help="also swap every two neighbouring blocks (KL of each swap)")
    p.add_argument("--top-dims", type=int, default=16, help=f"dimensions in the outlier table, 1 to {MAX_TOP_DIMS} "
                                                            "(default 16)")
    p.add_argument("--suite", default=None, metavar="NAME", help="a shipped prompt suite (capitals, landmarks, "
                   "indirect-object, multilingual): every prompt measured, then per row the mean and spread")
    p.add_argument("--prompts-file", default=None, metavar="FILE",
                   help="a suite file, as `suite --prompts-file` reads it (.jsonl, .csv or .txt): as --suite")
    p.set_defaults(func=cmd_anatomy)
    p = sub.add_parser("contrastive", help="autocontrastive decoding: the last layer against an early one's lens")
    model_args(p)
    p.add_argument("--amateur-layer", type=int, required=True, help="1-based block below the last: the amateur")
    p.add_argument("--alpha", type=float, default=0.1, help="plausible tokens: p ≥ alpha × the top p (default 0.1)")
    p.add_argument("--top-k", type=int, default=10, help=f"tokens of each ranking, 1 to {MAX_TOP_K} (default 10)")
    p.add_argument("--max-new-tokens", type=int, default=12,
                   help=f"greedy new tokens with and without it, 1 to {MAX_NEW_TOKENS} (default 12)")
    p.set_defaults(func=cmd_contrastive)
