"""The typed results of the layer-anatomy measures: small dataclasses of numpy arrays, lists and numbers (no torch).

Rows are the lens rows: "emb" (the stream entering block 1) and "L1".."LL" (the stream leaving each block; the last
row is the last block's raw output, before the final norm). Every measure averages over positions 1… (the first
token, an attention sink whose norm dwarfs the rest, is left out); ``skip_kl`` and ``swap_kl`` read the next-token
distribution at the last position."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AnatomyResult:
    model: str
    tokens: list[str]
    rows: list[str]  # "emb", "L1", … "LL"
    positions: list[int]  # the positions averaged over (1 … T−1)
    norm: np.ndarray  # [L+1] mean ‖h‖ per row
    norm_ratio: np.ndarray  # [L] norm[l] / norm[l−1]
    block_change: np.ndarray  # [L] mean 1 − cos(h_{l−1}, h_l)
    attn_share: np.ndarray  # [L] the attention's part of the block's write Δ: Σ⟨a, Δ⟩ / Σ‖Δ‖² over positions
    mlp_share: np.ndarray  # [L] the MLP's part: Σ⟨m, Δ⟩ / Σ‖Δ‖² (with attn_share: 1 where Δ = a + m)
    max_abs: np.ndarray  # [L+1] max |h| over positions 1… and dimensions
    max_dim: np.ndarray  # [L+1] its dimension
    max_pos: np.ndarray  # [L+1] its position
    kurtosis: np.ndarray  # [L+1] mean over positions of the kurtosis of h's coordinates (3 for a Gaussian)
    top_dims: list[int]  # the dimensions of largest mean |h| at any row, largest first
    dim_mean_abs: np.ndarray  # [L+1, K] mean |h| of each of top_dims per row
    skip_kl: np.ndarray  # [L] KL(original ‖ block l replaced by the identity) at the last position, nats
    skip_top: list[str]  # [L] the next token's top-1 with block l skipped
    swap_kl: np.ndarray  # [L−1] KL(original ‖ blocks l and l+1 swapped); empty when not asked
    swap_top: list[str]
    top: str  # the model's own top-1 next token
    cka: np.ndarray  # [L+1, L+1] linear CKA between rows over positions 1…
    prev_cos: np.ndarray  # [L+1, T] cos(h_r[p], emb[p−1]): the previous token's embedding in the stream (NaN at 0)
    self_cos: np.ndarray  # [L+1, T] cos(h_r[p], emb[p]): the token's own embedding (NaN at 0)


@dataclass
class CKAResult:
    """Linear CKA between every row of one model and every row of another, on the same prompt's tokens."""

    model: str
    other: str
    rows: list[str]
    other_rows: list[str]
    positions: list[int]
    cka: np.ndarray  # [L+1, L'+1]


@dataclass
class ContrastiveResult:
    """Autocontrastive decoding at the prompt's last position, and greedy continuations with and without it."""

    model: str
    amateur_layer: int
    alpha: float
    plain_tokens: list[str]  # the model's top tokens by p_L
    plain_ids: list[int]
    plain_prob: np.ndarray  # [k] p_L
    contrast_tokens: list[str]  # the plausible tokens by log p_L − log p_l
    contrast_ids: list[int]
    contrast_score: np.ndarray  # [k] log p_L − log p_l
    contrast_prob: np.ndarray  # [k] their p_L
    amateur_prob: np.ndarray  # [k] their p_l
    n_plausible: int  # tokens with p_L ≥ alpha · max p_L
    plain_new_ids: list[int]
    plain_text: str
    contrast_new_ids: list[int]
    contrast_text: str


def anatomy_json(r: AnatomyResult) -> dict:
    """What ``python -m lens anatomy --json`` prints (and the exported script prints)."""
    from ..serialize import to_json_dict

    return to_json_dict(r)


def contrastive_json(r: ContrastiveResult) -> dict:
    """What ``python -m lens contrastive --json`` prints."""
    from ..serialize import to_json_dict

    return to_json_dict(r)


@dataclass
class AnatomySuiteResult:
    """The layer-anatomy measures of every prompt of a suite, one prompt at a time (each exactly its
    ``Backend.anatomy``): per prompt (first axis) and row or block. ``summary`` (lens/anatomy/suite.py) gives each
    measure's mean over the prompts with its spread."""

    model: str
    suite: str  # the suite's name
    prompts: list[str]  # [N]
    where: list[str]  # [N] where each prompt came from ("capitals.jsonl line 3")
    n_tokens: list[int]  # [N]
    rows: list[str]  # [L+1] "emb", "L1", … "LL"
    norm: np.ndarray  # [N, L+1] mean ‖h‖ per row (positions 1…)
    norm_ratio: np.ndarray  # [N, L]
    block_change: np.ndarray  # [N, L] mean 1 − cos(h_{l−1}, h_l)
    attn_share: np.ndarray  # [N, L]
    mlp_share: np.ndarray  # [N, L]
    max_abs: np.ndarray  # [N, L+1] max |h| over positions 1… and dimensions
    max_dim: np.ndarray  # [N, L+1] int64, its dimension
    kurtosis: np.ndarray  # [N, L+1]
    skip_kl: np.ndarray  # [N, L] KL(original ‖ block l skipped) at each prompt's last position, nats
    skip_top: list[list[str]]  # [N][L] the top-1 with block l skipped
    swap_kl: np.ndarray  # [N, L−1]; [N, 0] when not asked
    top: list[str]  # [N] each prompt's own top-1 next token
    cka: np.ndarray  # [N, L+1, L+1] linear CKA between rows over each prompt's positions 1…
    top_dims: list[int]  # [K] the dimensions of largest mean |h| at any row, averaged over the prompts
    dim_mean_abs: np.ndarray  # [N, L+1, K] each prompt's mean |h| of those dimensions per row
    prev_cos: np.ndarray  # [N, L+1] mean over positions 1… of cos(h_r[p], emb[p−1])
    self_cos: np.ndarray  # [N, L+1] mean over positions 1… of cos(h_r[p], emb[p])
    options: dict = field(default_factory=dict)


def anatomy_suite_json(r: AnatomySuiteResult) -> dict:
    """What ``python -m lens anatomy --suite NAME --json`` prints: every prompt's numbers, their number, and per row or
    block each measure's mean, standard deviation and 10th/90th percentiles over the prompts; the mean CKA matrix;
    the most frequent outlier dimension."""
    from ..serialize import plain, to_json_dict
    from .spread import outliers, summary

    return {**to_json_dict(r), "n_prompts": len(r.prompts), **plain(summary(r)), "outlier": plain(outliers(r))}
