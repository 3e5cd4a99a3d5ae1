"""``python -m bench --patching``: the activation-patching grid, LayerLens beside nnsight.

On the bundled model and a 10-token pair (the Eiffel Tower / the Colosseum, " Paris" vs " Rome"),
the residual-stream grid (30 block inputs × 10 positions = 300 patched runs, as nnsight and
TransformerLens count it) is computed by LayerLens (``Backend.patch``, no cache) and by nnsight with
all 300 patched runs as invokes of one batched trace, alternating, in one process; the medians are
compared, and the two grids must agree (an independent check of the numbers). LayerLens's attention,
MLP and head grids are timed too.
"""
from __future__ import annotations

import statistics
import time

CLEAN, CORRUPT = "The Eiffel Tower is located in the city of", "The Colosseum is located in the city of"
TARGET, FOIL = " Paris", " Rome"


def nnsight_grid(lm, target: int, foil: int):
    """[L, T] logit differences: block l's input at position p patched from the clean run."""
    import nnsight
    import torch
    from nnsight import LanguageModel

    model = LanguageModel(lm.model, tokenizer=lm.tokenizer)
    layers = model.model.layers
    L = len(lm.adapter.blocks)
    T = len(lm.tokenizer(CORRUPT)["input_ids"])
    with torch.no_grad():
        with model.trace(CLEAN):
            clean = nnsight.save([])
            for i in range(L):
                clean.append(layers[i].input)
        clean = [h.detach() for h in clean]
        with model.trace() as tracer:
            out = nnsight.save([])
            for layer in range(L):
                for pos in range(T):
                    with tracer.invoke(CORRUPT):
                        layers[layer].input[:, pos, :] = clean[layer][:, pos, :]
                        z = model.lm_head.output[:, -1]
                        out.append(z[:, target] - z[:, foil])
    return torch.stack([o.reshape(()) for o in out]).reshape(L, T).double().numpy()


def run(repeats: int = 3, say=print) -> dict:
    import warnings

    import numpy as np

    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import PatchOptions

    warnings.filterwarnings("ignore")
    lm = load_model("smollm2-135m")
    be = local_backend(lm, None)
    tok = lm.tokenizer
    target, foil = tok(TARGET, add_special_tokens=False)["input_ids"][0], tok(FOIL, add_special_tokens=False)["input_ids"][0]
    options = PatchOptions(target=TARGET, foil=FOIL)
    ours, theirs = [], []
    be.patch(CLEAN, CORRUPT, options)  # warm-up of both
    nnsight_grid(lm, target, foil)
    for _ in range(repeats):  # alternating, so that both meet the same machine
        t = time.perf_counter()
        result = be.patch(CLEAN, CORRUPT, options)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        grid = nnsight_grid(lm, target, foil)
        theirs.append(time.perf_counter() - t)
        say(f"  patching grid: LayerLens {ours[-1]:.2f} s, nnsight {theirs[-1]:.2f} s")
    # LayerLens row r is the input of block r + 1: rows 0..L-1 are nnsight's layers' inputs.
    difference = float(np.abs(result.raw[:-1] - grid).max())
    sites = {}
    for site in ("attn", "mlp", "head"):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            be.patch(CLEAN, CORRUPT, PatchOptions(target=TARGET, foil=FOIL, site=site))
            times.append(time.perf_counter() - t)
        sites[site] = statistics.median(times)
        say(f"  patching {site}: {sites[site]:.2f} s")
    return {"tokens": len(result.tokens), "cells": int(result.raw[:-1].size), "layerlens_s": ours, "nnsight_s": theirs,
            "ratio": statistics.median(ours) / statistics.median(theirs), "max_difference": difference,
            "sites_s": sites}


def table(r: dict) -> str:
    lo, nn = statistics.median(r["layerlens_s"]), statistics.median(r["nnsight_s"])
    lines = [f"Activation patching, bundled model, a {r['tokens']}-token pair, the residual grid of {r['cells']} "
             f"patched runs (medians of {len(r['layerlens_s'])}, alternating in one process):", "",
             "| | time | vs nnsight |", "| --- | ---: | ---: |",
             f"| LayerLens `patch --site resid` | {lo:.2f} s | {r['ratio']:.2f}× |",
             f"| nnsight, every patched run an invoke of one batched trace | {nn:.2f} s | 1× |"]
    for site, t in r["sites_s"].items():
        lines.append(f"| LayerLens `patch --site {site}` | {t:.2f} s | |")
    lines.append(f"\nLargest difference between the two grids' logit differences: {r['max_difference']:.1e}.")
    return "\n".join(lines)
