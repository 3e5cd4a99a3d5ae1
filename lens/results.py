"""The typed results of every analysis: small dataclasses of numpy arrays, lists and numbers.

Imports nothing heavy (no torch), so figure builders, pages and a remote client can
use them. ``lens/serialize.py`` moves them to and from the cache and JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# RouteGraph edges: ``edge_block`` indexes BLOCKS, ``edge_kind`` indexes KINDS.
BLOCKS = ("attn", "mlp")
KINDS = ("residual", "attention", "mlp")


# ---------------------------------------------------------------- logit lens

@dataclass
class GenerationAttention:
    """Where each new token looked: row k is the attention of the position whose prediction became
    new token k, averaged over heads and layers (columns: every token of prompt and continuation).
    (Rollout after the last layer would put ~all of it on the first token in models with a sink.)"""

    model: str
    tokens: list[str]
    n_prompt: int
    positions: list[int]  # [new] the choosing position of each new token (n_prompt − 1 + k)
    attention: np.ndarray  # [new, T]; rows sum to 1; zero right of each row's position (causal)


@dataclass
class Generation:
    """A prompt continued token by token: ``token_ids`` are the prompt's then the new ones."""

    model: str
    token_ids: list[int]
    tokens: list[str]
    n_prompt: int  # the first n_prompt tokens are the prompt
    chosen_probs: np.ndarray  # [new] the probability the model gave each new token when it chose it
    temperature: float  # 0: greedy
    seed: int | None
    stopped: str  # "length" or "end of text"
    text: str  # prompt and continuation, decoded


@dataclass
class LogitLensResult:
    """Rows follow ``layers`` (row 0: embeddings); columns follow ``positions``."""

    model: str
    n_layers: int
    tokens: list[str]  # every token of the prompt, decoded one by one
    token_ids: list[int]
    layers: list[str]
    positions: list[int]  # the absolute positions the columns stand for
    top_ids: np.ndarray  # [R, P, k] int64
    top_tokens: list[list[list[str]]]  # [R][P][k]
    top_probs: np.ndarray  # [R, P, k] float32
    entropy: np.ndarray  # [R, P] nats
    kl_to_final: np.ndarray  # [R, P] nats, KL(p_final || p_row)
    target_ids: np.ndarray  # [P]
    target_tokens: list[str]  # [P]
    target_rank: np.ndarray  # [R, P] 1 = top
    target_prob: np.ndarray  # [R, P]
    next_token_loss: np.ndarray  # [R, P] nats, -log p(actual next token); NaN at the last position
    final_prediction: list[str]  # [P] the model's own top-1 output, decoded
    # [P] the saturation row per position: the first row from which the lens's top-1 is the model's own
    # prediction at every later row (None: not even the last row agrees, as with a tie)
    exit_layer: list[int | None]
    lens: str = "logit"  # logit | linear | tuned | jacobian: how each row was read (lens/fitted/)
    target_note: str = ""
    options: dict = field(default_factory=dict)
    # With LensOptions.alternatives = n: the final layer's top-n tokens at the last position, each followed as a
    # target at every cell (as target_rank and target_prob are for the target). Empty otherwise.
    alternative_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [n]
    alternative_tokens: list[str] = field(default_factory=list)  # [n]
    alternative_rank: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.int64))  # [n, R, P]
    alternative_prob: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))  # [n, R, P]


@dataclass
class LensFit:
    """A fitted lens of one model (lens/fitted/): what it is and where it came from."""

    model: str
    kind: str  # linear | tuned
    lens_id: str  # names the fit in cache keys
    source: str  # fitted (least squares) | trained (gradient descent) | checkpoint (a tuned-lens folder)
    corpus: str  # "shipped", a file name, or "" for a checkpoint
    tokens: int  # corpus tokens it learnt from (0 for a checkpoint)
    seconds: float  # time to fit or train (0 for a checkpoint)
    reused: bool = False  # fitted before on the same corpus: returned at once
    details: dict = field(default_factory=dict)  # everything else recorded with it (ridge, steps, losses, path)


@dataclass
class LensComparison:
    """The lenses of one prompt side by side, per row: how close each row's reading is to the final one."""

    model: str
    tokens: list[str]
    layers: list[str]  # rows, as in the lens
    lenses: list[str]  # [K] logit, linear, tuned (those available)
    mean_kl: np.ndarray  # [K, R] mean over positions of KL(p_final ‖ p_row), nats
    top1_agreement: np.ndarray  # [K, R] share of positions whose top-1 is the model's own prediction
    exit_fraction: np.ndarray  # [K, R] share of positions saturated at or before the row
    lens_ids: list[str] = field(default_factory=list)  # [K] the fit of each ("" for the logit lens)


@dataclass
class LanguageMass:
    """Which script (and which tracked words) each row's reading puts its probability on, at one position
    (Wendler et al. 2024: a multilingual model's middle layers may "think" in English)."""

    model: str
    lens: str  # logit | linear | tuned | jacobian
    tokens: list[str]
    position: int
    layers: list[str]
    scripts: list[str]  # [S] e.g. Latin, Cyrillic, Han, ..., "other" (digits, punctuation, spaces, byte pieces)
    mass: np.ndarray  # [R, S] probability per script; rows sum to 1
    words: list[str]  # [W] tracked words (each read by its first token)
    word_tokens: list[str]  # [W] the token each word is read by
    word_probs: np.ndarray  # [R, W]


# ---------------------------------------------------------------- projections and geometry

@dataclass
class ProjectionResult:
    """``coords[row][point]``: rows follow ``layers`` (row 0: embeddings), points follow ``tokens``."""

    model: str
    n_layers: int
    layers: list[str]
    tokens: list[str]  # [N] the projected tokens (left-out ones are not here)
    token_ids: list[int]
    positions: list[int]  # [N] position of each point inside its text
    text_index: list[int]  # [N] which text each point comes from (0 for a single prompt)
    n_texts: int
    coords: np.ndarray  # [R, N, dims] float32
    norms: np.ndarray  # [R, N] float32, L2 norm of the raw residual vector
    rms: np.ndarray  # [R] the per-layer RMS each layer was divided by (1 when rms_scale is off)
    explained: np.ndarray  # [R, dims] share of variance per component (PCA; NaN for UMAP)
    method: str
    mode: str
    seconds: float  # time to fit, excluding the forward pass
    options: dict = field(default_factory=dict)


EXPLANATIONS: dict[str, tuple[str, str]] = {
    # key: (chart title, one-line explanation)
    "anisotropy": ("Anisotropy baseline",
                   "Mean cosine between two different tokens: 0 means directions are spread evenly, near 1 means "
                   "every vector points the same way (a narrow cone)."),
    "intra_similarity": ("Intra-text similarity (baseline-adjusted)",
                         "How much the tokens of one text resemble their text's average, beyond the baseline: "
                         "high means the text's words have been pulled together by context."),
    "self_similarity": ("Self-similarity of the word (baseline-adjusted)",
                        "How alike the same word is in different contexts, beyond the baseline: 1 = context changes "
                        "nothing, low = each context gives it its own representation."),
    "word_mev": ("Word MEV",
                 "Share of the word's variation across contexts captured by one direction (first principal "
                 "component): near 1 means a single static vector would do."),
    "pc1_share": ("Variance on the first principal component",
                  "Share of the variance of all tokens along one direction: high means one dominant direction "
                  "(often a rogue dimension) shapes the layer."),
    "prompt_entropy": ("Prompt entropy",
                       "Spread of the tokens over directions (entropy of the Gram-matrix eigenvalues, 0..1): "
                       "1 = every token in its own direction, low = compressed onto a few."),
    "curvature": ("Curvature (degrees)",
                  "Mean turning angle of the token sequence's path: 90° = unrelated steps, lower = a straighter, "
                  "more predictable trajectory."),
    "norm_mean": ("Norm of the residual stream",
                  "Mean length of the token vectors: in pre-norm models it grows with depth as every block adds to it."),
    "norm_ratio": ("Norm growth per layer",
                   "Mean ratio ‖h_l‖ / ‖h_(l−1)‖: above 1 the block made the vectors longer."),
    "layer_similarity": ("Layer × layer similarity",
                         "Mean cosine between a token's vectors at two layers: blocks of bright cells are runs of "
                         "layers that keep the representation nearly unchanged."),
}


@dataclass
class GeometryResult:
    """Per-layer metrics: every [R] array follows ``layers`` (row 0: embeddings)."""

    model: str
    n_layers: int
    layers: list[str]
    tokens: list[str]  # [N] the kept tokens the metrics use
    positions: list[int]
    text_index: list[int]
    n_texts: int
    anisotropy: np.ndarray  # [R]
    intra_similarity: np.ndarray  # [R] baseline-adjusted
    intra_similarity_raw: np.ndarray  # [R]
    pc1_share: np.ndarray  # [R]
    prompt_entropy: np.ndarray  # [R] in [0, 1]
    curvature: np.ndarray  # [R] degrees; NaN when no text has 3 kept tokens
    layer_similarity: np.ndarray  # [R, R]
    norm_mean: np.ndarray  # [R]
    norm_ratio: np.ndarray  # [R]; NaN at row 0
    first_token_norm: np.ndarray  # [R] mean norm of each text's first token (left out or not)
    self_similarity: np.ndarray  # [R] baseline-adjusted; empty without a word
    self_similarity_raw: np.ndarray  # [R]; empty without a word
    word_mev: np.ndarray  # [R]; empty without a word
    word: str | None = None
    word_count: int = 0  # kept occurrences of the word
    word_texts: int = 0  # texts it occurs in
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------- attention: heads, rollout, flow

@dataclass
class HeadPatterns:
    model: str
    tokens: list[str]
    layer: int  # 1-based
    n_heads: int
    attention: np.ndarray  # [H, T, T] query × key


@dataclass
class HeadSummary:
    model: str
    n_layers: int
    n_heads: int
    entropy: np.ndarray  # [L, H] mean attention entropy (nats) on the prompt
    max_entropy: float  # log(T): the entropy of uniform attention over the whole prompt
    prev_token: np.ndarray  # [L, H] on the repeated random sequence
    induction: np.ndarray  # [L, H] on the repeated random sequence
    repeat_tokens: list[str]  # the random sequence, decoded (both copies)
    repeat_length: int
    repeat_offset: int  # special tokens before the first copy
    causal: bool = True
    options: dict = field(default_factory=dict)


@dataclass
class RolloutResult:
    """Rows follow ``layers`` (block 1..L, the state after that block); columns the input tokens."""

    model: str
    tokens: list[str]
    position: int  # the output position whose rollout row is shown
    layers: list[str]  # "1".."L"
    rollout: np.ndarray  # [L, T] row ``position`` of R_l
    attention: np.ndarray  # [L, T] row ``position`` of the head-averaged Ā_l (no residual), for comparison
    method: str = "rollout"
    note: str = ""
    options: dict = field(default_factory=dict)


@dataclass
class FlowResult:
    model: str
    tokens: list[str]
    position: int
    layers: list[str]  # the layer rows that were solved ("1".."L"), one per row below
    flow: np.ndarray  # [rows, T] normalised max-flow from (l, position) to each input token
    raw_flow: np.ndarray  # [rows, T] the max-flow values before normalising
    method: str = "flow"
    note: str = ""
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------- information-flow routes

@dataclass
class AttentionContributions:
    """Attention block ``layer`` (1-based) at target ``position``, before any threshold."""

    model: str
    tokens: list[str]
    layer: int
    position: int
    residual: float  # importance of the residual part
    sources: np.ndarray  # [T] importance of each source position, summed over heads
    heads: np.ndarray  # [H, T] importance of each (head, source)
    n_kv_heads: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class RouteGraph:
    """The route subgraph reachable backwards from the prediction at ``position``.

    Nodes: ("emb", 0, j) the embeddings; ("attn", l, i) the residual stream after
    block l's attention; ("mlp", l, i) after block l (its MLP). Each edge enters a
    node of its ``edge_block`` in ``edge_layer`` (1-based) at ``edge_dst``:
    attention block: from the stream after block l−1 (embeddings for l = 1) at
    ``edge_src``; MLP block: from the attention node of the same layer and position,
    either directly (kind residual) or through the MLP (kind mlp).
    """

    model: str
    tokens: list[str]
    n_layers: int
    n_heads: int
    position: int
    threshold: float
    prediction: str  # the model's own top-1 next token at ``position``
    edge_layer: np.ndarray  # [E] int, 1-based
    edge_block: np.ndarray  # [E] int, index into BLOCKS
    edge_kind: np.ndarray  # [E] int, index into KINDS
    edge_src: np.ndarray  # [E] source position
    edge_dst: np.ndarray  # [E] target position
    edge_importance: np.ndarray  # [E] normalised importance (before thresholding)
    edge_share: np.ndarray  # [E] renormalised over the edges kept into the same node
    targets_computed: int = 0  # attention-block (layer, position) targets evaluated
    options: dict = field(default_factory=dict)

    def nodes(self) -> set[tuple[str, int, int]]:
        out = set()
        for l, b, s, t in zip(self.edge_layer.tolist(), self.edge_block.tolist(),
                              self.edge_src.tolist(), self.edge_dst.tolist()):
            if BLOCKS[b] == "attn":
                out.add(("attn", l, t))
                out.add(("emb", 0, s) if l == 1 else ("mlp", l - 1, s))
            else:
                out.add(("mlp", l, t))
                out.add(("attn", l, s))
        return out


@dataclass
class NodeDetail:
    """One node of the route graph: who wrote into it, and what it reads as."""

    model: str
    tokens: list[str]
    layer: int  # 1-based
    position: int
    block: str  # "attn" or "mlp"
    residual_importance: float
    block_importance: float  # attn: Σ over heads and sources; mlp: the MLP's importance
    head_importance: np.ndarray  # [H] Σ over sources (attn); empty for mlp
    head_sources: np.ndarray  # [H, T] (attn); empty for mlp
    items: list[dict]  # heads (attn) or top neurons (mlp): importance and promoted / suppressed tokens
    lens_tokens: list[str]  # logit-lens top tokens of the node's state
    lens_probs: np.ndarray  # [k]
    note: str = ""
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------- causal experiments

@dataclass
class NoiseTraceResult:
    """Causal tracing with noise: the subject's embeddings noised, one clean activation restored per cell.

    ``patch[row][position]`` is ``(m(restored) − m(noised)) / (m(clean) − m(noised))``, each m the mean over
    the noise samples; rows as in PatchResult (resid: ``emb`` then "1".."L"; attn, mlp: "1".."L")."""

    model: str
    site: str  # resid | attn | mlp
    tokens: list[str]
    subject: list[int]  # the noised positions, 0-based
    layers: list[str]
    target: str
    foil: str | None
    metric_name: str  # "logit difference" | "log-probability"
    metric_clean: float
    metric_noised: float  # the mean over the samples
    patch: np.ndarray  # [rows, T] float32, normalised
    raw: np.ndarray  # [rows, T] float64: the mean metric with that cell restored
    samples: int
    seed: int
    noise_std: float  # the noise's standard deviation (scale × the prompt's embeddings' standard deviation)


@dataclass
class PatchResult:
    """Activation patching of a clean prompt's activations into a corrupted prompt's run.

    ``patch[row][column]`` is ``(m(patched) − m(corrupt)) / (m(clean) − m(corrupt))``: 0 the patch
    changes nothing, 1 it restores the clean answer. Rows follow ``layers`` (resid: ``emb`` then
    "1".."L", as in the lens; attn, mlp, head: "1".."L", one per block); columns are positions (resid, attn, mlp) or
    heads (head: each patched at every position)."""

    model: str
    site: str  # resid | attn | mlp | head
    tokens: list[str]  # the clean prompt's
    corrupt_tokens: list[str]
    layers: list[str]
    columns: list[str]  # "0".."T-1" or "head 0".."head H-1"
    target: str
    foil: str | None
    metric_name: str  # "logit difference" | "log-probability"
    metric_clean: float
    metric_corrupt: float
    patch: np.ndarray  # [rows, columns] float32, normalised
    raw: np.ndarray  # [rows, columns] float64, the metric of each patched run
    # The metric read by the logit lens from each residual-stream row at the last position (emb first):
    # where each prompt's answer can be read, beside where patching says it is computed.
    lens_clean: np.ndarray | None = None  # [L+1] float64
    lens_corrupt: np.ndarray | None = None  # [L+1] float64


@dataclass
class ModelComparison:
    """Two models' logit lenses of one prompt, cell by cell (same tokenizer, same number of layers)."""

    model_a: str
    model_b: str
    tokens: list[str]
    layers: list[str]  # emb, 1..L, as in the lens
    top1_a: list[list[str]]  # [R][T]
    top1_b: list[list[str]]
    prob_a: np.ndarray  # [R, T] top-1 probability of model a
    prob_b: np.ndarray
    kl: np.ndarray  # [R, T] KL(p_a || p_b) in nats, the two lens distributions of the cell
    agree: np.ndarray  # [R, T] bool, the same top-1 token
