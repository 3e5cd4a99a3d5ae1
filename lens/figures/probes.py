"""Figures of a probe run (lens/probes/): per-layer cross-validated accuracy with the chance level and its band."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..probes.results import ProbeResult

ACC_COLOR, CHANCE_COLOR = "#1f77b4", "#7f7f7f"


def accuracy_figure(r: ProbeResult, height: int = 420) -> go.Figure:
    """Layer → cross-validated accuracy (the folds' spread as whiskers), the training accuracy dotted, the chance
    level and its 95 % band shaded, the best layer and the first readable one marked."""
    x = ["emb" if l == "emb" else f"L{l}" for l in r.layers]
    acc = np.asarray(r.accuracy)
    spread = np.asarray(r.fold_accuracy).std(1)
    fig = go.Figure()
    fig.add_scatter(x=x + x[::-1], y=[r.band[1]] * len(x) + [r.band[0]] * len(x), fill="toself", mode="none",
                    fillcolor="rgba(127,127,127,0.18)", hoverinfo="skip", name="chance band")
    fig.add_scatter(x=x, y=[r.chance] * len(x), mode="lines", line=dict(color=CHANCE_COLOR, dash="dash"),
                    hovertemplate=f"chance {r.chance:.0%}<extra></extra>", name="chance")
    fig.add_scatter(x=x, y=r.train_accuracy, mode="lines", line=dict(color=ACC_COLOR, dash="dot", width=1),
                    hovertemplate="%{x}: training accuracy %{y:.0%}<extra></extra>", name="training")
    fig.add_scatter(x=x, y=acc, mode="lines+markers", line=dict(color=ACC_COLOR),
                    error_y=dict(type="data", array=spread, color="rgba(31,119,180,0.4)", thickness=1),
                    hovertemplate="%{x}: %{y:.1%} held out<extra></extra>", name="cross-validated")
    best = r.layers.index(r.best_layer)
    # To the right of its point: the first readable layer's line (at or before the best) ran through the label.
    fig.add_annotation(x=x[best], y=float(acc[best]), text=f"best {acc[best]:.0%}", showarrow=True, arrowhead=2,
                       ax=14, ay=-22, xanchor="left", font=dict(size=12))
    if r.readable_layer is not None:
        fig.add_vline(x=r.layers.index(r.readable_layer), line=dict(color="#2ca02c", dash="dot"))
    title = (f"Probe accuracy per layer ({r.classes[1]} vs {r.classes[0]}, {r.n} prompts, {r.folds}-fold): "
             f"<span style='color:{ACC_COLOR}'>held out</span>, <span style='color:{CHANCE_COLOR}'>chance</span>")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                      title=dict(text=title, font=dict(size=14), x=0.01),
                      xaxis=dict(title="layer (the stream after each block, at the last token)", automargin=True),
                      # room above 100 % for the best layer's label
                      yaxis=dict(title="accuracy", range=[0, 1.16], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                 tickformat=".0%", automargin=True))
    return fig


def probe_reading(r: ProbeResult) -> str:
    """The one-line reading: where the concept becomes linearly readable."""
    acc = np.asarray(r.accuracy)
    best = float(acc[r.layers.index(r.best_layer)])
    where = "the embeddings" if r.best_layer == "emb" else f"layer {r.best_layer}"
    if r.readable_layer is None:
        return (f"“{r.classes[1]}” vs “{r.classes[0]}” is not linearly readable above chance at any layer "
                f"(best {best:.0%} at {where}; chance {r.chance:.0%}, band {r.band[0]:.0%}–{r.band[1]:.0%}).")
    first = "the embeddings" if r.readable_layer == "emb" else f"layer {r.readable_layer}"
    return (f"“{r.classes[1]}” vs “{r.classes[0]}” becomes linearly readable at {first} (held-out accuracy above "
            f"the chance band {r.band[0]:.0%}–{r.band[1]:.0%}) and peaks at {best:.0%} at {where}.")


def probe_table(r: ProbeResult) -> list[dict]:
    return [{"layer": l, "held-out accuracy": round(float(a), 3), "training accuracy": round(float(t), 3)}
            for l, a, t in zip(r.layers, r.accuracy, r.train_accuracy)]
