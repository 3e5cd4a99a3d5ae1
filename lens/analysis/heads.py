"""Attention heads: one layer's patterns, and a layers × heads summary.

- Patterns are the model's own attention weights (eager attention), ``[H, T, T]``
  for one layer: rows are queries (the position reading), columns keys.
- Entropy of a head: the Shannon entropy (nats) of each query's attention row,
  averaged over the queries of the prompt (a decoder's first query can only look
  at itself, so it is left out there).
- Previous-token and induction scores are measured on a sequence the tool builds:
  ``n`` random ordinary tokens, then the same ``n`` again (with the tokenizer's own
  special tokens around them). Previous-token score: mean attention from each
  position to the one before it. Induction score: over the second copy, mean
  attention from a token to the token that *followed its earlier occurrence*
  (offset ``n − 1`` back), the signature of an induction head.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import LensError
from ..results import HeadPatterns, HeadSummary
from ..options import check_layer

REPEAT_LENGTH = 40  # random tokens per copy
REPEAT_SEED = 0


def head_patterns(attentions: dict[int, torch.Tensor], tokens: list[str], layer: int, n_layers: int,
                  model: str = "") -> HeadPatterns:
    layer = check_layer(layer, n_layers)
    a = attentions.get(layer - 1)
    if a is None or a.dim() != 3:
        raise LensError(f"this trace holds no per-head attention for layer {layer}")
    return HeadPatterns(model=model, tokens=list(tokens), layer=layer, n_heads=int(a.shape[0]),
                        attention=a.float().cpu().numpy())


def attention_entropy(a: torch.Tensor, causal: bool) -> torch.Tensor:
    """[H] mean over queries of -Σ_k A log A (nats), for one layer's [H, T, T]."""
    a = a.double()
    ent = -(a * torch.log(a.clamp_min(1e-30))).sum(-1)  # [H, T]
    if causal and ent.shape[-1] > 1:
        ent = ent[:, 1:]
    return ent.mean(-1)


def is_causal(a: torch.Tensor) -> bool:
    return bool((torch.triu(a.double(), 1).abs() <= 1e-12).all())


def special_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text by default."""
    core = list(tokenizer("x", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("x")["input_ids"])
    for s in range(len(full) - len(core) + 1):
        if full[s:s + len(core)] == core:
            return full[:s], full[s + len(core):]
    return [], []


def repeated_random_ids(tokenizer, vocab_size: int, n: int = REPEAT_LENGTH, seed: int = REPEAT_SEED,
                        max_tokens: int | None = None) -> tuple[list[int], int, int]:
    """(ids, n, offset): prefix + r + r + suffix with r ``n`` random ordinary tokens."""
    prefix, suffix = special_wrapping(tokenizer)
    if max_tokens is not None:
        n = min(n, (max_tokens - len(prefix) - len(suffix)) // 2)
    if n < 2:
        raise LensError("the model's context is too short for the repeated-sequence head scores")
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor([i for i in range(vocab_size) if i not in special])
    r = pool[torch.randperm(len(pool), generator=gen)[:n]].tolist()  # distinct: no accidental repeats
    return prefix + r + r + suffix, n, len(prefix)


def repeat_scores(attentions: dict[int, torch.Tensor], n_layers: int, n: int, offset: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """([L, H] previous-token, [L, H] induction) scores from the repeated sequence's attention."""
    prev, ind = [], []
    first, last = offset, offset + 2 * n  # the two copies occupy [first, last)
    q = torch.arange(first + 1, last)
    q2 = torch.arange(first + n, last)  # queries in the second copy
    for l in range(n_layers):
        a = attentions[l].double()  # [H, T, T]
        prev.append(a[:, q, q - 1].mean(-1))
        ind.append(a[:, q2, q2 - n + 1].mean(-1))
    return torch.stack(prev).float().numpy(), torch.stack(ind).float().numpy()


def head_summary(prompt_attn: dict[int, torch.Tensor], repeat_attn: dict[int, torch.Tensor], n_layers: int,
                 n: int, offset: int, repeat_tokens: list[str], model: str = "") -> HeadSummary:
    if len(prompt_attn) != n_layers or len(repeat_attn) != n_layers:
        raise LensError("head summary needs every layer's attention weights")
    causal = is_causal(prompt_attn[0])
    T = prompt_attn[0].shape[-1]
    ent = torch.stack([attention_entropy(prompt_attn[l], causal) for l in range(n_layers)])
    prev, ind = repeat_scores(repeat_attn, n_layers, n, offset)
    return HeadSummary(
        model=model, n_layers=n_layers, n_heads=int(prompt_attn[0].shape[0]),
        entropy=ent.float().numpy(), max_entropy=float(np.log(max(T, 1))),
        prev_token=prev, induction=ind, repeat_tokens=list(repeat_tokens), repeat_length=n,
        repeat_offset=offset, causal=causal, options={"n": n, "seed": REPEAT_SEED},
    )
