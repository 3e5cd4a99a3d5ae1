"""``attribute`` (attribution patching, checked against real patching) and ``circuit`` (edge attribution patching,
the circuit kept and its faithfulness), as a table or JSON."""
from __future__ import annotations

from .causal import pair_args, pair_text
from .common import backend, print_json, terminal_progress


def cmd_attribute(args) -> int:
    from ..circuits.options import AttributeOptions
    from ..model.tokens import visible

    clean, corrupt = pair_text(args, "clean"), pair_text(args, "corrupt")
    options = AttributeOptions(target=args.target, foil=args.foil, site=args.site, qk_fix=args.qk_fix,
                               verify=args.verify, grad_drop=args.grad_drop)
    options.check()  # before the model loads
    r = backend(args).attribute(clean, corrupt, options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(r)
    print(f"{r.model}: attribution patching of {r.site}{' (QK fix)' if r.qk_fix else ''}; {r.metric_name} clean "
          f"{r.metric_clean:.3f}, corrupted {r.metric_corrupt:.3f}")
    cols = r.columns if r.site == "head" else [visible(t) for t in r.corrupt_tokens]
    print(f"{'':>5} " + " ".join(f"{c[:7]:>7}" for c in cols))
    for label, row in zip(r.layers, r.estimate):
        print(f"{label:>5} " + " ".join(f"{v:7.2f}" for v in row))
    if r.verified:
        print(f"against real patching: Pearson r = {r.correlation:.3f}; largest gaps:")
        for d in r.disagreements:
            print(f"  row {d['layer']:>4} {d['column']:>8}: estimate {d['estimate']:6.2f}, actual {d['actual']:6.2f}")
    return 0


def cmd_circuit(args) -> int:
    from ..circuits.options import CircuitOptions

    clean, corrupt = pair_text(args, "clean"), pair_text(args, "corrupt")
    options = CircuitOptions(target=args.target, foil=args.foil, edges=args.edges, ig_steps=args.ig_steps,
                             rank=args.rank)
    options.check()
    r = backend(args).circuit(clean, corrupt, options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(r)
    print(f"{r.model}: {len(r.edge_score)} edges; the top {r.edges} kept, {len(r.kept)} once pruned; faithfulness "
          f"{r.faithfulness:.3f} ({r.metric_name} clean {r.metric_clean:.3f}, corrupted {r.metric_corrupt:.3f}, "
          f"circuit {r.metric_circuit:.3f})")
    for u, v, s in r.kept:
        print(f"  {r.writers[u]:>8} → {r.readers[v]:<10} {s:+.4f}")
    print("faithfulness by edge count: " + ", ".join(f"{n}: {f:.2f}" for n, f in
                                                   zip(r.curve_edges, r.curve_faithfulness)))
    print(f"edges recovering 80 %: {r.edges_80 if r.edges_80 is not None else 'none of the curve'}")
    return 0


def register(sub) -> None:
    a = sub.add_parser("attribute", help="attribution patching: every patching cell estimated from one backward "
                                         "pass, with --verify against real patching")
    pair_args(a)
    a.add_argument("--site", choices=["resid", "attn", "mlp", "head"], default="resid",
                   help="the grid to estimate: residual stream (default), attention or MLP outputs, or heads")
    a.add_argument("--qk-fix", action="store_true", help="attn, head: each head's attention pattern patched for "
                                                        "real (the softmax recomputed), only its values estimated")
    a.add_argument("--grad-drop", action="store_true", help="GradDrop (AtP*): each cell's size |effect|, averaged "
                                                           "over backward passes that each skip one block's writes")
    a.add_argument("--verify", action="store_true", help="real patching beside the estimate: 'actual', the "
                                                        "Pearson 'correlation' and the cells that disagree most")
    a.set_defaults(func=cmd_attribute)

    c = sub.add_parser("circuit", help="edge attribution patching: the circuit of the strongest edges between "
                                       "heads and MLPs, and how much of the answer it restores")
    pair_args(c)
    c.add_argument("--edges", type=int, default=30, help="edges kept before pruning (default 30)")
    c.add_argument("--ig-steps", type=int, default=0, help="EAP-IG: average each gradient over this many "
                                                          "embeddings between corrupted and clean (default 0: EAP)")
    c.add_argument("--rank", choices=["help", "size"], default="help",
                   help="help: keep the edges that raise the metric most (default); size: the largest |score|, "
                        "either sign (edge attribution patching's ranking)")
    c.set_defaults(func=cmd_circuit)
