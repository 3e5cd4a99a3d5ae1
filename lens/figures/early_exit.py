"""Early exit: the saturation row of each position, and the share of positions that could stop by each row."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis.early_exit import exit_fractions
from ..results import LogitLensResult
from .lens_comparison import row_labels
from .logit_lens import position_labels


def early_exit_figure(result: LogitLensResult, height: int = 360) -> go.Figure:
    """Left: per position, the first layer from which the lens's top-1 is the model's answer for good.
    Right: the share of positions that could exit at or before each layer (the LayerSkip picture)."""
    labels = row_labels(result.layers)
    exits = result.exit_layer
    x = position_labels(result)
    y = [np.nan if e is None else e for e in exits]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.1,
                        subplot_titles=("layer from which each position has its final answer",
                                        "positions that could stop by each layer"))
    fig.add_trace(go.Bar(x=x, y=y, marker_color="#2f6db5", showlegend=False,
                         customdata=[labels[e] if e is not None else "never" for e in exits],
                         hovertemplate="%{x}: from %{customdata}<extra></extra>"), 1, 1)
    frac = exit_fractions(exits, len(result.layers))
    fig.add_trace(go.Scatter(x=labels, y=frac, mode="lines+markers", line=dict(color="#d1495b", width=3),
                             showlegend=False, hovertemplate="by %{x}: %{y:.0%}<extra></extra>"), 1, 2)
    step = max(1, len(labels) // 8)
    fig.update_yaxes(title_text="layer", tickvals=list(range(0, len(labels), step)),
                     ticktext=labels[::step], range=[0, len(labels) - 0.5], row=1, col=1)
    fig.update_xaxes(type="category", tickangle=-45, row=1, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=2)
    fig.update_xaxes(type="category", nticks=10, title_text="layer", row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=60, b=90), plot_bgcolor="white",
                      font=dict(family="Inter, Helvetica, Arial, sans-serif"))
    fig.update_xaxes(gridcolor="#e5e5e5")
    fig.update_yaxes(gridcolor="#e5e5e5")
    return fig
