"""The "Layer anatomy" page (pages/anatomy.py) and its views: per-layer norms and block changes, skipping and
swapping blocks, layer similarity (CKA), outlier dimensions, token erasure, and autocontrastive decoding."""
from __future__ import annotations

from ..anatomy.options import AnatomyOptions, ContrastiveOptions
from ..errors import LensError
from .entry import READ_LAYERS, SUITE, Drawn, Page, View

PAGE = Page(
    "anatomy", "Layer anatomy", ":material/stacks:",
    "what each layer adds, which blocks could be skipped, which layers are alike, where the outliers live",
    READ_LAYERS,
    """
One forward pass of the prompt, measured layer by layer. Rows are the lens rows: **emb** (the embeddings entering
block 1) and **L1 … Ln** (the stream leaving each block); the last row is the last block's **raw output, before the
final norm**. Every measure averages over **positions 1…: the first token is left out** (an attention sink whose norm
dwarfs the rest); the skip and swap measures read the next-token distribution at the last position.

- **Norms & change.** The mean residual norm ‖h‖ per layer (log scale; the hover gives the ratio to the layer
  before). Block change `1 − cos(h_{l−1}, h_l)`: how far block l turns the stream; its bars split it by the part of
  the block's write Δ = h_l − h_{l−1} that the attention and the MLP each contribute, `Σ⟨a, Δ⟩ / Σ‖Δ‖²` and
  `Σ⟨m, Δ⟩ / Σ‖Δ‖²` (they add up to 1; one is negative where the two writes partly cancel).
- **Skip & swap.** `KL(original ‖ skipped)` of the next token when block l is replaced by the identity (its input
  passes on), for every l; with **swap**, also blocks l and l+1 run in each other's place ("Transformer Layers as
  Painters", the layer-importance papers). A tall bar is a block this prompt needs.
- **Similarity.** Linear CKA between every two layers' representations of the prompt's tokens (1: alike up to
  rotation and scale). Near-duplicate layers are runs whose every pair has CKA ≥ 0.95. Pick a **second model** (the
  same tokenizer: a fine-tuned copy, say) to compare its layers with this one's.
- **Outliers.** Max |h| per layer with its dimension and position (massive activations), the kurtosis of each
  vector's coordinates (3 for a Gaussian), and the dimensions of largest mean |h| as a layers × dimensions heatmap.
- **Token erasure (a proxy).** Per position, the cosine of the stream with the previous token's embedding (as it
  entered the stream): how much of that token's identity each layer still carries (multi-token words merge).
- **Autocontrastive decoding.** Pick an **amateur layer** l: the next token scored by `log p_L − log p_l` (p_l the
  logit lens after block l) over the tokens the model finds plausible (`p_L ≥ 0.1 · max p_L`), beside the plain
  ranking, and a short greedy continuation with and without it.

**Measure on: a suite.** Every prompt of a shipped suite (or a suite file of your own) is measured on its own, exactly
as one prompt is; each chart then shows the **mean over the prompts**, with the **10–90 % range of the prompts** as a
band or error bars, and the sentences are computed from those means (which block matters most across the prompts and
for how many of them, the mean CKA's near-duplicates, the most frequent outlier dimension and in how many prompts it
holds the largest coordinate). Autocontrastive decoding reads one prompt only.
""")


def render_anatomy(backend, info, prompt, *, swap) -> Drawn:
    from ..anatomy.readings import skip_reading
    from ..figures.anatomy import anatomy_figures

    r = backend.anatomy(prompt, AnatomyOptions(swap=bool(swap)))
    return Drawn([r], anatomy_figures(r), skip_reading(r))


def render_contrastive(backend, info, prompt, *, amateur_layer, max_new_tokens) -> Drawn:
    from ..anatomy.readings import contrastive_reading
    from ..figures.anatomy import contrastive_figure

    layer = default_amateur(info.n_layers) if amateur_layer is None else int(amateur_layer)
    r = backend.contrastive(prompt, ContrastiveOptions(amateur_layer=layer, max_new_tokens=int(max_new_tokens)))
    return Drawn([r], [contrastive_figure(r)], contrastive_reading(r))


def render_anatomy_suite(backend, info, text, *, suite, swap) -> Drawn:
    from ..anatomy.readings import suite_skip_reading
    from ..figures.anatomy import anatomy_suite_figures
    from ..suites.suite import parse_jsonl

    if not isinstance(text, str) or not text.strip():
        raise LensError("the anatomy-suite view takes the suite as JSONL text (one item a line)")
    s = backend.anatomy_suite(parse_jsonl(text, suite), AnatomyOptions(swap=bool(swap)))
    return Drawn([s], anatomy_suite_figures(s), suite_skip_reading(s))


def default_amateur(n_layers: int) -> int:
    """A third of the way down (10 of SmolLM2's 30), below the last block."""
    return max(1, min(n_layers - 1, n_layers // 3))


VIEWS = (
    View("anatomy", "Layer anatomy", READ_LAYERS, "anatomy", (
        "Per layer, over positions 1… (the first token left out): the mean residual norm; the block change "
        "1 − cos(h_{l−1}, h_l) with the attention's and MLP's shares of the write; the next token's KL with each "
        "block skipped (and neighbours swapped); linear CKA between every two layers; max |h|, its dimension and the "
        "kurtosis; the top dimensions' mean |h|; the previous token's embedding in the stream.",
        "The last row is the last block's raw output, before the final norm."),
        {"swap": False}, render_anatomy),
    View("contrastive", "Autocontrastive decoding", READ_LAYERS, "anatomy?tab=Autocontrastive", (
        "The next token ranked by the model (p_L) and by log p_L − log p_l, the amateur l being an early layer's "
        "logit lens, over the plausible tokens (p_L ≥ 0.1 × the top p_L), and greedy continuations with and "
        "without it.",),
        {"amateur_layer": None, "max_new_tokens": 12}, render_contrastive),
    View("anatomy-suite", "Layer anatomy over a suite of prompts", READ_LAYERS, "anatomy?source=suite", (
        "Every prompt of the suite measured as the layer-anatomy view measures one (positions 1…, the first token "
        "left out; the skips at each prompt's last position), then per layer the mean over the prompts with the "
        "10–90 % range of the prompts as a band or error bars: the residual norm, the block change with the "
        "attention's and MLP's parts, the next token's KL with each block skipped (and neighbours swapped), the CKA "
        "matrix (the mean), the top dimensions' mean |h|, max |h| and kurtosis, the cosines with the tokens' "
        "embeddings.",),
        {"suite": "suite", "swap": False}, render_anatomy_suite, reads=SUITE),
)
