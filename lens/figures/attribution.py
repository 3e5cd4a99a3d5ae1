"""Who writes the answer: the direct-logit-attribution heatmap (layers × heads) and its per-layer bars, one head's
attention and tokens, the sub-layer lens's two heatmaps and the knockout heatmap. Diverging colours throughout:
blue raises the metric, red lowers it, white is zero."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..attribution.results import DLAResult, KnockoutResult, SublayerLensResult
from ..model.tokens import visible

COLORS = "RdBu"  # diverging, zero white: blue raises the answer, red lowers it
ATTN_COLOR, MLP_COLOR, OTHER_COLOR = "#2f6db5", "#e08a1e", "#777777"


def _short(token: str, width: int = 8) -> str:
    s = visible(token)
    return s if len(s) <= width else s[: width - 1] + "…"


def metric_text(r) -> str:
    """``logit(␣Mary) − logit(␣John)``, or ``logit(␣Mary)`` without a foil."""
    foil = getattr(r, "foil", None)
    return f"logit({visible(r.target)})" + ("" if foil is None else f" − logit({visible(foil)})")


def head_name(layer_index: int, head: int) -> str:
    return f"L{layer_index + 1}.H{head}"


def _span(z: np.ndarray) -> float:
    z = np.asarray(z, float)
    return max(1e-9, float(np.nanmax(np.abs(z)))) if z.size else 1.0


def dla_figure(r: DLAResult, height: int = 560) -> go.Figure:
    """Layers × heads: each head's direct part of the metric (attention and MLP per layer where heads are not
    separate writes). An invisible marker on every cell carries the click (Plotly heatmaps send none)."""
    rows = [f"L{l}" for l in r.layers]
    if r.heads.shape[1]:
        z, x = r.heads, [f"H{h}" for h in range(r.heads.shape[1])]
        title, where = "Each head's direct part", "head"
    else:
        z, x = np.stack([r.attn, r.mlp], 1), ["attention", "MLP"]
        title, where = "Each block's direct part", "block"
    span = _span(z)
    fig = go.Figure(go.Heatmap(z=z, x=x, y=rows, colorscale=COLORS, zmid=0, zmin=-span, zmax=span, xgap=1, ygap=1,
                               hoverinfo="skip", colorbar=dict(title=dict(text="direct part", side="right"))))
    if r.heads.shape[1]:
        li, hi = np.meshgrid(np.arange(z.shape[0]), np.arange(z.shape[1]), indexing="ij")
        fig.add_scatter(
            x=[x[h] for h in hi.ravel()], y=[rows[l] for l in li.ravel()], mode="markers", showlegend=False,
            marker=dict(size=14, symbol="square", color="rgba(0,0,0,0)", line=dict(width=0)),
            customdata=np.stack([li.ravel(), hi.ravel(), z.ravel()], 1),
            hovertemplate=("layer %{y} · head %{x}<br>direct part %{customdata[2]:+.3f}"
                           "<br><i>click: its attention and tokens</i><extra></extra>"),
            selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)))
        fig.update_layout(clickmode="event+select")
    else:
        fig.data[0].hoverinfo = None
        fig.data[0].hovertemplate = "layer %{y} · %{x}<br>direct part %{z:+.3f}<extra></extra>"
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=title, font=dict(size=14)),
                      xaxis=dict(title=where, automargin=True, side="bottom"),
                      yaxis=dict(title="layer", automargin=True))
    return fig


def dla_layers_figure(r: DLAResult, height: int = 560) -> go.Figure:
    """Per layer, the attention block's and the MLP's direct parts (rows as the heatmap's), and below them the
    embeddings' and the biases'."""
    biased = bool(r.bias or np.any(r.attn_bias))  # a model without biases gets no row for them
    rows = ["biases"] * biased + ["emb", *(f"L{l}" for l in r.layers)]
    fig = go.Figure()
    n = 1 + biased
    fig.add_bar(y=rows[n:], x=r.attn, name="attention", orientation="h", marker_color=ATTN_COLOR,
                hovertemplate="%{y} attention: %{x:+.3f}<extra></extra>")
    fig.add_bar(y=rows[n:], x=r.mlp, name="MLP", orientation="h", marker_color=MLP_COLOR,
                hovertemplate="%{y} MLP: %{x:+.3f}<extra></extra>")
    fig.add_bar(y=rows[:n], x=[r.bias, r.embed][-n:], name="emb, biases" if biased else "emb", orientation="h",
                marker_color=OTHER_COLOR, hovertemplate="%{y}: %{x:+.3f}<extra></extra>")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), barmode="group", bargap=0.15,
                      title=dict(text="Per layer: attention and MLP", font=dict(size=14)),
                      xaxis=dict(title="direct part", automargin=True, zeroline=True, zerolinecolor="#444"),
                      yaxis=dict(automargin=True, categoryorder="array", categoryarray=rows),
                      # inside, bottom right: the early layers' bars are short there, and a title above stays clear
                      legend=dict(x=1, y=0, xanchor="right", yanchor="bottom", bgcolor="rgba(255,255,255,0.85)"))
    return fig


def head_attention_figure(r: DLAResult, layer_index: int, head: int, height: int = 320) -> go.Figure:
    """Where the head looks from the attributed position: its attention row over the tokens it may read."""
    p = r.position
    w = r.head_attention[layer_index, head, : p + 1]
    x = [f"{i}·{_short(t)}" for i, t in enumerate(r.tokens[: p + 1])]
    fig = go.Figure(go.Bar(x=x, y=w, marker_color=ATTN_COLOR, hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{head_name(layer_index, head)}: its attention", font=dict(size=14)),
                      xaxis=dict(tickangle=-40, automargin=True), yaxis=dict(title="weight", range=[0, 1],
                                                                            automargin=True))
    return fig


def head_tokens_figure(r: DLAResult, layer_index: int, head: int, height: int = 320) -> go.Figure:
    """The tokens the head's direct output (through the frozen final norm and the unembedding) raises and lowers
    most."""
    up, down = r.head_top_tokens[layer_index][head], r.head_bottom_tokens[layer_index][head]
    vu, vd = r.head_top_values[layer_index, head], r.head_bottom_values[layer_index, head]
    labels = [f"{_short(t, 12)} " for t in down[::-1]] + [f"{_short(t, 12)}" for t in up[::-1]]
    # Tokens can repeat between the lists (never here: a token is raised or lowered); spaces keep them apart.
    values = list(vd[::-1]) + list(vu[::-1])
    colors = ["#c0392b"] * len(down) + [ATTN_COLOR] * len(up)
    fig = go.Figure(go.Bar(y=labels, x=values, orientation="h", marker_color=colors,
                           hovertemplate="%{y}: %{x:+.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{head_name(layer_index, head)}: tokens it raises, lowers", font=dict(size=14)),
                      xaxis=dict(title="direct logit", automargin=True), yaxis=dict(automargin=True))
    return fig


def clicked_head(points: list[dict]) -> tuple[int, int] | None:
    """(layer index, head) of a clicked cell of ``dla_figure`` (its markers carry three numbers)."""
    from .style import point_customdata

    for pt in points or []:
        cd = point_customdata(pt)
        if cd is not None and len(cd) == 3:
            return int(cd[0]), int(cd[1])
    return None


def sublayer_figure(r: SublayerLensResult, block: str, height: int = 560, span: float | None = None) -> go.Figure:
    """``block`` "attn" or "mlp": layers × positions, each cell the top token the write promotes, coloured by the
    target's direct logit from it. ``span``: the colour range (shared by the two heatmaps)."""
    z = getattr(r, f"{block}_target")
    top, topv = getattr(r, f"{block}_top_tokens"), getattr(r, f"{block}_top_values")
    bot, botv = getattr(r, f"{block}_bottom_tokens"), getattr(r, f"{block}_bottom_values")
    x = [f"{p}·{_short(r.tokens[p])}" for p in r.positions]
    y = [f"L{l}" for l in r.layers]
    text = [[_short(cell[0], 6) for cell in row] for row in top]
    hover = [[("promotes " + ", ".join(f"{visible(t)} {v:+.2f}" for t, v in zip(top[i][j], topv[i, j]))
               + "<br>suppresses " + ", ".join(f"{visible(t)} {v:+.2f}" for t, v in zip(bot[i][j], botv[i, j])))
              for j in range(len(x))] for i in range(len(y))]
    span = span or _span(z)
    name = "Attention" if block == "attn" else "MLP"
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, text=text, texttemplate="%{text}", textfont=dict(size=9), customdata=hover,
        colorscale=COLORS, zmid=0, zmin=-span, zmax=span, xgap=1, ygap=1,
        colorbar=dict(title=dict(text=f"logit({_short(r.target)})", side="right")),
        hovertemplate=(f"{name} of %{{y}} at %{{x}}<br>logit({visible(r.target)}) %{{z:+.3f}}"
                       "<br>%{customdata}<extra></extra>")))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{name} outputs, decoded", font=dict(size=14)),
                      xaxis=dict(tickangle=-40, automargin=True), yaxis=dict(title="layer", automargin=True))
    return fig


def sublayer_span(r: SublayerLensResult) -> float:
    """One colour range for both heatmaps, so that their colours compare: the 99th percentile of |logit|, so that a
    few extreme cells (often the first token's, where many models park attention) do not wash out the rest."""
    z = np.abs(np.concatenate([np.ravel(r.attn_target), np.ravel(r.mlp_target)]))
    return max(1e-9, float(np.percentile(z, 99))) if z.size else 1.0


def knockout_figure(r: KnockoutResult, height: int = 420) -> go.Figure:
    """Rows: the groups of tokens blocked; columns: the layer each window is centred on (or starts at); each cell the
    change of the target's probability, in % of its unblocked value."""
    z = 100 * np.asarray(r.change, float)
    x = [f"L{l}" for l in r.layers]
    span = max(1.0, _span(z))
    custom = [[[f"L{a}–L{b}", float(p)] for (a, b), p in zip(r.windows, row)] for row in r.prob]
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=r.rows, colorscale=COLORS, zmid=0, zmin=-span, zmax=span, xgap=1, ygap=1, customdata=custom,
        colorbar=dict(title=dict(text="change (%)", side="right")),
        hovertemplate=("%{y} blocked in %{customdata[0]}<br>p(" + visible(r.target) + ") = %{customdata[1]:.4f}"
                       f" (unblocked {r.base_prob:.4f})<br>change %{{z:+.0f}} %<extra></extra>")))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"p({_short(r.target)}) with attention blocked", font=dict(size=14)),
                      xaxis=dict(title=f"{r.window}-layer window {'centred on' if r.align == 'centre' else 'from'}",
                                 automargin=True),
                      yaxis=dict(automargin=True, autorange="reversed"))
    return fig


# ---------------------------------------------------------------- what the numbers say, in a sentence

def dla_reading(r: DLAResult) -> str:
    parts = (f"The parts add up to {r.total:.3f}; the model's {metric_text(r)} at position {r.position} "
             f"({visible(r.tokens[r.position])}) is {r.logit_diff:.3f}. Embeddings {r.embed:+.2f}, attention "
             f"{r.attn.sum():+.2f}, MLPs {r.mlp.sum():+.2f}, biases {r.bias:+.2f}.")
    if r.heads.shape[1]:
        flat = np.argsort(r.heads, axis=None)[::-1][:3]
        best = [np.unravel_index(int(i), r.heads.shape) for i in flat]
        parts += " Largest heads: " + ", ".join(f"{head_name(l, h)} ({r.heads[l, h]:+.2f})" for l, h in best) + "."
    return parts


def sublayer_reading(r: SublayerLensResult) -> str:
    last = len(r.positions) - 1
    a, m = int(np.argmax(r.attn_target[:, last])), int(np.argmax(r.mlp_target[:, last]))
    return (f"At the last position, the attention output that raises {visible(r.target)} most is layer "
            f"L{r.layers[a]}'s ({r.attn_target[a, last]:+.2f}); the MLP output, L{r.layers[m]}'s "
            f"({r.mlp_target[m, last]:+.2f}).")


def knockout_reading(r: KnockoutResult) -> str:
    i, j = np.unravel_index(int(np.argmin(r.change)), r.change.shape)
    return (f"p({visible(r.target)}) is {r.base_prob:.3f} with nothing blocked. The largest drop: {r.rows[i]} blocked "
            f"in layers L{r.windows[j][0]}–L{r.windows[j][1]}, to {r.prob[i, j]:.3f} ({100 * r.change[i, j]:+.0f} %).")


def fit_rows(fig: go.Figure, height: int, font: int = 12, below: int = 60, keep: tuple[str, ...] = ()) -> go.Figure:
    """``fig`` ``height`` px tall with a label on every k-th row only (counted from the top row, always labelled), so
    that labels of ``font`` px stand 1.6 font sizes apart; ``below``: the px the x axis takes under the plot. Rows:
    the y axis's category order where it has one, else the first trace's."""
    fig.update_layout(height=height)
    y = list(fig.layout.yaxis.categoryarray or fig.data[0].y)
    margin = fig.layout.margin
    room = height - (margin.t or 80) - max(margin.b or 80, below)
    k = max(1, -(-int(len(y) * font * 1.6) // max(1, room)))
    shown = y[::-1][::k][::-1]
    if keep:  # rows always labelled (the bars' emb and biases), the nearest thinned label above them dropped
        rest = [v for v in shown if v not in keep]
        shown = [v for v in keep if v in y] + rest[min(len(rest) - 1, 1) if k > 1 and rest else 0:]
    fig.update_yaxes(tickmode="array", tickvals=shown, ticktext=shown)
    return fig
