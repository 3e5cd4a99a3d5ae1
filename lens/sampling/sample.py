"""Temperature, top-k and top-p on a vector of logits, step by step (numpy only: no model runs here).

As transformers' ``generate`` applies its warpers: the logits are divided by the temperature; top-k keeps every
token whose scaled logit is at least the k-th largest (ties at the edge kept); top-p then takes the softmax of what
is left and keeps, from the most likely down, each token whose predecessors' probabilities sum to less than p (so
the kept tokens' sum is the first to reach p; at least one is kept). The kept probabilities are renormalised, and
the sample is the token whose stretch of the running sum holds a uniform number drawn from ``seed``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .options import MAX_SHOWN, SampleOptions
from .results import NextLogits, SampleResult


def _softmax(z: np.ndarray) -> np.ndarray:
    finite = np.isfinite(z)
    m = z[finite].max()
    e = np.where(finite, np.exp(np.where(finite, z, m) - m), 0.0)
    return e / e.sum()


def sample(logits: NextLogits, options: SampleOptions, name: Callable[[int], str]) -> SampleResult:
    """The walk-through of ``options`` on ``logits``; ``name(id)`` shows a token."""
    z = np.asarray(logits.logits, np.float64)
    V = int(z.shape[0])
    options.check(V)
    scaled = z / options.temperature
    order = np.argsort(-scaled, kind="stable")  # best first; ties by id
    prob_t = _softmax(scaled)
    cut = np.zeros(V, dtype=object)
    cut[:] = None
    k = options.top_k
    if k:
        edge = scaled[order[k - 1]]
        cut[scaled < edge] = "top-k"
    after_k = np.where(cut == None, scaled, -np.inf)  # noqa: E711 (elementwise over an object array)
    p_k = _softmax(after_k)
    cumulative = np.empty(V)
    cumulative[order] = np.cumsum(p_k[order])
    if options.top_p < 1:
        before = cumulative - p_k  # the running sum of the tokens above each one
        nucleus = before < options.top_p
        nucleus[order[0]] = True  # at least one token
        cut[(cut == None) & ~nucleus] = "top-p"  # noqa: E711
    keep = cut == None  # noqa: E711
    final = np.where(keep, p_k, 0.0)
    final /= final.sum()
    kept_ids = [int(i) for i in order if keep[i]]
    draw = float(np.random.default_rng(options.seed).random())
    running = np.cumsum(final[kept_ids])
    pick = kept_ids[min(int(np.searchsorted(running, draw, side="right")), len(kept_ids) - 1)]
    sampled_rank = int(np.nonzero(order == pick)[0][0]) + 1

    def row(i: int, r: int) -> dict:
        return {"token": name(i), "id": i, "rank": r, "logit": float(z[i]), "scaled": float(scaled[i]),
                "prob_t": float(prob_t[i]), "prob_k": float(p_k[i]), "cut": cut[i],
                "cumulative": float(cumulative[i]) if np.isfinite(after_k[i]) else None, "prob": float(final[i])}
    # The most likely tokens, then where the cuts fall (the last kept token and the first ones cut, so a short table
    # still shows a cut) and the sampled token: by rank, each once.
    ranks = set(range(min(options.shown, V)))
    last_kept = len(kept_ids) - 1  # kept tokens are the most likely ones: ranks 0 … len − 1
    if last_kept < V - 1:  # something is cut
        ranks |= {r for r in (last_kept, last_kept + 1, last_kept + 2) if r < V}
    first_k_cut = int(np.nonzero(cut[order] == "top-k")[0][0]) if options.top_k and (cut == "top-k").any() else None
    ranks |= {r for r in (first_k_cut,) if r is not None} | {sampled_rank - 1}
    rows = [row(int(order[r]), r + 1) for r in sorted(ranks)]
    return SampleResult(
        model=logits.model, context=logits.tokens[-1] if logits.tokens else "", temperature=float(options.temperature),
        top_k=k, top_p=float(options.top_p), seed=options.seed, vocab_size=V, kept=len(kept_ids),
        kept_mass=float(prob_t[keep].sum()), cut_by_top_k=int((cut == "top-k").sum()),
        cut_by_top_p=int((cut == "top-p").sum()), rows=rows,
        distribution=[{"token": name(i), "id": i, "prob": float(final[i])} for i in kept_ids[:MAX_SHOWN]],
        draw=draw, sampled=name(pick), sampled_id=pick, sampled_rank=sampled_rank, sampled_prob=float(final[pick]))
