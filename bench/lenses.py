"""``python -m bench --lenses``: fitted lenses on the bundled model, fitted afresh and measured on held-out prompts.

The linear shortcut is fitted on the shipped corpus (timed, forward passes included) and the tuned lens
trained from it for ``tuned_steps`` steps (timed), each into a cache folder of the run's own. Then, on
prompts the corpus does not hold, per layer: the mean over positions of KL(p_final ‖ p_layer) and the share
of positions whose top-1 is the model's answer, for the logit lens and each fitted lens.
"""
from __future__ import annotations

from lens.options import FitOptions
import os
import tempfile
import time

import numpy as np

HELD_OUT = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineer Gustave Eiffel.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "My sister likes to read books about history, especially about ancient Rome and its emperors.",
    "When the rain stopped, the children went outside to play in the puddles near the old oak tree.",
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "To make a cup of tea, boil the water, add the tea leaves and wait three minutes.",
    "The committee will meet again next month to discuss the budget for the new hospital.",
    "English: cat\nFrench: chat\nEnglish: dog\nFrench: chien\nEnglish: bird\nFrench:",
]


def run(tuned_steps: int = 100, say=print) -> dict:
    from lens.model.registry import default_cache_root

    models = default_cache_root() / "models"
    root = tempfile.mkdtemp(prefix="layerlens-bench-lenses-")
    os.symlink(models, os.path.join(root, "models"))  # the converted model is shared; the lenses are fitted afresh
    os.environ["LAYERLENS_CACHE"] = root
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import LensOptions

    b = local_backend(load_model("smollm2-135m"))
    t = time.perf_counter()
    linear = b.fit_lens(FitOptions("linear"), progress=lambda f, m: say(f"  {m}") if f >= 1 else None)
    fit_s = time.perf_counter() - t
    out = {"corpus_tokens": linear.tokens, "linear_fit_s": round(fit_s, 1), "tuned_steps": tuned_steps,
           "held_out_prompts": len(HELD_OUT)}
    kinds = ["logit", "linear"]
    if tuned_steps:
        t = time.perf_counter()
        b.fit_lens(FitOptions("tuned", steps=tuned_steps), progress=lambda f, m: say(f"  {m}") if f >= 1 else None)
        out["tuned_train_s"] = round(time.perf_counter() - t, 1)
        kinds.append("tuned")
    kl, agree = {}, {}
    for k in kinds:
        results = [b.logit_lens(p, LensOptions(top_k=1, lens=k)) for p in HELD_OUT]
        kl[k] = np.mean([r.kl_to_final.mean(1) for r in results], 0)
        agree[k] = np.mean([(r.top_ids[:, :, 0] == r.top_ids[-1, :, 0]).mean(1) for r in results], 0)
    L = len(kl["logit"]) - 1
    inner = slice(1, L)
    out["layers"] = ["emb"] + [str(i) for i in range(1, L + 1)]
    out["mean_kl"] = {k: [round(float(v), 4) for v in kl[k]] for k in kinds}
    out["top1_agreement"] = {k: [round(float(v), 4) for v in agree[k]] for k in kinds}
    for k in kinds[1:]:
        out[f"{k}_beats_logit_layers"] = int((kl[k][inner] < kl["logit"][inner]).sum())
        out[f"{k}_mean_kl_inner"] = round(float(kl[k][inner].mean()), 3)
    out["logit_mean_kl_inner"] = round(float(kl["logit"][inner].mean()), 3)
    out["inner_layers"] = L - 1
    if "tuned" in kinds:
        out["tuned_beats_linear_layers"] = int((kl["tuned"][inner] < kl["linear"][inner]).sum())
    return out


def table(r: dict) -> str:
    kinds = list(r["mean_kl"])
    lines = [f"Fitted lenses, bundled model: linear fit {r['linear_fit_s']} s on {r['corpus_tokens']:,} tokens"
             + (f"; tuned lens {r['tuned_steps']} steps in {r['tuned_train_s']} s" if "tuned_train_s" in r else ""),
             f"mean over {r['held_out_prompts']} held-out prompts and their positions",
             f"{'layer':>5} " + " ".join(f"{k + ' KL':>10} {k + ' top-1':>12}" for k in kinds)]
    for i, label in enumerate(r["layers"]):
        lines.append(f"{label:>5} " + " ".join(f"{r['mean_kl'][k][i]:10.3f} {r['top1_agreement'][k][i]:12.2f}"
                                              for k in kinds))
    for k in kinds[1:]:
        lines.append(f"{k}: lower KL than the logit lens in {r[f'{k}_beats_logit_layers']} of {r['inner_layers']} "
                     f"intermediate layers; mean KL over them {r[f'{k}_mean_kl_inner']} vs {r['logit_mean_kl_inner']}")
    if "tuned_beats_linear_layers" in r:
        lines.append(f"tuned: lower KL than the linear shortcut in {r['tuned_beats_linear_layers']} of "
                     f"{r['inner_layers']} intermediate layers")
    return "\n".join(lines)
