"""The typed results of the layer-anatomy measures: small dataclasses of numpy arrays, lists and numbers (no torch).

Rows are the lens rows: "emb" (the stream entering block 1) and "L1".."LL" (the stream leaving each block; the last
row is the last block's raw output, before the final norm). Every measure averages over positions 1… (the first
token, an attention sink whose norm dwarfs the rest, is left out); ``skip_kl`` and ``swap_kl`` read the next-token
distribution at the last position."""
from __future__ import annotations

from dataclasses import dataclass

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
