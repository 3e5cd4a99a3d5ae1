"""Figures for the projection page: token trajectories, a layer-by-layer animation,
geometry metrics over depth and the layer × layer similarity matrix."""
from __future__ import annotations

import colorsys
import hashlib

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible, word_key
from .labels import labelled
from ..results import EXPLANATIONS, GeometryResult, ProjectionResult

FONT = dict(family="Inter, Helvetica, Arial, sans-serif")
COLOR_BY = {
    "layer": "layer (depth)",
    "position": "position in the text",
    "token": "token (same word, same colour)",
    "norm": "vector norm (log10)",
    "text": "text (corpus mode)",
}
MAX_LABELS = 60  # tokens named next to their points above this many, hover only
MAX_FRAME_LABELS = 24  # the same in one layer's frame, where all the tokens share a small patch of the plot
TRAJECTORY_HEIGHT = 620
PLOT_WIDTH = 976  # px: a chart's plot area across the page at 1600 px (the slide look places labels again)
SENSE_COLOURS = ["#e31a1c", "#000000", "#ff7f00", "#6a3d9a"]  # one per sense: red, black, orange, purple
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#bcbd22", "#7f7f7f"]


def _short(token: str, width: int = 12) -> str:
    s = visible(token)
    return s if len(s) <= width else s[: width - 1] + "…"


def _label(token: str, width: int = 12) -> str:
    """A token as a label on the chart: surrounding spaces dropped (the hover shows them)."""
    s = token.strip()
    return _short(s if s else token, width)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _row_label(label: str) -> str:
    return "emb" if label == "emb" else f"L{label}"


def token_colour(token: str) -> str:
    """A stable colour per word (by the word-matching rule), from a hash of the word."""
    h = int(hashlib.md5(word_key(token).encode("utf-8")).hexdigest()[:8], 16)
    r, g, b = colorsys.hls_to_rgb((h % 360) / 360.0, 0.45, 0.7)
    return f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})"


def _colours(result: ProjectionResult, rows: list[int], color_by: str) -> tuple[object, dict]:
    """Marker colour values for rows × points (row-major) and the marker settings that go with them."""
    N = len(result.tokens)
    if color_by == "layer":
        values = np.repeat(np.asarray(rows, float), N)
        ticks = rows if len(rows) <= 12 else rows[:: max(1, len(rows) // 8)]
        return values, dict(colorscale="Viridis", cmin=min(rows), cmax=max(rows) if len(rows) > 1 else min(rows) + 1,
                            colorbar=dict(title=dict(text="layer", side="right"), tickvals=ticks,
                                          ticktext=[_row_label(result.layers[r]) for r in ticks]))
    if color_by == "position":
        values = np.tile(np.asarray(result.positions, float), len(rows))
        return values, dict(colorscale="Plasma", colorbar=dict(title=dict(text="position", side="right")))
    if color_by == "norm":
        values = np.log10(np.maximum(result.norms[rows].reshape(-1), 1e-6))
        return values, dict(colorscale="Cividis", colorbar=dict(title=dict(text="log10 ‖h‖", side="right")))
    if color_by == "text":
        cols = [_PALETTE[k % len(_PALETTE)] for k in result.text_index]
        return cols * len(rows), {}
    if color_by == "token":
        cols = [token_colour(t) for t in result.tokens]
        return cols * len(rows), {}
    raise ValueError(f"unknown colouring {color_by!r}; choose from {', '.join(COLOR_BY)}")


def _hover(result: ProjectionResult, rows: list[int]) -> list[str]:
    out = []
    corpus = result.n_texts > 1
    for r in rows:
        for i, tok in enumerate(result.tokens):
            where = f"text {result.text_index[i] + 1}, position {result.positions[i]}" if corpus \
                else f"position {result.positions[i]}"
            out.append(f"<b>{visible(tok)}</b> · layer {_row_label(result.layers[r])}<br>{where}<br>"
                       f"‖h‖ = {result.norms[r, i]:.1f}")
    return out


def _title(result: ProjectionResult, what: str) -> str:
    method = result.method.upper()
    n = len(result.tokens)
    src = f"{result.n_texts} texts" if result.n_texts > 1 else "prompt"
    return f"{what} · {result.model} · {method} of {n} tokens ({src}) × {len(result.layers)} layers"


def _axis_names(result: ProjectionResult, row: int | None = None) -> list[str]:
    k = result.coords.shape[-1]
    if result.method == "pca":
        ex = result.explained[row if row is not None else 0]
        return [f"PC{i + 1} ({ex[i]:.0%} of variance)" for i in range(k)]
    return [f"UMAP {i + 1}" for i in range(k)]


def trajectory_figure(result: ProjectionResult, color_by: str = "layer", rows: list[int] | None = None,
                      labels: bool | None = None, highlight: list[int] | None = None,
                      sentences: list[str] | None = None, senses: list[str] | None = None) -> go.Figure:
    """Every kept token at every row in one shared projection; a grey line follows each token through depth.

    ``highlight``: indices of tokens (e.g. one word's occurrences) whose paths are drawn boldly and named;
    the other tokens are then faded and unnamed. ``sentences`` (a corpus's texts): each bold path is named
    in the legend by its sentence, instead of labels at its end that would pile up where the paths meet.
    ``senses`` (one per sentence, e.g. "river", "money"): the bold paths take one colour per sense and the
    legend names the senses. What the marks mean is said by ``trajectory_caption`` (beside the chart: a
    note inside it collided with the axis title once the type grew for slides).
    """
    R, N, k = result.coords.shape
    rows = list(range(R)) if rows is None else list(rows)
    pts = result.coords[rows]  # [r, N, k]
    highlight = sorted(set(highlight or []))
    labels = (N <= MAX_LABELS or bool(highlight)) if labels is None else labels
    # Paths: one polyline per token, separated by gaps.
    path = np.full(((len(rows) + 1) * N, k), np.nan)
    for i in range(N):
        path[i * (len(rows) + 1): i * (len(rows) + 1) + len(rows)] = pts[:, i]
    flat = pts.reshape(-1, k)
    colour, marker_extra = _colours(result, rows, color_by)
    marker = dict(color=colour, size=6 if len(flat) > 1500 else 8, opacity=0.35 if highlight else 0.85,
                  line=dict(width=0), **marker_extra)
    hover = _hover(result, rows)
    last = pts[-1]
    texts = [_label(t) for t in result.tokens]
    legend = bool(highlight) and sentences is not None and result.n_texts > 1
    by_sense = legend and senses is not None and len(senses) == result.n_texts
    colours = [_PALETTE[j % len(_PALETTE)] for j in range(len(highlight))]
    shown_in_legend = [legend] * len(highlight)
    if highlight:  # only the highlighted tokens are named, with their text number in a corpus
        last = last[highlight]
        texts = [texts[i] + (f" ({result.text_index[i] + 1})" if result.n_texts > 1 else "") for i in highlight]
        if legend:
            names = [f"{texts[j]}: {_clip(sentences[result.text_index[i]], 32)}" for j, i in enumerate(highlight)]
            labels = False
        if by_sense:  # one colour and one legend entry per sense, naming its sentences
            order = list(dict.fromkeys(senses))
            of = [senses[result.text_index[i]] for i in highlight]
            colours = [SENSE_COLOURS[order.index(v) % len(SENSE_COLOURS)] for v in of]
            first = {v: of.index(v) for v in order if v in of}
            shown_in_legend = [first[v] == j for j, v in enumerate(of)]
            names = [f"“{_label(result.tokens[highlight[j]])}”, {v}: sentences "
                     f"{', '.join(str(k + 1) for k, x in enumerate(senses) if x == v)}" for j, v in enumerate(of)]
    if k == 2:
        traces = [
            go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines", line=dict(color="rgba(120,120,120,0.35)", width=1),
                       hoverinfo="skip", showlegend=False, name="paths"),
            go.Scatter(x=flat[:, 0], y=flat[:, 1], mode="markers", marker=marker, hovertext=hover,
                       hovertemplate="%{hovertext}<extra></extra>", showlegend=False, name="tokens"),
        ]
        for j, i in enumerate(highlight):
            traces.append(go.Scatter(x=pts[:, i, 0], y=pts[:, i, 1], mode="lines+markers",
                                     name=names[j] if legend else texts[j],
                                     legendgroup=names[j] if by_sense else None,
                                     line=dict(color=colours[j], width=3), marker=dict(size=7, color=colours[j]),
                                     hovertext=[hover[r * N + i] for r in range(len(rows))],
                                     hovertemplate="%{hovertext}<extra></extra>", showlegend=shown_in_legend[j]))
        if labels:
            # Each label beside its point where it covers no other (tokens that end close together: "France",
            # "capital" on one another once); the axes span every point drawn.
            spans = [(float(np.nanmin(flat[:, d])), float(np.nanmax(flat[:, d]))) for d in range(2)]
            ranges = [(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) for lo, hi in spans]
            traces.append(go.Scatter(x=last[:, 0], y=last[:, 1], mode="text",
                                     **labelled(texts, last[:, 0], last[:, 1], *ranges,
                                                (PLOT_WIDTH, TRAJECTORY_HEIGHT - 110), 13),
                                     textfont=dict(size=13, color="#222"), hoverinfo="skip", showlegend=False,
                                     name="labels"))
    else:
        traces = [
            go.Scatter3d(x=path[:, 0], y=path[:, 1], z=path[:, 2], mode="lines",
                         line=dict(color="rgba(120,120,120,0.35)", width=2), hoverinfo="skip", showlegend=False),
            go.Scatter3d(x=flat[:, 0], y=flat[:, 1], z=flat[:, 2], mode="markers",
                         marker=dict(marker, size=3 if len(flat) > 1500 else 4), hovertext=hover,
                         hovertemplate="%{hovertext}<extra></extra>", showlegend=False),
        ]
        for j, i in enumerate(highlight):
            traces.append(go.Scatter3d(x=pts[:, i, 0], y=pts[:, i, 1], z=pts[:, i, 2], mode="lines+markers",
                                       name=names[j] if legend else texts[j],
                                       legendgroup=names[j] if by_sense else None,
                                       line=dict(color=colours[j], width=6), marker=dict(size=3, color=colours[j]),
                                       hovertext=[hover[r * N + i] for r in range(len(rows))],
                                       hovertemplate="%{hovertext}<extra></extra>",
                                       showlegend=shown_in_legend[j] and by_sense))
        if labels:
            traces.append(go.Scatter3d(x=last[:, 0], y=last[:, 1], z=last[:, 2], mode="text", text=texts,
                                       textfont=dict(size=12, color="#222"), hoverinfo="skip", showlegend=False))
    fig = go.Figure(traces)
    if by_sense:  # a few short entries: in one row under the chart, where they hide no path
        fig.update_layout(legend=dict(title=dict(text=""), orientation="h", xref="container", x=0.01,
                                      xanchor="left", yref="container", y=0.01, yanchor="bottom"))
    elif legend:
        fig.update_layout(legend=dict(title=dict(text="bold paths, by sentence"), orientation="v", x=1.02, y=1,
                                      bgcolor="rgba(255,255,255,0.85)"))
    names = _axis_names(result)
    first, final = _row_label(result.layers[rows[0]]), _row_label(result.layers[rows[-1]])
    fig.update_layout(
        title=dict(text=_title(result, f"Token trajectories {first}→{final}"), x=0.01, font=dict(size=15)),
        height=TRAJECTORY_HEIGHT, margin=dict(l=40, r=20, t=50, b=60), font=FONT, plot_bgcolor="white",
    )
    if k == 2:
        fig.update_xaxes(title=names[0], zeroline=False, gridcolor="#eee")
        fig.update_yaxes(title=names[1], zeroline=False, gridcolor="#eee")
    else:
        fig.update_layout(scene=dict(xaxis_title=names[0], yaxis_title=names[1], zaxis_title=names[2]))
    return fig


def trajectory_caption(result: ProjectionResult, color_by: str = "layer", rows: list[int] | None = None,
                       highlight: list[int] | None = None, legend: bool = False, senses: bool = False) -> str:
    """What the marks of ``trajectory_figure`` mean, in one line (said beside the chart)."""
    final = _row_label(result.layers[(list(rows) if rows is not None else [len(result.layers) - 1])[-1]])
    if highlight and senses:
        marks = "bold paths: the followed word, one colour per sense (legend)"
    elif highlight and legend:
        marks = "bold paths: the followed word, one per sentence (legend)"
    elif highlight:
        marks = f"bold paths: the followed word, named at {final}"
    else:
        marks = f"labels mark each token at {final} (one that would cover another is left to the hover)"
    return f"{marks}; dots coloured by {COLOR_BY[color_by]}"


def aligned_figure(result: ProjectionResult, color_by: str = "position", labels: bool | None = None,
                   start: int | None = None, height: int = 640) -> go.Figure:
    """One frame per layer (Procrustes-aligned PCA), with a play button and a layer slider under the x axis
    (placed in px from the plot's bottom edge, clear of the axis's labels even at slide size)."""
    R, N, k = result.coords.shape
    labels = N <= MAX_FRAME_LABELS if labels is None else labels
    c = result.coords
    lo, hi = np.nanmin(c, axis=(0, 1)), np.nanmax(c, axis=(0, 1))
    pad = 0.08 * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    start = R - 1 if start is None else int(start)
    texts = [_label(t) for t in result.tokens]

    def frame_data(r: int):
        colour, extra = _colours(result, [r], color_by)
        if color_by == "layer":  # one scale for every frame, its ticks over all the layers
            extra = dict(_colours(result, list(range(R)), "layer")[1], cmin=0, cmax=R - 1)
        marker = dict(color=colour, size=11, opacity=0.9, line=dict(width=0.5, color="white"), **extra)
        hover = _hover(result, [r])
        mode = "markers+text" if labels else "markers"
        if k == 2:
            named = labelled(texts, c[r, :, 0], c[r, :, 1], (lo[0], hi[0]), (lo[1], hi[1]),
                             (PLOT_WIDTH, height - 50 - BELOW), 13) if labels else {}
            return [go.Scatter(x=c[r, :, 0], y=c[r, :, 1], mode=mode, marker=marker, **named,
                               textfont=dict(size=13), hovertext=hover,
                               hovertemplate="%{hovertext}<extra></extra>", showlegend=False)]
        return [go.Scatter3d(x=c[r, :, 0], y=c[r, :, 1], z=c[r, :, 2], mode=mode, marker=dict(marker, size=5),
                             text=texts if labels else None, hovertext=hover,
                             hovertemplate="%{hovertext}<extra></extra>", showlegend=False)]

    names = [f"aligned PC{i + 1}" for i in range(k)]
    # Under the plot: the x axis's ticks and title (AXIS_ROOM px at slide size), then the buttons and the slider.
    under = (AXIS_ROOM if k == 2 else 10) / max(1.0, height - 50 - BELOW)
    frames = [go.Frame(data=frame_data(r), name=result.layers[r],
                       layout=dict(title=dict(text=_title(result, f"Layer {_row_label(result.layers[r])}")
                                              + f" · PC1+PC2 {result.explained[r, :2].sum():.0%} of variance")))
              for r in range(R)]
    fig = go.Figure(data=frame_data(start), frames=frames)
    steps = [dict(method="animate", label=_row_label(result.layers[r]),
                  args=[[result.layers[r]], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                 transition=dict(duration=0))]) for r in range(R)]
    fig.update_layout(
        title=dict(text=frames[start].layout.title.text, x=0.01, font=dict(size=15)),
        height=height, margin=dict(l=40, r=20, t=50, b=BELOW), font=FONT, plot_bgcolor="white",
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-under, xanchor="left", yanchor="top",
                          showactive=False, buttons=[
                              dict(label="▶ play", method="animate",
                                   args=[None, dict(frame=dict(duration=450, redraw=True), fromcurrent=True,
                                                    transition=dict(duration=250))]),
                              dict(label="❚❚ pause", method="animate",
                                   args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))]),
                          ])],
        sliders=[dict(active=start, steps=steps, x=0.22, len=0.78, y=-under, yanchor="top",
                      currentvalue=dict(prefix="layer ", font=dict(size=14)), pad=dict(t=10))],
    )
    if k == 2:
        fig.update_xaxes(title=names[0], range=[lo[0], hi[0]], zeroline=False, gridcolor="#eee")
        fig.update_yaxes(title=names[1], range=[lo[1], hi[1]], zeroline=False, gridcolor="#eee")
    else:
        fig.update_layout(scene=dict(xaxis=dict(title=names[0], range=[lo[0], hi[0]]),
                                     yaxis=dict(title=names[1], range=[lo[1], hi[1]]),
                                     zaxis=dict(title=names[2], range=[lo[2], hi[2]]), aspectmode="cube"))
    return fig


AXIS_ROOM, BELOW = 80, 200  # px under an animation's plot: its x axis; and the margin for axis, buttons, slider


# ---------------------------------------------------------------- geometry

LEGEND = dict(x=0.99, xanchor="right", y=0.99, yanchor="top", bgcolor="rgba(255,255,255,0.8)", font=dict(size=11))
LINE_METRICS = ["anisotropy", "intra_similarity", "self_similarity", "word_mev", "pc1_share", "prompt_entropy",
                "curvature", "norm_mean", "norm_ratio"]


def metric_figure(result: GeometryResult, key: str, height: int = 280) -> go.Figure | None:
    """One metric over depth; None when the result has no values for it (a word metric without a word)."""
    values = np.asarray(getattr(result, key), float)
    if values.size == 0:
        return None
    title, _ = EXPLANATIONS[key]
    x = [_row_label(label) for label in result.layers]
    fig = go.Figure(go.Scatter(x=x, y=values, mode="lines+markers", line=dict(color="#2f6db5", width=2.5),
                               marker=dict(size=6), name=title,
                               hovertemplate="layer %{x}: %{y:.3f}<extra></extra>"))
    if key == "norm_mean":
        fig.add_trace(go.Scatter(x=x, y=result.first_token_norm, mode="lines", name="first token",
                                 line=dict(color="#d62728", dash="dash"),
                                 hovertemplate="first token, layer %{x}: %{y:.1f}<extra></extra>"))
        fig.update_yaxes(type="log", title="‖h‖ (log scale)", dtick="D2")  # 1, 2, 5 a decade: all 9 ran together
        fig.update_layout(showlegend=True, legend=LEGEND)
    if key == "self_similarity" and result.word:
        title = f"{title}: “{result.word}”"
        fig.add_trace(go.Scatter(x=x, y=result.self_similarity_raw, mode="lines", name="raw (not adjusted)",
                                 line=dict(color="#999", dash="dot"),
                                 hovertemplate="raw, layer %{x}: %{y:.3f}<extra></extra>"))
        fig.update_layout(showlegend=True, legend=LEGEND)
    if key == "word_mev" and result.word:
        title = f"{title}: “{result.word}”"
    if key in ("intra_similarity", "self_similarity"):
        fig.add_hline(y=0, line=dict(color="#bbb", width=1))
    if key == "norm_ratio":
        fig.add_hline(y=1, line=dict(color="#bbb", width=1))
        fig.update_yaxes(type="log", title="ratio (log scale)", dtick="D2")
    if key == "curvature":
        fig.add_hline(y=90, line=dict(color="#bbb", width=1, dash="dot"))
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), height=height, font=FONT,
                      margin=dict(l=50, r=10, t=40, b=40), plot_bgcolor="white")
    fig.update_xaxes(type="category", title="layer", gridcolor="#eee",
                     tickvals=x if len(x) <= 16 else x[:: max(1, len(x) // 10)])
    fig.update_yaxes(gridcolor="#eee")
    return fig


def layer_similarity_figure(result: GeometryResult) -> go.Figure:
    S = np.asarray(result.layer_similarity, float)
    x = [_row_label(label) for label in result.layers]
    fig = go.Figure(go.Heatmap(z=S, x=x, y=x, colorscale="Viridis", zmin=min(0.0, float(np.nanmin(S))), zmax=1.0,
                               colorbar=dict(title=dict(text="mean cosine", side="right")),
                               hovertemplate="layers %{y} and %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=EXPLANATIONS["layer_similarity"][0], x=0.01, font=dict(size=14)),
                      height=520, font=FONT, margin=dict(l=50, r=10, t=40, b=40))
    fig.update_xaxes(type="category", title="layer")
    fig.update_yaxes(type="category", title="layer", autorange="reversed", scaleanchor="x")
    return fig


def sense_figure(s) -> go.Figure:
    """Within-sense and across-sense similarity of one word over depth (``s``: a lens.senses.SenseSimilarity)."""
    x = [_row_label(label) for label in s.layers]
    fig = go.Figure([
        go.Scatter(x=x, y=s.within, mode="lines+markers", name=f"same sense ({s.pairs_within} pairs)",
                   line=dict(color="#2f6db5", width=3), marker=dict(size=6),
                   hovertemplate="same sense, layer %{x}: %{y:.3f}<extra></extra>"),
        go.Scatter(x=x, y=s.across, mode="lines+markers", name=f"different senses ({s.pairs_across} pairs)",
                   line=dict(color="#d62728", width=3, dash="dash"), marker=dict(size=6),
                   hovertemplate="different senses, layer %{x}: %{y:.3f}<extra></extra>"),
    ])
    fig.update_layout(title=dict(text=f"Cosine between two “{s.word}”s", x=0.01, font=dict(size=14)), height=360,
                      font=FONT, margin=dict(l=50, r=10, t=40, b=40), plot_bgcolor="white", showlegend=True,
                      legend=dict(x=0.01, xanchor="left", y=0.01, yanchor="bottom", bgcolor="rgba(255,255,255,0.85)"))
    fig.update_xaxes(type="category", title="layer", gridcolor="#eee",
                     tickvals=x if len(x) <= 16 else x[:: max(1, len(x) // 10)])
    fig.update_yaxes(title="mean cosine", gridcolor="#eee")
    return fig
