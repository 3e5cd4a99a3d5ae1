"""The attention page (pages/attention.py) and its views: rollout, flow, routes, heads.

The page switches between them with its ``view`` URL parameter: its choices are the values
these entries' pages carry."""
from __future__ import annotations

import re
from collections.abc import Sequence

from ..options import FlowOptions, HeadOptions, RolloutOptions, RouteOptions
from ..options import DEFAULT_THRESHOLD
from .entry import ATTENTION, Drawn, Page, View

PAGE = Page(
    "attention", "Attention flow", ":material/hub:", "where the information behind a prediction came from", ATTENTION,
    """
A prediction at one position is built from information that attention heads **move between positions**
and that MLPs **transform in place**. This page follows it back, layer by layer.

- **Routes** (Ferrando & Voita, 2024): a graph with one column per position and two rows per layer (the stream after
  the attention block, and after the MLP). An edge's width is how much that part contributed to the node it enters:
  its *importance* `max(‖y‖₁ − ‖y − part‖₁, 0)`, normalised so that all parts entering a node sum to 1. Edges below the
  threshold are dropped, and only what can still reach the chosen prediction is drawn.
  Blue: attention (information moved from another position), grey: the residual (kept in place), orange: the MLP.
  Click a node (or pick it below) to see which heads or neurons wrote into it and what they push towards.
- **Rollout** (Abnar & Zuidema, 2020): average the heads, add the residual connection, and multiply the attention
  matrices of all layers; row *l* says how much of the chosen position after layer *l* "comes from" each input token.
  **Flow** treats the same matrices as pipes and asks how much can be pushed from the output to each input (max-flow).
  Both ignore what the values carry, so they are rough pictures; in models with an *attention sink* (most attention
  parked on the first token) rollout piles nearly everything onto that token.
- **Heads**: the raw attention of each head (rows: the position reading, columns: the token read), and per-head
  scores: entropy (how spread out), previous-token and induction scores (measured on a repeated random sequence:
  induction heads look at the token that followed the previous occurrence of the current token).
""")


def _number(text: str) -> int | None:
    """The number in a link's value: "7", "L7" (a row), "head 7"; None when there is none."""
    m = re.fullmatch(r"[A-Za-z ]*?(-?\d+)", text.strip())
    return int(m.group(1)) if m else None


def link_note(what: str, asked: str | None, valid: Sequence[str], of: str, used: str,
              verb: str = "showing") -> str | None:
    """The page's one line when a link asks for a ``what`` (``asked``, the URL's text) that none of ``valid`` is:
    ``of`` names what there is ("the prompt's 6 tokens"), ``used`` what the page shows instead ("the last
    position, 5"). None when the link asked for nothing or for a valid value."""
    if asked is None or asked in valid:
        return None
    n, top = _number(asked), max((v for v in map(_number, valid) if v is not None), default=None)
    how = f"is past {of}" if n is not None and top is not None and n > top else f"is not one of {of}"
    named = asked[len(what) + 1:] if asked.startswith(f"{what} ") else asked  # ?head=head+9: "head 9"
    return f"{what} {named[:40]} {how}: {verb} {used}."


def _rollout_drawn(r, skip_first: bool | None) -> Drawn:
    from ..figures.attention import rollout_figure
    from ..model.tokens import visible

    return Drawn([r], [rollout_figure(r, skip_first=bool(skip_first))],
                 f"Position {r.position} ({visible(r.tokens[r.position])}), traced back to every input token.")


def render_rollout(backend, info, prompt, *, position, skip_first) -> Drawn:
    """``skip_first``: the chart leaves out the first token's column (the numbers keep it; None: the page's
    default, kept)."""
    return _rollout_drawn(backend.rollout(prompt, RolloutOptions(position)), skip_first)


def render_flow(backend, info, prompt, *, position, layers, skip_first) -> Drawn:
    """``layers``: the layer rows solved (None: every layer; a long prompt affords the last one only,
    as the page's plan_flow says)."""
    rows = None if layers is None else tuple(int(l) for l in ([layers] if isinstance(layers, int) else layers))
    return _rollout_drawn(backend.attention_flow(prompt, FlowOptions(position, rows)), skip_first)


def render_routes(backend, info, prompt, *, position, threshold) -> Drawn:
    from ..figures.attention import route_figure
    from ..model.tokens import visible

    g = backend.route_graph(prompt, RouteOptions(position, float(threshold)))
    return Drawn([g], [route_figure(g)], f"Routes to the prediction “{visible(g.prediction)}” at position "
                                         f"{g.position}: {len(g.edge_layer)} edges above {g.threshold}.")


def render_heads(backend, info, prompt, *, layer, metric) -> Drawn:
    """Without a layer every head's scores; with one, that layer's patterns."""
    from ..figures.attention import head_grid_figure, head_summary_figure

    if layer is None:
        s = backend.head_summary(prompt)
        return Drawn([s], [head_summary_figure(s, metric)],
                     f"Every head of {info.name}, scored by {metric.replace('_', '-')}.")
    h = backend.head_patterns(prompt, HeadOptions(int(layer)))
    return Drawn([h], [head_grid_figure(h)], f"The attention of each head of layer {h.layer}.")


VIEWS = (
    View("rollout", "Attention rollout", ATTENTION, "attention?view=Rollout+%26+flow", (
        "Rollout (Abnar & Zuidema, 2020) averages each layer's heads, adds the residual connection and multiplies "
        "the attention matrices of all layers: row l says how much of the chosen position after layer l comes from "
        "each input token. Rows sum to 1.",
        "It ignores what the values carry, so it is a rough picture; in models with an attention sink (attention "
        "parked on the first token) it piles much of the weight onto that token."),
        {"position": None, "skip_first": None}, render_rollout),
    View("flow", "Attention flow", ATTENTION, "attention?view=Rollout+%26+flow&flow=true", (
        "Attention flow treats the same head-averaged attention matrices as pipes and computes, by max-flow, how "
        "much can be pushed from the chosen position at each layer back to each input token.",),
        {"position": None, "layers": None, "skip_first": None}, render_flow),
    View("routes", "Information-flow routes", ATTENTION, "attention?view=Routes", (
        "Routes (Ferrando & Voita, 2024): one column per position and two nodes per layer (the stream after the "
        "attention block and after the MLP). An edge's width is how much that part contributed to the node it "
        "enters, normalised so that all parts entering a node sum to 1; edges below the threshold are dropped and "
        "only what still reaches the chosen prediction is drawn.",
        "Blue: attention (information moved from another position); grey: the residual (kept in place); orange: "
        "the MLP."),
        {"position": None, "threshold": DEFAULT_THRESHOLD}, render_routes),
    View("heads", "Attention heads", ATTENTION, "attention?view=Heads", (
        "Without a layer: one score per head of every layer. Induction heads attend to the token that followed the "
        "previous occurrence of the current token; previous-token heads to the token just before; both are measured "
        "on a repeated random sequence. Entropy is measured on the prompt (0: all attention on one token).",
        "With a layer: that layer's attention pattern per head (rows: the position reading, columns: the token "
        "read)."),
        {"layer": None, "metric": "induction"}, render_heads),
)
