"""Skip one block, or swap two neighbours (the "Transformer Layers as Painters" experiments), through the engine.

A batch of copies of the prompt runs at once, copy i with its own change: skipping block l writes ``block.l`` :=
the block's input (the residual stream goes by it, as ``lens.interventions.edits.skip_block`` does for the whole
batch), swapping l and l+1 writes ``block.l`` := block l+1's weights run on block l's input and ``block.l+1`` :=
block l's on what comes out (``run_block_instead``). Only the copy concerned changes at each block.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..engine.base import Edit, SiteCall

MAX_BATCH_TOKENS = 8192  # copies × tokens in one pass
# Copies per resumed pass: each pass runs from its first copy's block, so the later copies of a batch run a few
# blocks more than they need; 4 kept the bundled model's 30-block anatomy fastest (2, 4, 8 and 30 tried).
RESUMED_BATCH = 4


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) in nats between the softmax of ``p_logits`` [V] and of each row of ``q_logits`` [n, V] (float64)."""
    def logsoftmax(z):
        z = np.asarray(z, dtype=np.float64)
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    lp, lq = logsoftmax(p_logits), logsoftmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def _skip_some(elements: list[int]) -> Edit:
    """On ``block.l``: the copies ``elements`` get the block's input (the block skipped), the rest its output."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        y = x.clone()
        y[elements] = call.input[elements].to(x.dtype)
        return y
    return edit


def _swap_some(instead: dict[int, list[int]]) -> Edit:
    """On ``block.l``: the copies ``instead[m]`` get block m's weights run on block l's input."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        y = x.clone()
        for m, elements in instead.items():
            y[elements] = call.run_block(m)[elements].to(x.dtype)
        return y
    return edit


def skip_edits(layers: Sequence[int]) -> dict[str, Edit]:
    """Copy i skips block ``layers[i]`` (1-based)."""
    by_layer: dict[int, list[int]] = {}
    for i, l in enumerate(layers):
        by_layer.setdefault(int(l), []).append(i)
    return {f"block.{l}": _skip_some(els) for l, els in by_layer.items()}


def swap_edits(firsts: Sequence[int]) -> dict[str, Edit]:
    """Copy i runs blocks ``firsts[i]`` and ``firsts[i]`` + 1 in each other's place."""
    at: dict[int, dict[int, list[int]]] = {}
    for i, l in enumerate(firsts):
        at.setdefault(l, {}).setdefault(l + 1, []).append(i)
        at.setdefault(l + 1, {}).setdefault(l, []).append(i)
    return {f"block.{l}": _swap_some(instead) for l, instead in at.items()}


def batched_logits(engine, ids: Sequence[int], changes: list[int], edits_for) -> np.ndarray:
    """[len(changes), V] last-position logits of copies of ``ids``, copy i changed by ``edits_for(chunk)`` (a list of
    the changes of one batch); batches of at most MAX_BATCH_TOKENS tokens. ``changes`` are first blocks changed, in
    increasing order: where the engine resumes runs, each batch starts at its first change's block from one
    recorded pass (the blocks before it are that pass's), about half the blocks of whole runs."""
    size = max(1, MAX_BATCH_TOKENS // max(1, len(ids)))
    out = []
    if changes and engine.capabilities.resumes:
        rec = engine.record(list(ids))
        size = min(size, RESUMED_BATCH)
        for start in range(0, len(changes), size):
            chunk = changes[start:start + size]
            out.append(engine.resume(rec, len(chunk), edits_for(chunk)).double().cpu().numpy())
        return np.concatenate(out)
    for start in range(0, len(changes), size):
        chunk = changes[start:start + size]
        run = engine.run([list(ids)] * len(chunk), write=edits_for(chunk), logits="last")
        out.append(run.logits.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
