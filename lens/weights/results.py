"""The typed results of the weight-space views: small dataclasses of numpy arrays, lists and numbers (no torch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NeuronScores:
    """Every MLP neuron's output vector (its row of the down projection) scored against one token's unembedding
    row through the final norm's weight: ``score = (γ ⊙ W_U[t]) · w_out`` (with LayerNorm, ``w_out`` centred
    first). The logit the neuron adds to the token per unit of its activation, the final norm's division left out.
    Layers are 1-based, neurons 0-based."""

    model: str
    token: str
    token_id: int
    n_layers: int
    n_neurons: int  # per layer
    neurons: list  # [K] {"layer", "neuron", "score"}: the promoters, best first
    suppressors: list  # [K] the same, most negative first
    layer_max: np.ndarray  # [L] each layer's highest score
    layer_min: np.ndarray  # [L] each layer's lowest
    top_tokens: list  # [2K][k] the tokens each listed neuron raises most (promoters, then suppressors)
    top_values: np.ndarray  # [2K, k]
    bottom_tokens: list  # [2K][k] the tokens it lowers most
    bottom_values: np.ndarray  # [2K, k]
    note: str = ""


@dataclass
class NeuronContexts:
    """Every neuron's highest activations over a corpus (a running top-k in one pass): value and place."""

    model: str
    corpus: str
    corpus_digest: str
    n_tokens: int
    values: np.ndarray  # [L, N, k] highest activations, highest first
    where: np.ndarray  # [L, N, k] int64 their positions in the corpus's token stream
    low_values: np.ndarray  # [L, N, k] lowest activations, lowest first (gated MLPs' neurons go negative too)
    low_where: np.ndarray  # [L, N, k]


@dataclass
class NeuronPage:
    """One neuron: what its output vector writes (through the final norm's weight and the unembedding), its
    activation at every position of a prompt, and its top-activating contexts in the shipped corpus."""

    model: str
    layer: int  # 1-based
    neuron: int  # 0-based
    top_tokens: list[str]
    top_values: np.ndarray  # [k] logit per unit of activation
    bottom_tokens: list[str]
    bottom_values: np.ndarray
    prompt_tokens: list[str]
    activation: np.ndarray  # [T] on the prompt
    contexts: list  # [C][w] tokens around each peak
    context_peak: list[int]  # the peak's index in its window
    context_values: np.ndarray  # [C] the activation at the peak
    low_contexts: list  # [C][w] tokens around each of its lowest activations (negative: it writes -w_out there)
    low_context_peak: list[int]
    low_context_values: np.ndarray  # [C]
    corpus: str
    corpus_tokens: int


@dataclass
class HeadWeights:
    """Each head's OV circuit read through the vocabulary, and composition scores between heads.

    Copying: for input token s of a vocabulary subset S (the shipped corpus's most frequent tokens),
    ``OV(s) = W_U[S] · (γ_f ⊙ (x_s · W_V_h · W_O_h))`` with ``x_s`` the embedding row through the head's own input
    norm's weight; a token's copy score is its own logit's z-score within its row (scale-free, so the norm's
    division does not matter); a head's copy score is the mean over S (positive: it copies, negative: it suppresses).
    Composition (Elhage et al. 2021), head A of an earlier layer into head B: ``‖W_OV^A · M_B‖_F / (‖W_OV^A‖_F
    ‖M_B‖_F)`` with ``M_B`` B's ``W_QK`` (Q: A writes what B's queries read; K: what its keys read) or ``W_OV``
    (V); input norms' weights folded into the reading matrices, biases and rotary positions left out."""

    model: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    labels: list[str]  # "L1H0", ... (layer 1-based, head 0-based), layer by layer
    vocab: int  # |S|
    copy_score: np.ndarray  # [L, H]
    copy_tokens: list  # [L][H][k] tokens it copies most (highest z)
    copy_values: np.ndarray  # [L, H, k]
    suppress_tokens: list  # [L][H][k] lowest z
    suppress_values: np.ndarray  # [L, H, k]
    composition: str  # q | k | v
    scores: np.ndarray  # [L·H, L·H] row A, column B; 0 unless B's layer is later than A's
    layer_scores: np.ndarray  # [L, L] mean over head pairs (0 on and below the diagonal)
    note: str = ""
