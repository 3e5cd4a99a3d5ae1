"""Figures of the layer-anatomy measures (lens/anatomy/): line and bar charts per layer, and layers × layers /
layers × dimensions / layers × positions heatmaps."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..anatomy.results import AnatomyResult, CKAResult, ContrastiveResult
from ..model.tokens import visible

ATTN_COLOR, MLP_COLOR, LINE_COLOR, SWAP_COLOR = "#1f77b4", "#ff7f0e", "#333333", "#9467bd"
FIRST_LEFT_OUT = "the first token left out"


def _layout(fig: go.Figure, title: str, height: int, x: str, y: str) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), title=dict(text=title, font=dict(size=14)),
                      xaxis=dict(title=x, automargin=True), yaxis=dict(title=y, automargin=True), showlegend=False)
    return fig


def norm_figure(r: AnatomyResult, height: int = 380) -> go.Figure:
    """Mean ‖h‖ per row (log scale), each row's ratio to the row before in the hover."""
    ratio = ["", *(f"×{v:.3g} the row before" for v in r.norm_ratio)]
    fig = go.Figure(go.Scatter(x=r.rows, y=r.norm, mode="lines+markers", line=dict(color=LINE_COLOR),
                               customdata=ratio, hovertemplate="%{x}: mean ‖h‖ %{y:.4g} %{customdata}<extra></extra>"))
    _layout(fig, "Residual norm per layer", height, "layer (emb: the embeddings; Ll: after block l)", "mean ‖h‖")
    fig.update_yaxes(type="log", dtick=1)  # labels at the powers of ten only
    return fig


def change_figure(r: AnatomyResult, height: int = 380) -> go.Figure:
    """Per block, 1 − cos(h_{l−1}, h_l), split into the attention's and the MLP's shares of the block's write."""
    x = r.rows[1:]
    attn = np.asarray(r.block_change) * np.asarray(r.attn_share)
    mlp = np.asarray(r.block_change) * np.asarray(r.mlp_share)
    fig = go.Figure()
    fig.add_bar(x=x, y=attn, name="attention", marker_color=ATTN_COLOR, customdata=np.asarray(r.attn_share),
                hovertemplate="block %{x}: attention %{customdata:.0%} of the write<extra></extra>")
    fig.add_bar(x=x, y=mlp, name="MLP", marker_color=MLP_COLOR, customdata=np.asarray(r.mlp_share),
                hovertemplate="block %{x}: MLP %{customdata:.0%} of the write<extra></extra>")
    fig.add_scatter(x=x, y=r.block_change, mode="markers", marker=dict(color=LINE_COLOR, size=6), name="1 − cos",
                    hovertemplate="block %{x}: 1 − cos = %{y:.4f}<extra></extra>")
    fig.update_layout(barmode="relative")
    title = (f"Block change 1 − cos: <span style='color:{ATTN_COLOR}'>attention</span> and "
             f"<span style='color:{MLP_COLOR}'>MLP</span> shares")
    return _layout(fig, title, height, "block", "1 − cos(before, after)")


def skip_figure(r: AnatomyResult, height: int = 380) -> go.Figure:
    """KL(original ‖ block l skipped) of the next token per block (and, when run, blocks l and l+1 swapped)."""
    x = r.rows[1:]
    fig = go.Figure(go.Bar(x=x, y=r.skip_kl, marker_color=LINE_COLOR, customdata=r.skip_top, name="skip",
                           hovertemplate="skip block %{x}: KL %{y:.4g} nats, top-1 “%{customdata}”<extra></extra>"))
    title = f"Next token's KL with one block skipped (top-1 “{visible(r.top)}”)"
    if len(r.swap_kl):
        fig.add_scatter(x=x[:-1], y=r.swap_kl, mode="lines+markers", line=dict(color=SWAP_COLOR), name="swap",
                        customdata=[f"{a}↔{b}" for a, b in zip(x[:-1], x[1:])],
                        hovertemplate="swap %{customdata}: KL %{y:.4g} nats<extra></extra>")
        title = (f"Next token's KL: block skipped (bars), <span style='color:{SWAP_COLOR}'>swapped with the next"
                 "</span>")
    return _layout(fig, title, height, "block", "KL(original ‖ changed), nats")


def cka_figure(r: AnatomyResult, height: int = 480) -> go.Figure:
    """Linear CKA between every two rows (layers × layers)."""
    fig = go.Figure(go.Heatmap(z=r.cka, x=r.rows, y=r.rows, zmin=0, zmax=1, colorscale="Viridis",
                               colorbar=dict(title="CKA"),
                               hovertemplate="%{y} · %{x}: CKA %{z:.3f}<extra></extra>"))
    _layout(fig, "Layer similarity (linear CKA)", height, "layer", "layer")
    fig.update_yaxes(autorange="reversed")
    return fig


def cka_pair_figure(r: CKAResult, height: int = 480) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=r.cka, x=r.other_rows, y=r.rows, zmin=0, zmax=1, colorscale="Viridis",
                               colorbar=dict(title="CKA"),
                               hovertemplate=f"{r.model} %{{y}} · {r.other} %{{x}}: CKA %{{z:.3f}}<extra></extra>"))
    _layout(fig, f"CKA: {r.model} × {r.other}", height, f"{r.other} layer", f"{r.model} layer")
    fig.update_yaxes(autorange="reversed")
    return fig


def outlier_figure(r: AnatomyResult, height: int = 480) -> go.Figure:
    """Mean |h| of the top dimensions per row (layers × dimensions)."""
    dims = [f"d{d}" for d in r.top_dims]
    fig = go.Figure(go.Heatmap(z=r.dim_mean_abs, x=dims, y=r.rows, colorscale="Reds", colorbar=dict(title="mean |h|"),
                               hovertemplate="%{y}, dimension %{x}: mean |h| %{z:.4g}<extra></extra>"))
    _layout(fig, "Outlier dimensions: mean |h| of the largest", height, "dimension", "layer")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(type="category")
    return fig


def massive_figure(r: AnatomyResult, height: int = 480) -> go.Figure:
    """Max |h| per row (its dimension and position in the hover) and the kurtosis, both on a log scale."""
    where = [f"dimension {int(d)}, position {int(p)}" for d, p in zip(r.max_dim, r.max_pos)]
    fig = go.Figure()
    fig.add_scatter(x=r.rows, y=r.max_abs, mode="lines+markers", line=dict(color="#d62728"), customdata=where,
                    name="max |h|", hovertemplate="%{x}: max |h| %{y:.4g} (%{customdata})<extra></extra>")
    fig.add_scatter(x=r.rows, y=r.kurtosis, mode="lines+markers", line=dict(color=LINE_COLOR, dash="dot"),
                    name="kurtosis", hovertemplate="%{x}: kurtosis %{y:.4g}<extra></extra>")
    title = "<span style='color:#d62728'>max |h|</span> and kurtosis (dotted) per layer"
    _layout(fig, title, height, "layer", "value (log)")
    fig.update_yaxes(type="log", dtick=1)  # labels at the powers of ten only
    return fig


def erasure_figure(r: AnatomyResult, height: int = 480) -> go.Figure:
    """cos(h_r[p], embedding of token p−1) per row and position (positions 1…)."""
    x = [f"{p} · {visible(t)}" for p, t in enumerate(r.tokens)][1:]
    z = np.asarray(r.prev_cos)[:, 1:]
    fig = go.Figure(go.Heatmap(z=z, x=x, y=r.rows, colorscale="RdBu", zmid=0, colorbar=dict(title="cos"),
                               hovertemplate="%{y}, %{x}: cos with the previous token's embedding %{z:.3f}"
                                             "<extra></extra>"))
    _layout(fig, "Token erasure (proxy): the previous token's embedding in the stream", height,
            "position · token", "layer")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(type="category")
    return fig


def contrastive_figure(r: ContrastiveResult, height: int = 420) -> go.Figure:
    """The model's top tokens by p_L beside the plausible tokens by log p_L − log p_l."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=("the model: p", f"contrastive: log p − log p(L{r.amateur_layer})"))
    fig.add_bar(y=[visible(t) for t in r.plain_tokens], x=r.plain_prob, orientation="h", marker_color=LINE_COLOR,
                hovertemplate="“%{y}”: p = %{x:.4f}<extra></extra>", row=1, col=1)
    fig.add_bar(y=[visible(t) for t in r.contrast_tokens], x=r.contrast_score, orientation="h",
                marker_color=SWAP_COLOR, customdata=np.stack([r.contrast_prob, r.amateur_prob], -1)
                if len(r.contrast_tokens) else None,
                hovertemplate="“%{y}”: score %{x:.3f} (p_L %{customdata[0]:.3g}, p_l %{customdata[1]:.3g})"
                              "<extra></extra>", row=1, col=2)
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    fig.update_xaxes(automargin=True)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10), showlegend=False,
                      title=dict(text=f"Next token: the model alone and against L{r.amateur_layer}", font=dict(size=14)))
    return fig


def anatomy_figures(r: AnatomyResult) -> list[go.Figure]:
    """Every chart of the anatomy view, in the page's order."""
    return [norm_figure(r), change_figure(r), skip_figure(r), cka_figure(r), outlier_figure(r), massive_figure(r),
            erasure_figure(r)]


# ---------------------------------------------------------------- a suite: the mean over its prompts, with a band

BAND = "10–90 % of prompts"


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    return f"rgba({int(c[0:2], 16)}, {int(c[2:4], 16)}, {int(c[4:6], 16)}, {alpha})"


def _band(fig: go.Figure, x, stats: dict, color: str, name: str) -> None:
    """The 10th–90th percentile band (filled, no hover), then the mean's line over it."""
    x = list(x)
    fig.add_scatter(x=x + x[::-1], y=list(stats["p90"]) + list(stats["p10"])[::-1], fill="toself", mode="lines",
                    line=dict(width=0), fillcolor=_rgba(color, 0.18), hoverinfo="skip", name=f"{name} ({BAND})")
    fig.add_scatter(x=x, y=stats["mean"], mode="lines+markers", line=dict(color=color), name=name,
                    customdata=np.stack([stats["p10"], stats["p90"], stats["sd"]], -1),
                    hovertemplate=f"%{{x}}: mean {name} %{{y:.4g}} (10–90 %: %{{customdata[0]:.4g}}–"
                                  "%{customdata[1]:.4g}; s.d. %{customdata[2]:.3g})<extra></extra>")


def _n(s) -> str:
    return f"{len(s.prompts)} prompts"


def suite_norm_figure(s, height: int = 380) -> go.Figure:
    """Mean ‖h‖ per row over the prompts (log scale), with the 10–90 % band."""
    from ..anatomy.spread import spread

    fig = go.Figure()
    _band(fig, s.rows, spread(s.norm), LINE_COLOR, "‖h‖")
    _layout(fig, f"Residual norm per layer, mean of {_n(s)}", height,
            "layer (emb: the embeddings; Ll: after block l)", "mean ‖h‖")
    fig.update_yaxes(type="log", dtick=1)
    return fig


def suite_change_figure(s, height: int = 380) -> go.Figure:
    """Per block, the mean over the prompts of 1 − cos split into the attention's and the MLP's parts (each the
    mean of the prompts' change × share), the mean change with its 10–90 % range as error bars."""
    from ..anatomy.spread import spread

    x = s.rows[1:]
    change = spread(s.block_change)
    attn = np.mean(np.asarray(s.block_change) * np.asarray(s.attn_share), 0)
    mlp = np.mean(np.asarray(s.block_change) * np.asarray(s.mlp_share), 0)
    fig = go.Figure()
    fig.add_bar(x=x, y=attn, name="attention", marker_color=ATTN_COLOR,
                hovertemplate="block %{x}: the attention's part, mean %{y:.4f}<extra></extra>")
    fig.add_bar(x=x, y=mlp, name="MLP", marker_color=MLP_COLOR,
                hovertemplate="block %{x}: the MLP's part, mean %{y:.4f}<extra></extra>")
    fig.add_scatter(x=x, y=change["mean"], mode="markers", marker=dict(color=LINE_COLOR, size=6), name="1 − cos",
                    error_y=dict(type="data", symmetric=False, array=change["p90"] - change["mean"],
                                 arrayminus=change["mean"] - change["p10"], color=LINE_COLOR, thickness=1),
                    customdata=np.stack([change["p10"], change["p90"]], -1),
                    hovertemplate="block %{x}: mean 1 − cos = %{y:.4f} (10–90 %: %{customdata[0]:.4f}–"
                                  "%{customdata[1]:.4f})<extra></extra>")
    fig.update_layout(barmode="relative")
    title = (f"Block change, mean of {_n(s)}: <span style='color:{ATTN_COLOR}'>attention</span> and "
             f"<span style='color:{MLP_COLOR}'>MLP</span> parts")
    return _layout(fig, title, height, "block", "1 − cos(before, after)")


def suite_skip_figure(s, height: int = 380) -> go.Figure:
    """Mean KL(original ‖ block l skipped) over the prompts with the 10–90 % range (error bars); swaps as a line."""
    from ..anatomy.spread import spread

    x = s.rows[1:]
    kl = spread(s.skip_kl)
    fig = go.Figure(go.Bar(x=x, y=kl["mean"], marker_color=LINE_COLOR, name="skip",
                           error_y=dict(type="data", symmetric=False, array=kl["p90"] - kl["mean"],
                                        arrayminus=kl["mean"] - kl["p10"], color="#d62728", thickness=1.5),
                           customdata=np.stack([kl["p10"], kl["p90"], kl["sd"]], -1),
                           hovertemplate="skip block %{x}: mean KL %{y:.4g} nats (10–90 %: %{customdata[0]:.3g}–"
                                         "%{customdata[1]:.3g}; s.d. %{customdata[2]:.3g})<extra></extra>"))
    title = f"Next token's KL with one block skipped, mean of {_n(s)} (bars: {BAND})"
    if s.swap_kl.shape[1]:
        sw = spread(s.swap_kl)
        fig.add_scatter(x=x[:-1], y=sw["mean"], mode="lines+markers", line=dict(color=SWAP_COLOR), name="swap",
                        customdata=[f"{a}↔{b}" for a, b in zip(x[:-1], x[1:])],
                        hovertemplate="swap %{customdata}: mean KL %{y:.4g} nats<extra></extra>")
        title = (f"Next token's KL, mean of {_n(s)}: block skipped (bars), <span style='color:{SWAP_COLOR}'>"
                 "swapped with the next</span>")
    return _layout(fig, title, height, "block", "KL(original ‖ changed), nats")


def suite_cka_figure(s, height: int = 480) -> go.Figure:
    """The CKA matrix averaged over the prompts (its standard deviation in the hover)."""
    from ..anatomy.spread import spread

    cka = spread(s.cka)
    fig = go.Figure(go.Heatmap(z=cka["mean"], x=s.rows, y=s.rows, zmin=0, zmax=1, colorscale="Viridis",
                               colorbar=dict(title="CKA"), customdata=cka["sd"],
                               hovertemplate="%{y} · %{x}: mean CKA %{z:.3f} (s.d. %{customdata:.3f})<extra></extra>"))
    _layout(fig, f"Layer similarity (linear CKA), mean of {_n(s)}", height, "layer", "layer")
    fig.update_yaxes(autorange="reversed")
    return fig


def suite_outlier_figure(s, height: int = 480) -> go.Figure:
    """Mean |h| of the top dimensions per row, averaged over the prompts."""
    dims = [f"d{d}" for d in s.top_dims]
    fig = go.Figure(go.Heatmap(z=np.mean(s.dim_mean_abs, 0), x=dims, y=s.rows, colorscale="Reds",
                               colorbar=dict(title="mean |h|"),
                               hovertemplate="%{y}, dimension %{x}: mean |h| %{z:.4g}<extra></extra>"))
    _layout(fig, f"Outlier dimensions: mean |h|, mean of {_n(s)}", height, "dimension", "layer")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(type="category")
    return fig


def suite_massive_figure(s, height: int = 480) -> go.Figure:
    """Mean max |h| and mean kurtosis per row, each with its 10–90 % band (log scale); the hover names the most
    frequent max-|h| dimension of the row and in how many prompts it is the max."""
    from ..anatomy.spread import outliers, spread

    o = outliers(s)
    fig = go.Figure()
    _band(fig, s.rows, spread(s.max_abs), "#d62728", "max |h|")
    fig.data[-1].customdata = np.column_stack([fig.data[-1].customdata, o["row_dim"], o["row_count"]])
    fig.data[-1].hovertemplate = ("%{x}: mean max |h| %{y:.4g} (10–90 %: %{customdata[0]:.4g}–%{customdata[1]:.4g}); "
                                  f"dimension %{{customdata[3]}} in %{{customdata[4]}} of {len(s.prompts)} prompts"
                                  "<extra></extra>")
    _band(fig, s.rows, spread(s.kurtosis), LINE_COLOR, "kurtosis")
    fig.data[-1].line.dash = "dot"
    title = f"<span style='color:#d62728'>max |h|</span> and kurtosis (dotted), mean of {_n(s)}"
    _layout(fig, title, height, "layer", "value (log)")
    fig.update_yaxes(type="log", dtick=1)
    return fig


def suite_erasure_figure(s, height: int = 480) -> go.Figure:
    """Per row, the mean over positions 1… and prompts of the cosine with the token's own embedding and with the
    previous token's, each with its 10–90 % band over the prompts."""
    from ..anatomy.spread import spread

    fig = go.Figure()
    _band(fig, s.rows, spread(s.self_cos), ATTN_COLOR, "cos with its own token")
    _band(fig, s.rows, spread(s.prev_cos), MLP_COLOR, "cos with the previous token")
    title = (f"Token erasure (proxy), mean of {_n(s)}: <span style='color:{ATTN_COLOR}'>own token</span> and "
             f"<span style='color:{MLP_COLOR}'>previous token</span>")
    return _layout(fig, title, height, "layer", "cosine with the embedding")


def anatomy_suite_figures(s) -> list[go.Figure]:
    """Every chart of the suite view, in the page's order."""
    return [suite_norm_figure(s), suite_change_figure(s), suite_skip_figure(s), suite_cka_figure(s),
            suite_outlier_figure(s), suite_massive_figure(s), suite_erasure_figure(s)]
