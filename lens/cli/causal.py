"""``patch``: activation patching of a clean prompt into a corrupted one, as a table or JSON."""
from __future__ import annotations

from pathlib import Path

from ..errors import LensError
from .common import backend, checked_prompt, model_args, print_json, save_args, terminal_progress


def pair_text(args, name: str) -> str:
    from ..model.tokens import check_prompt

    given, path = getattr(args, f"{name}_prompt"), getattr(args, f"{name}_file")
    flag = name.replace("_", "-")
    if (given is None) == (path is None):
        raise LensError(f"give --{flag}-prompt TEXT or --{flag}-file PATH (one of them)")
    if path is not None:
        try:
            given = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise LensError(f"cannot read {path}: it is not UTF-8 text") from None
        except OSError as exc:
            raise LensError(f"cannot read {path}: {exc.strerror or exc}") from None
    return check_prompt(given)


def cmd_patch(args) -> int:
    from ..model.tokens import visible
    from ..options import PatchOptions

    clean, corrupt = pair_text(args, "clean"), pair_text(args, "corrupt")
    options = PatchOptions(target=args.target, foil=args.foil, site=args.site)
    options.check()  # before the model loads
    result = backend(args).patch(clean, corrupt, options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(result)
    print(f"{result.model}: patching {result.site} of the clean prompt into the corrupted one; "
          f"{result.metric_name} clean {result.metric_clean:.3f}, corrupted {result.metric_corrupt:.3f}")
    cols = result.columns if result.site == "head" else [visible(t) for t in result.corrupt_tokens]
    print(f"{'':>5} " + " ".join(f"{c[:7]:>7}" for c in cols))
    for label, row in zip(result.layers, result.patch):
        print(f"{label:>5} " + " ".join(f"{v:7.2f}" for v in row))
    return 0


def subject_positions(text: str | None) -> tuple[int, ...]:
    """``--subject 1,2,3`` (0-based; negative counts from the end) as positions."""
    if not text or not text.strip():
        raise LensError("say which tokens get the noise: --subject 1,2,3 (0-based positions, e.g. the subject's)")
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise LensError(f"--subject takes positions as whole numbers separated by commas, not {text!r}") from None


def cmd_noise_trace(args) -> int:
    from ..model.tokens import visible
    from ..options import NoiseOptions

    prompt = checked_prompt(args)
    options = NoiseOptions(target=args.target, subject=subject_positions(args.subject), foil=args.foil,
                           site=args.site, samples=args.samples, seed=args.seed, scale=args.scale)
    options.check()  # before the model loads
    result = backend(args).noise_trace(prompt, options, progress=None if args.json else terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(result)
    print(f"{result.model}: causal tracing with noise on tokens {result.subject} ({result.samples} samples, "
          f"noise std {result.noise_std:.3f}); {result.metric_name} clean {result.metric_clean:.3f}, "
          f"noised {result.metric_noised:.3f}; each cell: the share of the gap one restored activation closes")
    print(f"{'':>5} " + " ".join(f"{visible(t)[:7]:>7}" for t in result.tokens))
    for label, row in zip(result.layers, result.patch):
        print(f"{label:>5} " + " ".join(f"{v:7.2f}" for v in row))
    return 0


def parse_ablation(args):
    from ..options import ablation_from_text

    ablation = ablation_from_text(args.heads, args.mlp, args.skip, args.swap, args.mode)
    if ablation.empty:
        raise LensError("say what to take out: --heads L.H,…, --mlp L,…, --skip L,… or --swap L:M")
    return ablation


def cmd_ablate(args) -> int:
    import json

    from ..model.tokens import visible
    from ..serialize import to_json_dict

    prompt = checked_prompt(args)
    ablation = parse_ablation(args)
    b = backend(args)
    result = b.ablated_lens(prompt, ablation)
    original = b.logit_lens(prompt)
    if args.json:
        print(json.dumps({**to_json_dict(result), "final_prediction_original": original.final_prediction},
                         ensure_ascii=False))
        return 0
    print(f"{result.model} with {ablation.key()}: next token after {visible(result.tokens[-1])!r}: "
          f"{visible(result.final_prediction[-1])!r} ({result.top_probs[-1, -1, 0]:.3f}); "
          f"unmodified: {visible(original.final_prediction[-1])!r} ({original.top_probs[-1, -1, 0]:.3f})")
    return 0


def register(sub) -> None:
    a = sub.add_parser("ablate", help="the logit lens of the model with heads, MLPs or layers taken out (or swapped)")
    model_args(a)
    a.add_argument("--heads", default=None, metavar="L.H,…", help="heads to ablate, layer (1-based) dot head (0-based)")
    a.add_argument("--mlp", default=None, metavar="L,…", help="MLP blocks to ablate (1-based layers)")
    a.add_argument("--skip", default=None, metavar="L,…", help="layers to skip: each passes its input on")
    a.add_argument("--swap", default=None, metavar="L:M", help="run layers L and M in each other's place")
    a.add_argument("--mode", choices=["zero", "mean"], default="zero",
                   help="replace an ablated output by zeros (default) or by its mean over the prompt's positions")
    a.set_defaults(func=cmd_ablate)

    n = sub.add_parser("noise-trace", help="causal tracing with noise (ROME): noise on the subject's embeddings, "
                                           "one clean activation restored per cell")
    model_args(n)
    n.add_argument("--target", default=None, help="the answer to follow, one token (e.g. ' Paris'); default: the model's own")
    n.add_argument("--foil", default=None, help="a wrong answer: the metric becomes logit(target) − logit(foil)")
    n.add_argument("--subject", required=True, metavar="P,…",
                   help="the positions the noise goes on, 0-based (negative from the end), e.g. the subject's tokens")
    n.add_argument("--site", choices=["resid", "attn", "mlp"], default="resid",
                   help="what to restore: the residual stream (default), attention or MLP outputs")
    n.add_argument("--samples", type=int, default=5, help="noise samples averaged per cell (default 5)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--scale", type=float, default=3.0,
                   help="the noise's standard deviation in standard deviations of the prompt's embeddings (3)")
    n.set_defaults(func=cmd_noise_trace)

    p = sub.add_parser("patch", help="activation patching: which activations of a clean prompt restore its answer")
    pair_args(p)
    p.add_argument("--site", choices=["resid", "attn", "mlp", "head"], default="resid",
                   help="what to patch: the residual stream (default), attention or MLP outputs, or heads")
    p.set_defaults(func=cmd_patch)


def pair_args(p) -> None:
    """The options of every command that compares a clean prompt with a corrupted one (patch, attribute, circuit)."""
    p.add_argument("--model", default=None, help="bundled name, tiny-ARCH, folder, .gguf file or hub id (default: smollm2-135m)")
    p.add_argument("--clean-prompt", default=None)
    p.add_argument("--clean-file", default=None, metavar="PATH")
    p.add_argument("--corrupt-prompt", default=None)
    p.add_argument("--corrupt-file", default=None, metavar="PATH")
    p.add_argument("--target", required=True, help="the clean prompt's answer, one token (e.g. ' Paris')")
    p.add_argument("--foil", default=None, help="the corrupted prompt's answer (e.g. ' Rome'); default: the "
                                                "target's log-probability is the metric")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own Python code to run")
    save_args(p)
