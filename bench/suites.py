"""``python -m bench --suites``: prompt suites on the bundled model.

A 50-prompt lens suite (the shipped capitals and landmarks, 5 to 12 tokens) with ``Backend.lens_suite`` (every
lens row at each prompt's last position, equal-length prompts batched) against fifty single-prompt full-grid
``Backend.logit_lens`` runs of the same prompts (every row at every position, top-5), alternating in one
process, no result cache; the suite's numbers must equal the single runs' last column. Then a 20-pair
patching suite (the shipped indirect-object pairs, 14 tokens each, the residual stream) with
``Backend.patch_suite``.
"""
from __future__ import annotations

import statistics
import time

N_PROMPTS = 50
TARGET_RATIO = 0.25  # the suite in at most a quarter of the single runs' time


def run(repeats: int = 3, say=print) -> dict:
    import warnings

    import numpy as np

    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import LensOptions
    from lens.suites.suite import Suite, example

    warnings.filterwarnings("ignore")
    lm = load_model("smollm2-135m")
    be = local_backend(lm, None)
    items = (example("capitals").items + example("landmarks").items)[:N_PROMPTS]
    suite = Suite(name="capitals+landmarks", items=items)
    pairs = example("indirect-object")

    def singles():
        return [be.logit_lens(i.prompt, LensOptions(top_k=5, target=i.target)) for i in items]

    be.lens_suite(suite)  # warm-up of both
    singles()
    suite_s, singles_s = [], []
    for _ in range(repeats):  # alternating, so that both meet the same machine
        t = time.perf_counter()
        result = be.lens_suite(suite)
        suite_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        alone = singles()
        singles_s.append(time.perf_counter() - t)
        say(f"  lens suite of {len(items)}: {suite_s[-1]:.2f} s; {len(items)} single full-grid lenses: "
            f"{singles_s[-1]:.2f} s")
    difference = max(float(np.abs(result.target_prob[i] - a.target_prob[:, -1]).max()) for i, a in enumerate(alone))
    t = time.perf_counter()
    patched = be.patch_suite(pairs)
    patch_s = time.perf_counter() - t
    say(f"  patching suite of {len(patched.clean)} pairs: {patch_s:.2f} s")
    lengths = result.n_tokens
    return {"prompts": len(items), "tokens_min": min(lengths), "tokens_max": max(lengths),
            "token_counts": len(set(lengths)), "suite_s": suite_s, "singles_s": singles_s,
            "ratio": statistics.median(suite_s) / statistics.median(singles_s), "target_ratio": TARGET_RATIO,
            "max_difference": difference, "pairs": len(patched.clean), "pair_tokens": len(patched.columns),
            "patch_suite_s": patch_s, "left_out": len(patched.left_out)}


def table(r: dict) -> str:
    s, one = statistics.median(r["suite_s"]), statistics.median(r["singles_s"])
    met = "met" if r["ratio"] <= r["target_ratio"] else "MISSED"
    return "\n".join([
        f"Prompt suites, bundled model (medians of {len(r['suite_s'])}, alternating in one process, no result cache):",
        "",
        "| | time | ratio |", "| --- | ---: | ---: |",
        f"| lens suite, {r['prompts']} prompts of {r['tokens_min']}–{r['tokens_max']} tokens "
        f"({r['token_counts']} lengths), every row at the last position | {s:.2f} s | {r['ratio']:.3f}× |",
        f"| {r['prompts']} single-prompt full-grid logit lenses of the same prompts | {one:.2f} s | 1× |",
        f"| patching suite, {r['pairs']} pairs of {r['pair_tokens']} tokens, residual stream | "
        f"{r['patch_suite_s']:.2f} s | |",
        "",
        f"Target: the suite in at most {r['target_ratio']:.2f}× the single runs' time: {met}. Largest difference "
        f"between the suite's target probabilities and the single runs' last column: {r['max_difference']:.1e}.",
    ])
