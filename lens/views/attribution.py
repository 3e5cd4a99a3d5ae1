"""The "Who writes the answer" page (pages/attribution.py) and its views: direct logit attribution, the sub-layer
lens and attention knockout."""
from __future__ import annotations

from ..attribution.options import DLAOptions, KnockoutOptions, SublayerOptions, sources_from_text
from ..options import check_position_value
from .entry import CAUSE_EFFECT, Drawn, Page, View

PAGE = Page(
    "attribution", "Who writes the answer", ":material/how_to_vote:",
    "which heads and MLPs write the answer directly, what each block's output says, and which attention edges "
    "the answer needs", CAUSE_EFFECT,
    """
The model's answer is a sum. The last residual stream is the embeddings plus what every attention block and every
MLP added; the final norm divides it by one number (its RMS, or its standard deviation after centring) and the
unembedding turns it into logits. **Freeze that number at its value in this run** and the path from the stream to
the logits is linear, so every part's **direct** contribution to the answer can be read on its own, and the parts
add up exactly to the model's logit difference.

- **Direct attribution**: each head's (and each block's, and the embeddings') direct part of
  `logit(target) − logit(foil)` at one position — or of `logit(target)` alone when no foil is given. A head's part is
  its output slice times its block of the output projection W_O, through the frozen final norm and the unembedding;
  the biases (the final norm's, the unembedding's, the output projections') are parts of their own, so the sum is
  exact. Blue raises the target, red lowers it. Click a head to see where it looks and which tokens its output
  raises and lowers. *Direct* means the path straight to the logits: a head that works by moving information for a
  later head shows up small here (patching finds those).
- **Sub-layer lens**: each block's attention output and MLP output decoded on its own, at every position: the
  write through the final norm's weight (and centring) with the scale the final norm gives the last residual stream
  at that position, then the unembedding, without biases. The cell's text is the token it promotes most, its colour
  the target's logit from it; at the last position these are the attention and MLP bars of the first tab
  (Geva et al. 2022, "promote and suppress").
- **Attention knockout**: the last position may not read a group of tokens (every head; the score set to minus
  infinity before the softmax) in a window of layers around each layer, and the target's probability is measured
  again. A dark red cell: the answer needs that group's information to reach the last position in those layers
  (Geva et al. 2023, "Dissecting recall of factual associations").

The target defaults to the model's own top-1 answer; the foil is optional.
""")

TABS = {"dla": "Direct attribution", "sublayer": "Sub-layer lens", "knockout": "Attention knockout"}


def render_dla(backend, info, prompt, *, target, foil, position) -> Drawn:
    from ..figures.attribution import dla_figure, dla_layers_figure, dla_reading

    r = backend.dla(prompt, DLAOptions(target=target or None, foil=foil or None,
                                       position=check_position_value(position)))
    return Drawn([r], [dla_figure(r), dla_layers_figure(r)], dla_reading(r))


def render_sublayer(backend, info, prompt, *, target) -> Drawn:
    from ..figures.attribution import sublayer_figure, sublayer_reading, sublayer_span

    r = backend.sublayer_lens(prompt, SublayerOptions(target=target or None))
    span = sublayer_span(r)
    return Drawn([r], [sublayer_figure(r, "attn", span=span), sublayer_figure(r, "mlp", span=span)],
                 sublayer_reading(r))


def render_knockout(backend, info, prompt, *, target, sources, window, align) -> Drawn:
    from ..figures.attribution import knockout_figure, knockout_reading

    r = backend.knockout(prompt, KnockoutOptions(target=target or None, sources=sources_from_text(sources),
                                                 window=None if window is None else int(window), align=align))
    return Drawn([r], [knockout_figure(r)], knockout_reading(r))


VIEWS = (
    View("dla", "Direct logit attribution", CAUSE_EFFECT, "attribution?tab=Direct+attribution", (
        "Each head's, attention block's, MLP's and the embeddings' direct part of logit(target) − logit(foil) at one "
        "position (of logit(target) alone without a foil): its write through the final norm, with the norm's scale "
        "frozen at its value in this run, and the unembedding. The parts, with the biases as one more part, add up "
        "exactly to the model's own difference.",
        "Blue raises the target, red lowers it, white is zero. Rows are layers (L1 the first block); the bars give "
        "each layer's attention and MLP parts, and the embeddings' and the biases'."),
        {"target": None, "foil": None, "position": None}, render_dla),
    View("sublayer-lens", "Sub-layer lens", CAUSE_EFFECT, "attribution?tab=Sub-layer+lens", (
        "Each block's attention output and MLP output decoded on its own: through the final norm's weight (and "
        "centring) with the scale the final norm gives the last residual stream at that position, then the "
        "unembedding, without biases. A cell's text is the token that write promotes most; its colour, the target's "
        "logit from it.",
        "Rows are layers, columns positions. At the last position the colours are the attention and MLP parts of "
        "the target's direct logit attribution."),
        {"target": None}, render_sublayer),
    View("knockout", "Attention knockout", CAUSE_EFFECT, "attribution?tab=Attention+knockout", (
        "The last position may not read a group of tokens (every head; blocked before the softmax, so its attention "
        "is shared among the rest) in a window of layers around (or from) each layer; the cell is the change of the "
        "target's probability, in % of its value with nothing blocked (Geva et al. 2023).",
        "Red: blocking that group in those layers lowers the answer's probability; white: the answer does not need "
        "that edge there. Without source positions, each token is one row."),
        {"target": None, "sources": None, "window": None, "align": "centre"}, render_knockout),
)
