"""Two saved runs compared: the difference of their main heatmaps, where their axes agree."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def _heatmap(fig):
    return next((t for t in fig.data if t.type == "heatmap" and t.z is not None), None)


def difference_figure(first, second, names: tuple[str, str] = ("first", "second")) -> go.Figure | None:
    """``first − second`` cell by cell for two figures of the same view whose heatmaps have the same rows and
    the same number of columns (two prompts of one length, or two models on one prompt); None where they do not
    (the page says so)."""
    a, b = _heatmap(first), _heatmap(second)
    if a is None or b is None:
        return None
    za, zb = np.asarray(a.z, dtype=float), np.asarray(b.z, dtype=float)
    if za.shape != zb.shape or list(a.y if a.y is not None else []) != list(b.y if b.y is not None else []):
        return None
    diff = za - zb
    span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
    x = list(a.x) if a.x is not None else None
    if x is not None and b.x is not None and list(a.x) != list(b.x):
        x = [f"{i}" for i in range(za.shape[1])]  # two prompts: the columns agree by position only
    fig = go.Figure(go.Heatmap(
        z=diff, x=x, y=a.y, colorscale="RdBu", zmid=0, zmin=-span or -1, zmax=span or 1, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="difference", side="right")),
        hovertemplate="%{y}, %{x}<br>difference %{z:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=f"{names[0]} − {names[1]}, cell by cell (the colour's values)", x=0.01),
                      height=max(360, 20 * diff.shape[0] + 160), margin=dict(l=60, r=20, t=50, b=90),
                      xaxis=dict(type="category", tickangle=-45), yaxis=dict(type="category"), plot_bgcolor="white")
    return fig
