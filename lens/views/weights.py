"""The "Neurons & heads" page (pages/neurons.py) and its views: the MLP neurons that write a token, one neuron's
page, and the heads' OV copying and composition, all read from the weights."""
from __future__ import annotations

from ..errors import LensError
from ..weights.options import HeadWeightOptions, NeuronOptions, NeuronPageOptions
from .entry import CAUSE_EFFECT, Drawn, Page, View

PAGE = Page(
    "neurons", "Neurons & heads", ":material/neurology:",
    "the MLP neurons whose weights write a token, each neuron's top contexts, and what heads copy and compose",
    CAUSE_EFFECT,
    """
Everything here is read from the **weights**, not from a run (except a neuron's activation and its contexts).

- **Neurons that write a token.** An MLP neuron adds its *output vector* (its row of the down projection) to the
  residual stream, times its activation. Through the final norm's weight γ (and, for a LayerNorm model, its
  centring) and the unembedding, that vector raises some tokens' logits and lowers others':
  `score = (γ ⊙ W_U[t]) · w_out`, the logit per unit of activation, leaving out the final norm's division (one
  number per position). Every neuron of every layer is scored; blue bars raise the token, red bars lower it
  (Geva et al. 2022, "promote and suppress"; LM-Debugger).
- **A neuron's page.** The tokens its output vector raises and lowers most; its activation at each position of the
  sidebar's prompt; and the places in the shipped corpus (the text the fitted lenses learn from) where it fires
  highest — the highlighted token is where it peaks. The corpus pass reads every neuron at once and runs once per
  model (then it is cached).
- **Heads: OV copying.** For an input token s, a head's OV circuit writes `x_s · W_V · W_O` (x_s: s's embedding
  through the head's input-norm weight); read through γ and the unembedding, over the corpus's most frequent
  tokens. A token's copy score is the z-score of its own logit in that row; a head's copy score is the mean: high
  means the head copies what it attends to (induction, name movers), negative means it suppresses it.
- **Heads: composition** (Elhage et al. 2021). How much an earlier head A's output lies where a later head B reads:
  `‖W_OV^A · W_QK^B‖ / (‖W_OV^A‖ ‖W_QK^B‖)` (Q: B's queries read A; K: its keys; V: its values, with W_OV^B),
  Frobenius norms, input norms' weights folded in, biases and rotary positions left out. With grouped-query
  attention each head uses its group's key and value weights. The heatmap is the mean over each pair of layers;
  pick a head for its strongest partners.
""")

TABS = {"neurons": "Neurons", "heads": "Heads"}


def render_neurons(backend, info, prompt, *, token, top) -> Drawn:
    from ..figures.weights import neurons_figure, neurons_reading

    r = backend.neurons(NeuronOptions(token=token or None, top=int(top)), prompt)
    return Drawn([r], [neurons_figure(r)], neurons_reading(r))


def render_neuron(backend, info, prompt, *, layer, neuron) -> Drawn:
    from ..figures.weights import neuron_activation_figure, neuron_reading, neuron_tokens_figure

    if layer is None or neuron is None:
        raise LensError("this view needs a neuron: its layer (1-based) and its number (0-based)")
    r = backend.neuron(prompt, NeuronPageOptions(layer=int(layer), neuron=int(neuron)))
    return Drawn([r], [neuron_tokens_figure(r), neuron_activation_figure(r)], neuron_reading(r))


def render_heads(backend, info, prompt, *, composition) -> Drawn:
    from ..figures.weights import composition_figure, copying_figure, heads_reading

    r = backend.head_weights(HeadWeightOptions(composition=composition))
    return Drawn([r], [copying_figure(r), composition_figure(r)], heads_reading(r))


VIEWS = (
    View("neurons", "Neurons that write a token", CAUSE_EFFECT, "neurons?tab=Neurons", (
        "Every MLP neuron's output vector (its row of the down projection) scored against the token's unembedding "
        "row through the final norm's weight γ: (γ ⊙ W_U[t]) · w_out, with the output vector centred first for a "
        "LayerNorm model. The logit the neuron adds to the token per unit of its activation, the final norm's "
        "division left out.",
        "Blue: the neurons that raise the token most; red: those that lower it most. L is the block (1-based), N "
        "the neuron (0-based). Without a token: the model's own top-1 after the prompt."),
        {"token": None, "top": 20}, render_neurons),
    View("neuron", "One neuron", CAUSE_EFFECT, "neurons?tab=Neurons", (
        "One MLP neuron: the tokens its output vector raises and lowers most through the final norm's weight and "
        "the unembedding, and its activation (the down projection's input) at every position of the prompt.",
        "Its top-activating contexts in the shipped corpus are listed on the page and in the JSON."),
        {"layer": 1, "neuron": 0}, render_neuron),
    View("head-weights", "Heads' OV copying and composition", CAUSE_EFFECT, "neurons?tab=Heads", (
        "Each head's OV circuit read through the vocabulary: for each of the shipped corpus's most frequent tokens, "
        "the z-score of its own logit among theirs when the head reads it; the head's copy score is the mean "
        "(positive: it copies, negative: it suppresses).",
        "Composition (Elhage et al. 2021): ‖W_OV^A · W_QK^B‖ / (‖W_OV^A‖ ‖W_QK^B‖) for Q (K: W_QK^B transposed; V: "
        "W_OV^B) between a head A and a head B of a later layer; the heatmap is each pair of layers' mean."),
        {"composition": "v"}, render_heads),
)
