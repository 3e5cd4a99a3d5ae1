"""What an explanation returns: small typed results of numbers, lists and strings (no torch).

Vectors are shown by their largest dimensions (``dims``: indices, by absolute value, largest first) beside their
norms; lists of tokens as ``{"token", "id", ...}`` dictionaries, best first.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CellExplanation:
    """One logit-lens cell, from the residual vector to the probability (lens/explain/cell.py)."""

    model: str
    tokens: list[str]
    layer: int  # the lens row: 0 the embeddings, r the output of block r
    layer_label: str  # as the heatmap labels it ("emb", "1", …)
    n_layers: int
    position: int  # 0-based, after counting a negative one from the end
    token: str  # the token at that position (the cell predicts the one after it)
    site: str  # the engine site read: resid_pre.1 or resid_post.r
    d_model: int
    # the residual vector h
    norm: float  # ‖h‖₂
    dims: list[int]  # its largest dimensions
    values: list[float]  # h at those dimensions
    # the final norm: x = (h − mean) / rms · w (+ b)
    norm_kind: str  # "rms" (RMSNorm: mean 0), "layernorm" or "none"
    mean: float  # LayerNorm's mean of h (0 for RMSNorm)
    var: float  # the mean of (h − mean)² (RMSNorm: the mean of h²)
    eps: float
    rms: float  # √(var + eps): what h is divided by
    weight: list[float]  # the norm's scale at ``dims`` (with the architecture's offset: Gemma's 1 + w)
    bias: list[float]  # the norm's bias at ``dims`` (0 without one)
    normed: list[float]  # x at ``dims``
    normed_norm: float  # ‖x‖₂
    # the read-out
    top: list[dict]  # {token, id, logit, prob, dot, unembed_bias, row_norm}: the cell's top tokens
    max_logit: float
    logsumexp: float  # log Σ exp(logit) over the whole vocabulary
    vocab_size: int
    entropy: float  # nats, as the heatmap's entropy
    kl_to_final: float  # nats, KL(final row ‖ this row) at this position, as the heatmap's KL
    softcap: float | None  # logits squashed as softcap·tanh(z/softcap) (Gemma 2), else None
    is_final: bool  # the last row: the model's own output
    model_top: list[dict] = field(default_factory=list)  # last row: the model's own logits {token, id, logit}

    @property
    def prob(self) -> float:
        """The cell's top-1 probability (what the heatmap's top-1 cell shows)."""
        return float(self.top[0]["prob"])


@dataclass
class AttentionExplanation:
    """One attention weight, from the query and key vectors to the weight and the head's output
    (lens/explain/attention.py)."""

    model: str
    tokens: list[str]
    layer: int  # 1-based block
    head: int
    kv_head: int  # the key/value head this query head reads (grouped-query attention)
    n_heads: int
    n_kv_heads: int
    head_dim: int
    query: int
    key: int
    query_token: str
    key_token: str
    positions: str  # "rotary" or "learned" (added to the embeddings, nothing inside attention)
    rotary_angles: list[float]  # at ``dims``: the key's rotation angle θ_i·key (rotary only) — the query's below
    rotary_query_angles: list[float]
    dims: list[int]  # largest dimensions of q ⊙ k (the terms of the dot product)
    q: list[float]  # q (after rotary) at ``dims``
    k: list[float]  # k (after rotary) at ``dims``
    q_norm: float
    k_norm: float
    dot: float  # q · k
    scale: float  # 1 / √head_dim
    score: float  # q · k / √d
    row_scores: list[float]  # every key's scaled score in the query's row (masked keys: None)
    masked: bool  # the key is after the query (causal mask): its weight is 0
    row_max: float
    row_logsumexp: float
    weight: float  # exp(score − logsumexp(row)): the weight the heads view shows
    row_weights: list[float]  # the row's weights (sum 1)
    shown_weight: float  # the attention pattern site's weight, read from the model's own pass
    # the head's output at the query position: Σ_j weight_j · v_j
    output_dims: list[int]
    output: list[float]  # at output_dims
    output_norm: float
    shown_output: list[float]  # the head_out site at output_dims (the model's own), [] where there is none
    value_dims: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)  # v of the key at value_dims
    weighted_value: list[float] = field(default_factory=list)  # weight · v at value_dims


@dataclass
class NeuronExplanation:
    """One MLP neuron at one position: its input, gate, up, activation and write (lens/explain/neuron.py)."""

    model: str
    tokens: list[str]
    layer: int  # 1-based block
    neuron: int
    n_neurons: int
    position: int
    token: str
    gated: bool  # activation(gate) · up (Llama family) or activation(pre) (GPT-2)
    activation: str  # the activation function's name (silu, gelu_new, …)
    norm_kind: str
    input_norm: float  # ‖the MLP's input‖ (the residual after attention), before its norm
    rms: float  # what the input is divided by in the MLP's norm
    normed_norm: float
    dims: list[int]  # the terms of the gate (or pre-activation) dot product: largest first
    normed: list[float]  # the normed input at dims
    gate_weights: list[float]  # the neuron's gate (or input) weights at dims
    gate: float  # x · w_gate (+ bias): the pre-activation
    gate_bias: float
    act_of_gate: float  # activation(gate)
    up: float | None  # x · w_up (gated MLPs), else None
    act: float  # the neuron's activation: act_of_gate · up, or act_of_gate
    shown_act: float  # the mlp_act site (the model's own)
    write_norm: float  # ‖act · w_down‖: how much it writes into the residual stream
    write_dims: list[int]
    write: list[float]  # act · w_down at write_dims
    mlp_out_norm: float  # ‖the whole MLP's output‖ at this position
    share: float  # (write · mlp_out) / ‖mlp_out‖²: the part of the MLP's output along this neuron's write
    promotes: list[dict] = field(default_factory=list)  # tokens whose logits the write raises most (W_U · write)
