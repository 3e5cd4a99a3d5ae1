"""``suite``: one finding over many prompts: the lens at each prompt's last position, aggregated per layer,
or activation patching averaged over clean/corrupt pairs; a table, JSON or a CSV file."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ..errors import LensError
from .common import backend, print_json, save_args, terminal_progress


def _suite(args):
    from ..suites.suite import example, read_suite

    given = [x for x in (args.prompts_file, args.pairs_file, args.example) if x is not None]
    if len(given) != 1:
        raise LensError("give one of --prompts-file FILE, --pairs-file FILE or --example NAME")
    if args.example is not None:
        return example(args.example)
    return read_suite(args.prompts_file or args.pairs_file)


def _check_out(path: str | None) -> None:
    if path is not None and not Path(path).expanduser().resolve().parent.is_dir():
        raise LensError(f"cannot write {path}: its folder does not exist")


def _write_csv(path: str, header: list[str], rows) -> None:
    try:
        with open(Path(path).expanduser(), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    except OSError as exc:
        raise LensError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}", file=sys.stderr)


# ---------------------------------------------------------------- the lens over a suite

def _lens(args, suite) -> int:
    from ..model.tokens import visible
    from ..options import FitOptions
    from ..suites.aggregate import aggregate
    from ..suites.options import SuiteOptions
    from ..suites.table import lens_csv, suite_json

    options = SuiteOptions(lens=args.lens)
    options.check()  # before the model loads
    b = backend(args)
    if args.lens == "linear" and not any(f.kind == "linear" for f in b.lens_fits()):
        print("no linear lens yet: fitting one on the shipped corpus first", file=sys.stderr)
        b.fit_lens(FitOptions("linear"), progress=terminal_progress)
        terminal_progress.close()
    result = b.lens_suite(suite, options, progress=None if args.json else terminal_progress)
    terminal_progress.close()
    overall = aggregate(result, None, args.resamples, args.seed)
    groups = aggregate(result, args.by, args.resamples, args.seed) if args.by else None
    if args.csv:
        header, rows = lens_csv(result)
        _write_csv(args.csv, header, rows)
    if args.json:
        print(json.dumps(suite_json(result, overall, groups), ensure_ascii=False))
        return 0
    a = overall[0]
    right = (f"the final answer is the target for {a.n_correct} of {a.n_targets} ({a.accuracy:.0%})" if a.n_targets
             else "no targets given: each prompt follows the model's own answer")
    print(f"{result.model}, {result.lens} lens, suite {result.suite}: {a.n} prompts; {right}")
    print(f"per layer, over the prompts: the target's probability (mean [95% bootstrap interval of the mean]), "
          f"its median rank, mean KL to the final distribution, and the prompts whose answer is settled there")
    print(f"{'layer':>5}  {'p(target)':>9} {'[95% interval]':>17} {'rank':>6} {'KL':>7} {'exits':>5}")
    for r, label in enumerate(result.layers):
        lo, hi = a.target_prob_ci95[r]
        print(f"{label:>5}  {a.target_prob_mean[r]:9.3f} [{lo:7.3f}, {hi:7.3f}] {a.target_rank_median[r]:6g} "
              f"{a.kl_to_final_mean[r]:7.2f} {int(a.exit_counts[r]):5d}")
    if a.exit_counts[-1]:
        print(f"never settled (a tie in the output row): {int(a.exit_counts[-1])}")
    for g in groups or []:
        print(f"{args.by} = {g.group}: {g.n} prompts, final answer right for {g.n_correct} of {g.n_targets}; "
              f"p(target) at the output "
              f"{g.target_prob_mean[-1]:.3f} [{g.target_prob_ci95[-1][0]:.3f}, {g.target_prob_ci95[-1][1]:.3f}]")
    print("per prompt: target, the model's answer, the target's rank at the output, exit layer")
    for i, prompt in enumerate(result.prompts):
        ex = result.exit_layer[i]
        print(f"  {'✓' if result.correct[i] else '✗'} {visible(prompt)[-48:]:<48} {visible(result.targets[i])!r:>14} "
              f"{visible(result.final_prediction[i])!r:>14} {int(result.target_rank[i, -1]):>6} "
              f"{'–' if ex is None else result.layers[ex]:>4}")
    return 0


# ---------------------------------------------------------------- patching over pairs

def _pairs(args, suite) -> int:
    from ..model.tokens import visible
    from ..suites.options import PairSuiteOptions
    from ..suites.table import pairs_csv

    options = PairSuiteOptions(site=args.site or "resid")
    options.check()
    b = backend(args)
    result = b.patch_suite(suite, options, progress=None if args.json else terminal_progress)
    terminal_progress.close()
    if args.csv:
        header, rows = pairs_csv(result)
        _write_csv(args.csv, header, rows)
    if args.json:
        return print_json(result)
    P = len(result.clean)
    print(f"{result.model}: patching {result.site} over {P} pairs of {result.suite} ({result.metric_name}); "
          f"each cell the mean over the pairs that have it of (m(patched) − m(corrupt)) / (m(clean) − m(corrupt))")
    for gone in result.left_out:
        print(f"left out: {gone['where']}: {gone['reason']}")
    print(f"{'':>5} " + " ".join(f"{c[:7]:>7}" for c in result.columns))
    if any(result.column_tokens):  # the token every pair has there, where they agree
        print(f"{'':>5} " + " ".join(f"{visible(t)[:7]:>7}" for t in result.column_tokens))
    print(f"{'pairs':>5} " + " ".join(f"{int(n):>7d}" for n in result.count.max(0)))
    for label, row in zip(result.layers, result.mean):
        print(f"{label:>5} " + " ".join("      –" if v != v else f"{v:7.2f}" for v in row))
    return 0


def cmd_suite(args) -> int:
    _check_out(args.csv)
    suite = _suite(args)
    if args.pairs_file is not None or (args.example is not None and args.site is not None):
        if args.by:
            raise LensError("--by groups a lens suite's prompts; a patching suite is averaged over every pair")
        # What --save keeps: the Prompt suites page's view of it, with the suite itself as JSONL.
        args.saved_view = ("pair-suite", suite.to_jsonl(), {"suite": suite.name, "site": args.site or "resid"})
        return _pairs(args, suite)
    if args.site is not None:
        raise LensError("--site goes with --pairs-file (or --example with pairs): it says what to patch")
    if args.by is not None and args.by not in suite.columns:  # before the model loads
        raise LensError(f"the suite has no column {args.by!r} to group by (its label columns: "
                        f"{', '.join(suite.columns) or 'none'})")
    args.saved_view = ("suite", suite.to_jsonl(), {"suite": suite.name, "lens": args.lens, "by": args.by})
    return _lens(args, suite)


def register(sub) -> None:
    from ..suites.aggregate import RESAMPLES, SEED

    p = sub.add_parser("suite", help="the lens over many prompts (per layer: mean, median, bootstrap interval), "
                                     "or patching averaged over clean/corrupt pairs")
    p.add_argument("--prompts-file", default=None, metavar="FILE",
                   help=".jsonl (one object a line: prompt, target, foil, position, label columns), .csv (a header "
                        "row with the same columns) or .txt (one prompt a line)")
    p.add_argument("--pairs-file", default=None, metavar="FILE",
                   help="the same formats with 'clean' and 'corrupt' columns: activation patching of every pair")
    p.add_argument("--example", default=None, metavar="NAME",
                   help="a shipped suite: capitals, landmarks, indirect-object, multilingual (with --site: its pairs "
                        "patched)")
    p.add_argument("--lens", default="logit", help="logit (default), linear (fitted here first if none is), tuned "
                                                   "or jacobian (see fit-lens)")
    p.add_argument("--site", default=None, choices=["resid", "attn", "mlp", "head"],
                   help="with pairs: what to patch (default: resid, the residual stream)")
    p.add_argument("--by", default=None, metavar="COLUMN", help="also aggregate per value of this label column")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    p.add_argument("--seed", type=int, default=SEED, help=f"bootstrap seed (default {SEED})")
    p.add_argument("--csv", default=None, metavar="OUT", help="also write the per-prompt table (one line per prompt "
                                                              "and lens row; with pairs: per pair, row and column)")
    p.add_argument("--model", default=None, help="bundled name, tiny-ARCH, folder, .gguf file or hub id "
                                                 "(default: smollm2-135m)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (a GPU if any) or multi (default: cpu)")
    p.add_argument("--backend", default="local", choices=["local", "nnsight"],
                   help="local: hooks on the model in this process (default); nnsight: nnsight traces")
    p.add_argument("--remote", action="store_true", help="with --backend nnsight: run on NDIF")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own Python code to run")
    save_args(p)
    p.set_defaults(func=cmd_suite)
