"""Attention-flow figures: head patterns, head scores, rollout/flow, the route graph, drill-down."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..model.tokens import visible
from ..results import BLOCKS, KINDS, FlowResult, HeadPatterns, HeadSummary, NodeDetail, RolloutResult, RouteGraph

FONT = dict(family="Inter, Helvetica, Arial, sans-serif")
KIND_COLOURS = {"residual": "rgba(120,120,120,0.55)", "attention": "rgba(47,109,181,0.85)",
                "mlp": "rgba(224,123,57,0.9)"}


def _short(token: str, width: int = 8) -> str:
    s = visible(token)
    return s if len(s) <= width else s[: width - 1] + "…"


def token_labels(tokens: list[str], upto: int | None = None, width: int = 8) -> list[str]:
    n = len(tokens) if upto is None else upto
    return [f"{i}·{_short(tokens[i], width)}" for i in range(n)]


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), height=height, font=FONT,
                      margin=dict(l=70, r=20, t=50, b=90), plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------- head patterns

def head_grid_figure(p: HeadPatterns, columns: int = 6, height: int | None = None) -> go.Figure:
    """Every head of one layer as a small query × key heatmap (no labels)."""
    H = p.n_heads
    cols = min(columns, H)
    rows = math.ceil(H / cols)
    height = height or 170 * rows + 80
    # Room between the rows for the heads' titles (18 px on a slide): ~34 px of the plot's height.
    gap = min(0.3, max(0.08, 34 / max(1, height - 140))) if rows > 1 else 0.1
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in range(H)],
                        horizontal_spacing=0.02, vertical_spacing=gap)
    T = p.attention.shape[-1]
    for h in range(H):
        r, c = divmod(h, cols)
        fig.add_trace(go.Heatmap(z=p.attention[h], zmin=0, zmax=1, colorscale="Blues", showscale=False,
                                 hovertemplate=f"head {h}<br>query %{{y}} → key %{{x}}: %{{z:.3f}}<extra></extra>"),
                      row=r + 1, col=c + 1)
    fig.update_xaxes(showticklabels=False, range=[-0.5, T - 0.5])
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    return _layout(fig, f"Layer {p.layer}: all {H} heads (rows: queries, columns: keys)", height)


def pattern_figure(p: HeadPatterns, head: int, height: int | None = None) -> go.Figure:
    a = p.attention[head]
    labels = token_labels(p.tokens)
    T = len(labels)
    text = [[f"{a[i, j]:.2f}" if a[i, j] >= 0.1 else "" for j in range(T)] for i in range(T)] if T <= 32 else None
    fig = go.Figure(go.Heatmap(
        z=a, x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues", text=text,
        texttemplate="%{text}" if text else None, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="attention", side="right")),
        hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    # automargin: the margins grow to the token labels, so the axis titles stand clear of them.
    fig.update_xaxes(title="key (the token being read)", type="category", tickangle=-45, automargin=True)
    fig.update_yaxes(title="query (the position reading)", type="category", autorange="reversed", automargin=True)
    size = height or max(420, min(900, 22 * T + 160))
    return _layout(fig, f"Layer {p.layer}, head {head}: who reads whom", size)


# The score box's choices, as the page (and its URL: ?head_metric=induction) names them.
SCORES = {"entropy": "entropy", "prev_token": "previous token", "induction": "induction"}
SUMMARY_METRICS = {
    "entropy": ("attention entropy (nats)", "Viridis", "How spread out a head's attention is on your prompt: 0 = one token."),
    "prev_token": ("previous-token score", "Greens", "Mean attention to the token just before (on a repeated random sequence)."),
    "induction": ("induction score", "Oranges", "Mean attention to the token after the previous occurrence of the current "
                  "token (second copy of a repeated random sequence)."),
}


def head_summary_figure(s: HeadSummary, metric: str = "induction", height: int | None = None) -> go.Figure:
    label, scale, _ = SUMMARY_METRICS[metric]
    z = getattr(s, metric)
    zmax = s.max_entropy if metric == "entropy" else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(h) for h in range(s.n_heads)], y=[f"L{l}" for l in range(1, s.n_layers + 1)],
        zmin=0, zmax=zmax, colorscale=scale, xgap=1, ygap=1,
        colorbar=dict(title=dict(text=label, side="right")),
        hovertemplate="layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title="head", type="category", automargin=True)
    fig.update_yaxes(title="layer", type="category", automargin=True)  # layer 1 at the bottom, as in the lens
    return _layout(fig, f"Per-head {label}", height or max(320, 18 * s.n_layers + 140))


# ---------------------------------------------------------------- rollout and flow

def rollout_figure(r: RolloutResult | FlowResult, skip_first: bool = False, height: int | None = None) -> go.Figure:
    """Layers × input tokens; ``skip_first`` leaves out the first token's column (the attention sink),
    so the colour scale spreads over the others (the shares are not renormalised)."""
    flow = isinstance(r, FlowResult)
    z = r.flow if flow else r.rollout
    causal = np.allclose(z[:, r.position + 1:], 0) if r.position + 1 < z.shape[1] else True
    n = r.position + 1 if causal else len(r.tokens)
    z = z[:, :n]
    labels = token_labels(r.tokens, n)
    name = "attention flow" if flow else "attention rollout"
    skip_first = skip_first and n > 1
    if skip_first:
        sink = float(np.nanmean(z[:, 0]))
        z, labels = z[:, 1:], labels[1:]
        name += f" (first token left out: its mean share {sink:.2f})"
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=[f"L{l}" for l in r.layers], zmin=0, zmax=float(np.nanmax(z)) if np.isfinite(z).any() else 1,
        colorscale="YlGnBu", xgap=1, ygap=1, colorbar=dict(title=dict(text="share", side="right")),
        hovertemplate="after layer %{y}<br>from input %{x}<br>share %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title="input token (source)", type="category", tickangle=-45, automargin=True)
    fig.update_yaxes(title="layer", type="category", automargin=True)
    return _layout(fig, f"{name.capitalize()} into position {r.position} · {_short(r.tokens[r.position], 14)}",
                   height or max(360, 18 * len(r.layers) + 170))


# ---------------------------------------------------------------- route graph

def _row(layer: int, block: str) -> float:
    """y of a node: embeddings 0, then per layer the attention node and the MLP node."""
    if block == "emb":
        return 0.0
    return 2 * layer - 1 if block == "attn" else 2 * layer


def route_figure(g: RouteGraph, selected: tuple[int, int, str] | None = None) -> go.Figure:
    """One column per position, two rows per layer (after attention, after MLP); edge width by importance."""
    L = g.n_layers
    P = g.position + 1  # a causal model: nothing after the prediction matters
    fig = go.Figure()
    # The whole grid, faint.
    gx, gy = np.meshgrid(np.arange(P), np.arange(2 * L + 1))
    fig.add_trace(go.Scatter(x=gx.ravel(), y=gy.ravel(), mode="markers", hoverinfo="skip", showlegend=False,
                             marker=dict(size=4, color="rgba(180,180,180,0.35)")))
    # Edges, one trace per (kind, width bin).
    bins: dict[tuple[str, int], tuple[list, list]] = {}
    for e in range(len(g.edge_layer)):
        l, b, k = int(g.edge_layer[e]), BLOCKS[g.edge_block[e]], KINDS[g.edge_kind[e]]
        s, t, w = int(g.edge_src[e]), int(g.edge_dst[e]), float(g.edge_importance[e])
        if b == "attn":
            pts = [(s, _row(l - 1, "mlp" if l > 1 else "emb")), (t, _row(l, "attn"))]
        elif k == "mlp":
            pts = [(s, _row(l, "attn")), (s + 0.3, _row(l, "attn") + 0.5), (t, _row(l, "mlp"))]
        else:
            pts = [(s, _row(l, "attn")), (t, _row(l, "mlp"))]
        xs, ys = bins.setdefault((k, min(10, int(w * 10))), ([], []))
        xs.extend([p[0] for p in pts] + [None])
        ys.extend([p[1] for p in pts] + [None])
    shown = set()
    for (k, wb), (xs, ys) in sorted(bins.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", name=k, legendgroup=k,
                                 showlegend=k not in shown,
                                 line=dict(color=KIND_COLOURS[k], width=0.8 + 0.9 * wb)))
        shown.add(k)
    # Reached nodes: hover text and click targets (customdata: layer, position, block; see clicked_node).
    nodes = sorted(g.nodes(), key=lambda n: (n[1], n[0], n[2]))
    incoming: dict[tuple, list[str]] = {}
    for e in range(len(g.edge_layer)):
        l, b = int(g.edge_layer[e]), BLOCKS[g.edge_block[e]]
        incoming.setdefault((b, l, int(g.edge_dst[e])), []).append(
            f"{KINDS[g.edge_kind[e]]} from {int(g.edge_src[e])}: {float(g.edge_importance[e]):.2f}")
    nx_, ny_, hover, custom, colour = [], [], [], [], []
    for b, l, i in nodes:
        nx_.append(i)
        ny_.append(_row(l, b))
        name = "embedding" if b == "emb" else f"layer {l} after {'attention' if b == 'attn' else 'MLP'}"
        lines = incoming.get((b, l, i), [])
        hover.append(f"<b>{name}</b>, position {i} · {visible(g.tokens[i])}<br>" + "<br>".join(lines[:8])
                     + ("<br>…" if len(lines) > 8 else "") + ("<br><i>click to drill down</i>" if b != "emb" else ""))
        custom.append([l, i, b])
        colour.append({"emb": "#555", "attn": "#2f6db5", "mlp": "#e07b39"}[b])
    fig.add_trace(go.Scatter(x=nx_, y=ny_, mode="markers", customdata=custom, name="nodes", showlegend=False,
                             hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
                             marker=dict(size=9, color=colour, line=dict(width=1, color="white"))))
    # MLP nodes (the MLP itself), where an MLP edge was kept.
    mx = [int(g.edge_src[e]) + 0.3 for e in range(len(g.edge_layer)) if KINDS[g.edge_kind[e]] == "mlp"]
    my = [_row(int(g.edge_layer[e]), "attn") + 0.5 for e in range(len(g.edge_layer)) if KINDS[g.edge_kind[e]] == "mlp"]
    fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", hoverinfo="skip", showlegend=False,
                             marker=dict(size=6, symbol="diamond", color="#e07b39")))
    # The prediction, and the selected node.
    fig.add_trace(go.Scatter(x=[g.position], y=[_row(L, "mlp")], mode="markers+text", showlegend=False,
                             text=[f"→ {visible(g.prediction)}"], textposition="top center", hoverinfo="skip",
                             marker=dict(size=16, symbol="star", color="#c0392b"), cliponaxis=False))
    if selected is not None:
        l, i, b = selected
        fig.add_trace(go.Scatter(x=[i], y=[_row(l, b)], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=18, symbol="circle-open", color="#c0392b", line=dict(width=3))))
    # One label per layer, between its attention node (lower) and its MLP node (upper).
    # Evenly spaced labels (every layer, or every 2nd or 4th), so that thinning them on a slide keeps them so.
    every = 1 if L <= 16 else 2 if L <= 32 else 4
    layers = [l for l in range(1, L + 1) if l % every == 0]
    fig.update_yaxes(tickvals=[0] + [2 * l - 0.5 for l in layers], ticktext=["emb"] + [f"L{l}" for l in layers],
                     range=[-0.8, 2 * L + 1.4], title="layer",
                     showgrid=False, zeroline=False)
    fig.update_xaxes(tickvals=list(range(P)), ticktext=token_labels(g.tokens, P), tickangle=-45,
                     range=[-0.6, P - 0.4], title="position · token", showgrid=False, zeroline=False)
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
                      clickmode="event+select", dragmode="pan")
    _layout(fig, f"Routes to the prediction {visible(g.prediction)!r} at position {g.position} "
                 f"(threshold {g.threshold:g}, {len(g.edge_layer)} edges)",
            min(680, max(480, 15 * (2 * L + 1) + 170)))  # the token axis stays on a 720 px screen
    return fig.update_layout(margin_t=70)  # room for the legend and the prediction's label above the star


# ---------------------------------------------------------------- drill-down

def node_bars_figure(d: NodeDetail, height: int = 360) -> go.Figure:
    """Importance of the residual and of each head (attention) or of the MLP and its top neurons."""
    if d.block == "attn":
        names = ["residual"] + [f"head {h}" for h in range(len(d.head_importance))]
        vals = [d.residual_importance] + d.head_importance.tolist()
        colours = ["#999"] + ["#2f6db5"] * len(d.head_importance)
        title = f"Layer {d.layer} attention at position {d.position}"
    else:
        names = ["residual", "MLP"] + [f"neuron {it['neuron']}" for it in d.items]
        vals = [d.residual_importance, d.block_importance] + [it["importance"] for it in d.items]
        colours = ["#999", "#e07b39"] + ["#f3b58a"] * len(d.items)
        title = f"Layer {d.layer} MLP at position {d.position}"
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=colours, text=[f"{v:.2f}" for v in vals],
                           textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_yaxes(title="share of the node", range=[0, max(0.05, max(vals) * 1.2)])
    return _layout(fig, title, height)


def clicked_node(points: list[dict]) -> tuple[int, int, str] | None:
    """(layer, position, block) of a route-graph node from a plotly selection's points, or
    None when the click was not on an attention or MLP node (``route_figure``'s customdata)."""
    from .style import point_customdata

    for pt in points or []:
        cd = point_customdata(pt)
        if cd is not None and len(cd) == 3 and cd[2] in BLOCKS:
            try:
                return int(cd[0]), int(cd[1]), str(cd[2])
            except (TypeError, ValueError):
                return None
    return None


def node_table(d: NodeDetail, width: int = 6, sources: int = 3) -> list[dict]:
    """The drill-down table, one row per head (attention) or top neuron (MLP), most important first: the
    ``sources`` positions each head reads most, the ``width`` tokens each write promotes and suppresses most."""
    rows = []
    for it in sorted(d.items, key=lambda it: -it["importance"]):
        row = {"head" if d.block == "attn" else "neuron": it.get("head", it.get("neuron")),
               "importance": round(it["importance"], 4)}
        if d.block == "attn":
            row["reads from"] = ", ".join(f"{j}·{visible(d.tokens[j])} ({w:.3f})"
                                          for j, w in it["top_sources"][:sources])
        else:
            row["activation"] = round(it["activation"], 3)
        row["promotes"] = " ".join(visible(t) for t in it["promoted"][:width])
        row["suppresses"] = " ".join(visible(t) for t in it["suppressed"][:width])
        rows.append(row)
    return rows
