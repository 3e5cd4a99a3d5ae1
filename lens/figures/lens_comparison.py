"""Lenses side by side: per layer, the mean KL to the final distribution and the top-1 agreement."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..options import LENS_LABELS
from ..results import LensComparison

LENS_COLOURS = {"logit": "#7f7f7f", "linear": "#2f6db5", "tuned": "#d1495b", "jacobian": "#2a9d5c"}
LENS_NAMES = LENS_LABELS  # every lens kind, named as the lens page names it


def row_labels(layers: list[str]) -> list[str]:
    return ["emb" if l == "emb" else f"L{l}" for l in layers]


def lens_comparison_figure(result: LensComparison, height: int = 380) -> go.Figure:
    """Two panels over the layers: mean KL to the final distribution (log scale: the embeddings row
    is often ~100× the rest) and the share of positions whose top-1 is already the model's answer."""
    x = row_labels(result.layers)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("mean KL to the final distribution (nats, log scale)",
                                        "top-1 = the model's answer (share of positions)"))
    for k, lens in enumerate(result.lenses):
        style = dict(color=LENS_COLOURS.get(lens, "#333"), width=3)
        name = LENS_NAMES.get(lens, lens)
        # The last row is the output itself (KL 0 for every lens): left out of the log scale.
        fig.add_trace(go.Scatter(x=x[:-1], y=result.mean_kl[k][:-1], name=name, mode="lines+markers",
                                 line=style, legendgroup=lens,
                                 hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.3f}} nats<extra></extra>"), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=result.top1_agreement[k], name=name, mode="lines+markers", line=style,
                                 legendgroup=lens, showlegend=False,
                                 hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.0%}}<extra></extra>"), 1, 2)
    # One label per power of ten: plotly otherwise adds small "2" and "5" labels between them.
    fig.update_yaxes(type="log", exponentformat="none", dtick=1, row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="layer", type="category", nticks=16)
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=60, b=60), plot_bgcolor="white",
                      legend=dict(orientation="h", y=-0.25, x=0),
                      font=dict(family="Inter, Helvetica, Arial, sans-serif"))
    fig.update_xaxes(gridcolor="#e5e5e5")
    fig.update_yaxes(gridcolor="#e5e5e5")
    return fig
