"""The "Attribution & circuits" page (pages/circuits.py) and its views: AtP against real patching, and a circuit
with its faithfulness."""
from __future__ import annotations

from ..circuits.options import DEFAULT_EDGES, AttributeOptions, CircuitOptions
from ..errors import LensError
from .entry import CAUSE_EFFECT, TWO_PROMPTS, Drawn, Page, View

PAGE = Page(
    "circuits", "Attribution & circuits", ":material/account_tree:",
    "fast gradient estimates of patching, checked against the real thing, and the circuit of heads and MLPs "
    "that carries the answer", CAUSE_EFFECT,
    """
The same two prompts as in **Compare & patch**: a clean one answered with the *target*, a corrupted one answered with
the *foil*; the metric `m` is `logit(target) − logit(foil)` at the last position.

- **Attribution patching (AtP)** estimates every cell of a patching grid at once, from one clean run, one corrupted
  run and one backward pass: `(a_clean − a_corrupt) · ∂m/∂a` on the corrupted run, divided by
  `m(clean) − m(corrupt)` like the grid. It is a first-order guess, so it is drawn **beside the real grid**, with a
  scatter of every cell and their correlation. It is exact where the answer depends linearly on the activation and
  misses where a softmax saturates or effects cancel.
  *QK fix* (attention and heads): each head's write splits exactly into what its new attention pattern changes and
  what its new values change; the first is patched for real (the softmax recomputed, as in AtP*, Kramár et al.
  2024), only the second is estimated.
- **Circuit**: edge attribution patching (Syed et al. 2023) scores every edge from a writer (the embedding, a head,
  an MLP) to a reader (a head's query; a key/value head's keys or values; an MLP; the logits) as
  `(a_clean − a_corrupt) · ∂m/∂(reader's input)`. (Models whose q, k and v come out of one fused projection, like
  GPT-2, have one reader per layer's attention instead.) The first *n* edges are kept — by default those that raise
  the metric most, or the largest |score| of either sign — what no longer joins the input to the logits is
  pruned, and the circuit is run for real: every edge left out carries the corrupted run's value.
  **Faithfulness** `(m(circuit) − m(corrupt)) / (m(clean) − m(corrupt))`: 1 restores the clean answer, 0 nothing.
""")


def _check(target):
    if not target:
        raise LensError("this view needs a target token (e.g. ' Paris')")


def render_attribute(backend, info, prompts, *, target, foil, site, qk_fix, grad_drop=False) -> Drawn:
    """``prompts``: the clean prompt, then the corrupted one; real patching beside the estimate."""
    from ..figures.circuits import agreement_text, estimate_figure, scatter_figure

    _check(target)
    r = backend.attribute(prompts[0], prompts[1], AttributeOptions(target=target, foil=foil, site=site,
                                                                   qk_fix=bool(qk_fix), verify=True,
                                                                   grad_drop=bool(grad_drop)))
    return Drawn([r], [estimate_figure(r), scatter_figure(r)], agreement_text(r))


def render_circuit(backend, info, prompts, *, target, foil, edges, ig_steps, rank="help") -> Drawn:
    from ..figures.circuits import circuit_figure, circuit_text, faithfulness_figure

    _check(target)
    c = backend.circuit(prompts[0], prompts[1], CircuitOptions(target=target, foil=foil, edges=int(edges),
                                                                    ig_steps=int(ig_steps), rank=rank))
    return Drawn([c], [circuit_figure(c), faithfulness_figure(c)], circuit_text(c))


VIEWS = (
    View("attribute", "Attribution patching, verified", CAUSE_EFFECT, "circuits?tab=Attribution+patching", (
        "Attribution patching estimates every cell of an activation-patching grid from one clean run, one corrupted "
        "run and one backward pass: (a_clean − a_corrupt) · ∂m/∂a on the corrupted run, over m(clean) − m(corrupt), "
        "m the target's logit minus the foil's at the last position.",
        "Left the estimate, right real patching (same rows, columns and colours); under them every cell as a point, "
        "real patching across and the estimate up, with their Pearson correlation."),
        {"target": None, "foil": None, "site": "resid", "qk_fix": False, "grad_drop": False}, render_attribute, reads=TWO_PROMPTS),
    View("circuit", "Circuit and faithfulness", CAUSE_EFFECT, "circuits?tab=Circuit", (
        "Edge attribution patching scores each edge from a writer (the embedding, a head, an MLP) to a reader (a "
        "head's query, a key/value head's keys or values, an MLP, the logits); the first edges are kept and pruned "
        "to what joins the input to the logits.",
        "The graph: blue edges raise the metric, red lower it, width by score. The curve: the share of the clean "
        "answer the top-n edges restore when every other edge carries the corrupted run's value."),
        {"target": None, "foil": None, "edges": DEFAULT_EDGES, "ig_steps": 0, "rank": "help"}, render_circuit, reads=TWO_PROMPTS),
)
