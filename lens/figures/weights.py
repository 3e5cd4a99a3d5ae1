"""The weight space's charts: the neurons that write a token, one neuron's tokens and activation, its top contexts
(as HTML), each head's OV copy score and the composition heatmap with a head's partners. Blue raises, red lowers."""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible
from ..weights.results import HeadWeights, NeuronPage, NeuronScores

UP, DOWN = "#2f6db5", "#c0392b"


def _short(token: str, width: int = 10) -> str:
    s = visible(token)
    return s if len(s) <= width else s[: width - 1] + "…"


def neuron_name(layer: int, neuron: int) -> str:
    return f"L{layer} N{neuron}"


def parse_neuron(text: str | None) -> tuple[int, int] | None:
    """(layer, neuron) of a name "L30 N645" (or "30/645", "30 645"); None when it names none."""
    if not text:
        return None
    parts = str(text).replace("/", " ").replace("L", " ").replace("N", " ").split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def neurons_figure(r: NeuronScores, height: int = 560, rows: int | None = None) -> go.Figure:
    """The top promoters (blue, top) and suppressors (red, bottom) of the token: logit per unit of activation."""
    n = rows or len(r.neurons)
    up, down = r.neurons[:n], r.suppressors[:n]
    labels = [neuron_name(x["layer"], x["neuron"]) for x in down[::-1]] + \
             [neuron_name(x["layer"], x["neuron"]) + " " for x in up[::-1]]
    values = [x["score"] for x in down[::-1]] + [x["score"] for x in up[::-1]]
    K = len(r.neurons)  # top_tokens lists the promoters, then the suppressors
    hover = [", ".join(visible(t) for t in ts[:5]) for ts in r.top_tokens[K:K + n][::-1] + r.top_tokens[:n][::-1]]
    fig = go.Figure(go.Bar(y=labels, x=values, orientation="h", marker_color=[DOWN] * len(down) + [UP] * len(up),
                           customdata=hover,
                           hovertemplate="%{y}: %{x:+.3f}<br>raises most: %{customdata}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"Neurons writing {visible(r.token)}", font=dict(size=14)),
                      xaxis=dict(title="logit per unit of activation", automargin=True),
                      yaxis=dict(automargin=True, type="category"))
    return fig


def neuron_tokens_figure(p: NeuronPage, height: int = 420, rows: int | None = None) -> go.Figure:
    """The tokens the neuron's output vector raises and lowers most (through the final norm's weight and W_U)."""
    n = rows or len(p.top_tokens)
    up, down = p.top_tokens[:n], p.bottom_tokens[:n]
    labels = [f"{_short(t, 12)} " for t in down[::-1]] + [_short(t, 12) for t in up[::-1]]
    values = list(p.bottom_values[:n][::-1]) + list(p.top_values[:n][::-1])
    fig = go.Figure(go.Bar(y=labels, x=values, orientation="h", marker_color=[DOWN] * len(down) + [UP] * len(up),
                           hovertemplate="%{y}: %{x:+.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{neuron_name(p.layer, p.neuron)}: tokens it raises, lowers",
                                 font=dict(size=14)),
                      xaxis=dict(title="logit per unit of activation", automargin=True),
                      yaxis=dict(automargin=True, type="category"))
    return fig


def neuron_activation_figure(p: NeuronPage, height: int = 320) -> go.Figure:
    """The neuron's activation at every position of the prompt."""
    x = [f"{i}·{_short(t, 8)}" for i, t in enumerate(p.prompt_tokens)]
    a = np.asarray(p.activation)
    fig = go.Figure(go.Bar(x=x, y=a, marker_color=[UP if v >= 0 else DOWN for v in a],
                           hovertemplate="%{x}: %{y:+.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{neuron_name(p.layer, p.neuron)} on the prompt", font=dict(size=14)),
                      yaxis=dict(title="activation", automargin=True),
                      xaxis=dict(automargin=True, type="category", tickangle=-45))
    return fig


def contexts_html(p: NeuronPage, n: int | None = None, low: bool = False) -> str:
    """Each top (``low``: bottom) context as one line of HTML, the peak token highlighted, its activation first."""
    lines = []
    found = (zip(p.low_contexts, p.low_context_peak, p.low_context_values) if low
             else zip(p.contexts, p.context_peak, p.context_values))
    for c, k, v in list(found)[:n]:
        esc = lambda ts: html.escape("".join(ts).replace("\n", "↵ "))  # noqa: E731  (spaces as spaces: it reads)
        lines.append(f"<div class='ll-context'><b>{v:+.2f}</b>&ensp;{esc(c[:k])}"
                     f"<mark>{html.escape(visible(c[k]))}</mark>{esc(c[k + 1:])}</div>")
    return "\n".join(lines)


def copying_figure(h: HeadWeights, height: int = 560) -> go.Figure:
    """Layers × heads: each head's OV copy score (mean z of a token's own logit); hover: what it copies."""
    L, H = h.n_layers, h.n_heads
    z = h.copy_score
    span = float(np.abs(z).max()) or 1.0
    hover = [[f"L{l + 1}H{k}: {z[l, k]:+.2f}<br>copies " + ", ".join(visible(t) for t in h.copy_tokens[l][k][:5])
              + "<br>suppresses " + ", ".join(visible(t) for t in h.suppress_tokens[l][k][:5])
              for k in range(H)] for l in range(L)]
    fig = go.Figure(go.Heatmap(z=z, x=[f"H{k}" for k in range(H)], y=[f"L{l + 1}" for l in range(L)],
                               colorscale="RdBu", zmid=0, zmin=-span, zmax=span,
                               hovertext=hover, hoverinfo="text", colorbar=dict(title="copy z")))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text="OV copying: each head", font=dict(size=14)),
                      yaxis=dict(autorange="reversed", automargin=True, type="category"),
                      xaxis=dict(automargin=True, type="category"))
    return fig


def composition_figure(h: HeadWeights, height: int = 560) -> go.Figure:
    """Layers × layers: the mean composition score of the earlier layer's heads (rows) into the later's (columns)."""
    L = h.n_layers
    z = np.where(np.triu(np.ones((L, L)), 1) > 0, h.layer_scores, np.nan)
    names = [f"L{l + 1}" for l in range(L)]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Viridis", hoverongaps=False,
                               hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>",
                               colorbar=dict(title=f"{h.composition.upper()}-comp.")))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{h.composition.upper()}-composition: writer layer → reader layer",
                                 font=dict(size=14)),
                      yaxis=dict(autorange="reversed", automargin=True, type="category", title="writes"),
                      xaxis=dict(automargin=True, type="category", title="reads"))
    return fig


def partners(h: HeadWeights, head: int, n: int = 8) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """A head's strongest partners: the earlier heads it reads (as B) and the later heads that read it (as A)."""
    col, row = h.scores[:, head], h.scores[head]
    reads = [(h.labels[i], float(col[i])) for i in np.argsort(col)[::-1][:n] if col[i] > 0]
    read_by = [(h.labels[i], float(row[i])) for i in np.argsort(row)[::-1][:n] if row[i] > 0]
    return reads, read_by


def partners_figure(h: HeadWeights, head: int, height: int = 420, n: int = 8) -> go.Figure:
    reads, read_by = partners(h, head, n)
    labels = [f"{a} → " for a, _ in reads[::-1]] + [f"→ {b}" for b, _ in read_by[::-1]]
    values = [v for _, v in reads[::-1]] + [v for _, v in read_by[::-1]]
    fig = go.Figure(go.Bar(y=labels, x=values, orientation="h",
                           marker_color=["#e08a1e"] * len(reads) + [UP] * len(read_by),
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{h.labels[head]}: {h.composition.upper()}-composition partners",
                                 font=dict(size=14)),
                      xaxis=dict(title="composition score", automargin=True),
                      yaxis=dict(automargin=True, type="category"))
    return fig


def neurons_reading(r: NeuronScores) -> str:
    x = r.neurons[0]
    return (f"{neuron_name(x['layer'], x['neuron'])} writes {visible(r.token)} most: {x['score']:+.2f} logit per unit "
            f"of activation (of {r.n_layers} × {r.n_neurons} neurons).")


def neuron_reading(p: NeuronPage) -> str:
    hi, lo = int(np.argmax(p.activation)), int(np.argmin(p.activation))
    return (f"{neuron_name(p.layer, p.neuron)} raises {visible(p.top_tokens[0])} most and lowers "
            f"{visible(p.bottom_tokens[0])} most; on the prompt its activation runs from {p.activation[lo]:+.2f} "
            f"({lo}·{visible(p.prompt_tokens[lo])}) to {p.activation[hi]:+.2f} ({hi}·{visible(p.prompt_tokens[hi])}).")


def heads_reading(h: HeadWeights) -> str:
    i = int(np.argmax(h.copy_score))
    l, k = divmod(i, h.n_heads)
    a, b = np.unravel_index(int(np.argmax(h.scores)), h.scores.shape)
    return (f"L{l + 1}H{k} copies most (z {h.copy_score[l, k]:+.2f}); the strongest "
            f"{h.composition.upper()}-composition is {h.labels[a]} → {h.labels[b]} ({h.scores[a, b]:.2f}).")
