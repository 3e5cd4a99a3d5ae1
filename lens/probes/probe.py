"""Per-layer probes: the residual stream at each prompt's last token, every lens row, one engine run per group of
equal-length prompts; then a logistic-regression probe per row, k-fold cross-validated (lens/probes/logistic.py).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..engine.sites import resid_rows
from .data import ProbeSet
from .logistic import cross_validated, direction
from .options import ProbeOptions
from .results import ProbeResult

MAX_BATCH = 32


def last_token_streams(engine, prompts: Sequence[Sequence[int]], progress=None) -> np.ndarray:
    """[N, R, d] float64: every lens row's stream at each prompt's last token. Prompts of one length run as one
    batch (no padding: each prompt's numbers are those it gives alone)."""
    L = engine.adapter.n_layers
    rows = resid_rows(L)
    out = None
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    done = 0
    for T, idx in sorted(by_len.items()):
        for b0 in range(0, len(idx), MAX_BATCH):
            group = idx[b0:b0 + MAX_BATCH]
            got = engine.run([list(prompts[i]) for i in group], read={s: [T - 1] for s in rows}, logits="none")
            h = np.stack([got.reads[s][:, 0].double().cpu().numpy() for s in rows], 1)  # [B, R, d]
            if out is None:
                out = np.empty((len(prompts), len(rows), h.shape[-1]))
            out[group] = h
            done += len(group)
            if progress is not None:
                progress(0.4 * done / len(prompts), f"read {done} of {len(prompts)} prompts")
    return out


def chance_band(chance: float, n: int) -> list[float]:
    half = 1.96 * math.sqrt(chance * (1 - chance) / n)
    return [max(0.0, chance - half), min(1.0, chance + half)]


def readable_from(accuracy: np.ndarray, high: float) -> int | None:
    """The first row whose held-out accuracy is above ``high`` (the chance band's top), or None."""
    above = np.flatnonzero(np.asarray(accuracy) > high)
    return int(above[0]) if above.size else None


def run_probe(engine, model: str, ids: Sequence[Sequence[int]], probe_set: ProbeSet, options: ProbeOptions,
              progress=None) -> ProbeResult:
    X = last_token_streams(engine, ids, progress)
    y = np.asarray(probe_set.labels, np.int64)
    R = X.shape[1]
    acc, per, train, dirs = np.empty(R), np.empty((R, options.folds)), np.empty(R), np.empty((R, X.shape[2]))
    for r in range(R):
        acc[r], per[r] = cross_validated(X[:, r], y, options.folds, float(options.l2))
        dirs[r], train[r] = direction(X[:, r], y, float(options.l2))
        if progress is not None:
            progress(0.4 + 0.6 * (r + 1) / R, f"fitted the probes of row {r + 1} of {R}")
    layers = ["emb"] + [str(l) for l in range(1, R)]
    counts = [int((y == 0).sum()), int((y == 1).sum())]
    chance = max(counts) / len(y)
    band = chance_band(chance, len(y))
    readable = readable_from(acc, band[1])
    return ProbeResult(
        model=model, set_name=probe_set.name, classes=list(probe_set.classes), counts=counts, n=len(y),
        folds=options.folds, l2=float(options.l2), layers=layers, accuracy=acc, fold_accuracy=per,
        train_accuracy=train, chance=chance, band=band, best_layer=layers[int(np.argmax(acc))],
        readable_layer=None if readable is None else layers[readable], directions=dirs)
