"""What sampling on the spot returns (lens/sampling/sample.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NextLogits:
    """A prompt's final logits: the model's own output at its last position, every token of the vocabulary."""

    model: str
    tokens: list[str]  # the prompt's tokens
    logits: np.ndarray  # [V] float32


@dataclass
class SampleResult:
    """Temperature, then top-k, then top-p on the cached final logits, and one sample.

    ``rows``: the walk-through by rank (the ``shown`` most likely tokens, the last kept and the first cut ones, the
    first cut by top-k and the sampled one): ``{token, id, rank, logit, scaled (logit/T), prob_t (softmax of logit/T), prob_k (the same after
    top-k: what top-p reads), cut ("top-k", "top-p" or None), cumulative (the running sum of prob_k down to this
    token, None when top-k cut it), prob (after renormalising: 0 when cut)}``. ``distribution``: the kept tokens ``{token, id, prob}``, best first, at most 50.
    """

    model: str
    context: str  # the prompt's last token (the distribution is of the token after it)
    temperature: float
    top_k: int
    top_p: float
    seed: int
    vocab_size: int
    kept: int  # tokens surviving top-k and top-p
    kept_mass: float  # their share of the temperature distribution (what renormalising divides by)
    cut_by_top_k: int
    cut_by_top_p: int
    rows: list[dict]
    distribution: list[dict]
    draw: float  # the uniform number the seed gave, in [0, 1)
    sampled: str
    sampled_id: int
    sampled_rank: int  # 1: the most likely token
    sampled_prob: float
