"""The typed results of the attribution views: small dataclasses of numpy arrays, lists and numbers (no torch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DLAResult:
    """Direct logit attribution at one position: what each part of the residual stream adds to the metric
    (``logit(target) − logit(foil)``, or ``logit(target)`` without a foil) through the final norm with its scale
    frozen at the run's value and the unembedding. Layer 0 of each list is block 1.

    embed + Σ attn + Σ mlp + bias = total, equal to ``logit_diff`` (the model's own) up to rounding; each layer's
    attn is Σ of its heads + attn_bias (the output projection's bias)."""

    model: str
    tokens: list[str]
    position: int  # 0-based
    target: str
    foil: str | None
    target_id: int
    foil_id: int | None
    metric_name: str  # "logit(target) − logit(foil)" | "logit(target)"
    layers: list[str]  # "1".."L"
    heads: np.ndarray  # [L, H] each head's direct part ([L, 0] where heads are not separate writes)
    attn: np.ndarray  # [L] each attention block's
    attn_bias: np.ndarray  # [L] the attention output projection's bias (zero without one)
    mlp: np.ndarray  # [L] each MLP's
    embed: float  # the embeddings' (the input of block 1)
    bias: float  # the final norm's bias and the unembedding's bias (zero without them)
    total: float  # the sum of every part
    logit_diff: float  # the metric from the model's own logits
    scale: float  # the final norm's frozen scale at the position (1 / RMS or 1 / std of the residual)
    head_attention: np.ndarray  # [L, H, T] each head's attention from the position to every token
    head_top_tokens: list  # [L][H][k] the tokens each head's direct output raises most
    head_top_values: np.ndarray  # [L, H, k] their direct logits
    head_bottom_tokens: list  # [L][H][k] the tokens it lowers most
    head_bottom_values: np.ndarray  # [L, H, k]
    note: str = ""  # what was left out or read otherwise (heads not separable, a soft-capped model)


@dataclass
class SublayerLensResult:
    """Each block's attention and MLP write decoded on its own: through the final norm's weight (and centring) with
    the scale the final norm gives the last residual stream at that position, and the unembedding, without biases.
    Rows are blocks ("1".."L"), columns ``positions``; at the last position the target's cells are DLA's attn and
    mlp parts of logit(target)."""

    model: str
    tokens: list[str]  # every token of the prompt
    positions: list[int]  # the positions decoded (the last ones, at most SUBLAYER_POSITIONS)
    layers: list[str]
    target: str
    target_id: int
    attn_target: np.ndarray  # [L, P] the target's direct logit from each attention write
    mlp_target: np.ndarray  # [L, P]
    attn_top_tokens: list  # [L][P][k] what each attention write promotes most
    attn_top_values: np.ndarray  # [L, P, k]
    attn_bottom_tokens: list  # [L][P][k] what it suppresses most
    attn_bottom_values: np.ndarray  # [L, P, k]
    mlp_top_tokens: list
    mlp_top_values: np.ndarray
    mlp_bottom_tokens: list
    mlp_bottom_values: np.ndarray
    note: str = ""


@dataclass
class KnockoutResult:
    """Attention knockout (Geva et al. 2023): the last position's attention to a group of tokens blocked (before the
    softmax, every head) in a window of layers, for a window at every layer; the target's probability after it."""

    model: str
    tokens: list[str]
    target: str
    target_id: int
    layers: list[str]  # "1".."L": the layer each window is centred on (or starts at)
    windows: list  # [L][2] first and last block (1-based) of each window
    window: int
    align: str  # centre | start
    rows: list[str]  # each group's label
    row_positions: list  # [R][*] the positions each group blocks
    sources: list | None  # the positions given (None: every token on its own)
    base_prob: float  # the target's probability at the last position, nothing blocked
    prob: np.ndarray  # [R, L] after blocking
    change: np.ndarray  # [R, L] (prob − base_prob) / base_prob: −1 the answer is gone
