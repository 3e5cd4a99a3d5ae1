"""Autocontrastive decoding (Gera et al. 2023, after contrastive decoding, Li et al. 2023): the last layer is the
expert, an early layer's logit lens the amateur; the next token is scored by log p_L − log p_l over the tokens the
expert finds plausible (p_L ≥ alpha · max p_L), so what the late layers added counts, not what was guessed early."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..engine.base import Readout


def log_softmax(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def contrast_scores(expert_logits, amateur_logits, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log p_L, log p_l and the score log p_L − log p_l, −inf outside the plausible set p_L ≥ alpha · max p_L."""
    le, la = log_softmax(expert_logits), log_softmax(amateur_logits)
    plausible = le >= np.log(alpha) + le.max()
    return le, la, np.where(plausible, le - la, -np.inf)


def expert_and_amateur(engine, ids: Sequence[int], amateur_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's last-position logits and the logit lens of ``resid_post.{amateur_layer}`` there (the final norm
    and the unembedding applied where the model runs), from one engine run."""
    site = f"resid_post.{amateur_layer}"

    def reduce(reads, readout: Readout) -> dict:
        return {"amateur": readout.logits(reads[site][:, -1])}

    out = engine.run(list(ids), read={site: [len(ids) - 1]}, reduce=reduce, logits="last")
    amateur = out.reduced["amateur"]
    amateur = amateur.detach().double().cpu().numpy() if isinstance(amateur, torch.Tensor) else np.asarray(amateur)
    return out.logits[0].double().cpu().numpy(), amateur[0]


def greedy(engine, ids: Sequence[int], amateur_layer: int, alpha: float, n_new: int, contrast: bool,
           stop_ids: Sequence[int] = ()) -> list[int]:
    """``n_new`` tokens chosen one by one: the model's top-1 (``contrast`` False) or the top contrastive score;
    each step one whole pass (no KV cache), so both continuations come from the same computation."""
    seq, new = list(ids), []
    for _ in range(n_new):
        expert, amateur = expert_and_amateur(engine, seq, amateur_layer)
        nxt = int(np.argmax(contrast_scores(expert, amateur, alpha)[2] if contrast else expert))
        new.append(nxt)
        seq.append(nxt)
        if nxt in stop_ids:
            break
    return new
