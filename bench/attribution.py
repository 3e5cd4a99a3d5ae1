"""``python -m bench --attribution``: attribution patching beside the real patching grid, and circuits.

On the bundled model: for the 10-token pair (the Eiffel Tower / the Colosseum, " Paris" vs " Rome") and the
first indirect-object pair of the shipped suite, each grid (residual stream, attention, MLP, heads) estimated by
AtP (and with the QK fix for attention and heads) and patched for real (``Backend.patch``), no cache: medians of
the timed calls, and the Pearson correlation of estimate and real grid. Then the circuit of each pair (EAP and
EAP-IG with 5 steps): the time to score every edge and run the faithfulness curve, and the fewest edges of the
curve restoring 80 % of the logit difference.
"""
from __future__ import annotations

import statistics
import time

PAIRS = {"factual (10 tokens)": ("The Eiffel Tower is located in the city of",
                                 "The Colosseum is located in the city of", " Paris", " Rome")}


def _ioi():
    from lens.suites.suite import example

    it = example("indirect-object").items[0]
    return it.clean, it.corrupt, it.target, it.foil


def _timed(f, repeats: int):
    f()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def run(repeats: int = 3, say=print) -> dict:
    import warnings

    from lens.circuits.options import AttributeOptions, CircuitOptions
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import PatchOptions

    warnings.filterwarnings("ignore")
    be = local_backend(load_model("smollm2-135m"), None)
    pairs = {**PAIRS, "indirect object": _ioi()}
    rows, circuits = [], []
    for name, (clean, corrupt, target, foil) in pairs.items():
        T = len(be.tokenize(clean))
        for site in ("resid", "attn", "mlp", "head"):
            say(f"{name}: {site}")
            real, t_real = _timed(lambda: be.patch(clean, corrupt, PatchOptions(target, foil, site)), repeats)
            for qk in ((False, True) if site in ("attn", "head") else (False,)):
                est, t_est = _timed(lambda: be.attribute(clean, corrupt, AttributeOptions(target, foil, site, qk)),
                                    repeats)
                import numpy as np

                r = float(np.corrcoef(est.estimate.ravel(), real.patch.ravel())[0, 1])
                rows.append({"pair": name, "tokens": T, "site": site, "qk_fix": qk, "atp_s": t_est,
                             "patch_s": t_real, "correlation": r})
        for steps in (0, 5):
            say(f"{name}: circuit, {steps} integrated-gradient steps")
            be.memo = type(be.memo)()  # no scores kept from the last call

            def circuit():
                be.memo = type(be.memo)()
                return be.circuit(clean, corrupt, CircuitOptions(target, foil, 30, ig_steps=steps))
            c, t = _timed(circuit, max(1, repeats - 1))
            circuits.append({"pair": name, "ig_steps": steps, "edges": int(len(c.edge_score)), "seconds": t,
                             "edges_80": c.edges_80, "faithfulness_30": c.faithfulness,
                             "curve": dict(zip(map(int, c.curve_edges), map(float, c.curve_faithfulness)))})
    return {"grids": rows, "circuits": circuits, "repeats": repeats}


def table(report: dict) -> str:
    lines = ["Attribution patching against real patching (bundled model, medians; no cache)",
             f"{'pair':<20} {'site':<6} {'QK':<3} {'AtP s':>7} {'patch s':>8} {'speed-up':>8} {'r':>6}"]
    for r in report["grids"]:
        lines.append(f"{r['pair']:<20} {r['site']:<6} {'yes' if r['qk_fix'] else '':<3} {r['atp_s']:7.2f} "
                     f"{r['patch_s']:8.2f} {r['patch_s'] / r['atp_s']:7.1f}× {r['correlation']:6.3f}")
    lines += ["", "Circuits (EAP; EAP-IG with 5 steps): scores and the faithfulness curve",
              f"{'pair':<20} {'IG':>3} {'edges':>6} {'seconds':>8} {'80 % at':>8} {'top 30':>7}"]
    for c in report["circuits"]:
        lines.append(f"{c['pair']:<20} {c['ig_steps']:>3} {c['edges']:>6} {c['seconds']:8.1f} "
                     f"{str(c['edges_80']):>8} {c['faithfulness_30']:7.2f}")
    return "\n".join(lines)
