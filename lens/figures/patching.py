"""The activation-patching heatmap: on the lens's axes (rows = layers, columns = positions), how much of
the clean answer each patched activation restores in the corrupted run."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible
from ..results import PatchResult

SITE_TITLES = {"resid": "residual stream", "attn": "attention output", "mlp": "MLP output", "head": "head output"}
# The grid's rows, said under it (the axis title alone is short enough to stay whole on a slide).
ROWS_NOTE = "Rows: emb is the input of layer 1, Ln the output of layer n."
LABEL_SPACING = 1.6  # row labels at least this many font sizes apart
ROTATED_TOKENS = 150  # px under a heatmap: its rotated token labels and the axis title


def row_label(label: str) -> str:
    return "emb" if label == "emb" else f"L{label}"


def column_labels(result: PatchResult) -> list[str]:
    """'p·token' per position; where the prompts differ, 'clean→corrupted'."""
    if result.site == "head":
        return list(result.columns)
    out = []
    for p, (a, b) in enumerate(zip(result.tokens, result.corrupt_tokens)):
        out.append(f"{p}·{visible(a)}" if a == b else f"{p}·{visible(a)}→{visible(b)}")
    return out


def metric_text(result: PatchResult) -> str:
    if result.foil is None:
        return f"log p({visible(result.target)})"
    return f"logit({visible(result.target)}) − logit({visible(result.foil)})"


def patch_figure(result: PatchResult, height: int = 560) -> go.Figure:
    z = result.patch.astype(float)
    x = column_labels(result)
    span = max(1.0, float(np.nanmax(np.abs(z)))) if z.size else 1.0
    where = "head" if result.site == "head" else "position"
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=[row_label(l) for l in result.layers], colorscale="RdBu", zmid=0, zmin=-span, zmax=span,
        customdata=result.raw, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="answer restored", side="right")),
        hovertemplate=(f"row %{{y}} · {where} %{{x}}<br>restores %{{z:.2f}} of the gap"
                       f"<br>{result.metric_name} after the patch: %{{customdata:.3f}}<extra></extra>"),
    ))
    if result.site == "resid":
        # Plotly heatmaps send no click selections to Streamlit: an invisible marker on every cell does, and
        # carries the hover text (the heatmap's own hover is switched off to leave it to them).
        rows, cols = np.meshgrid(np.arange(z.shape[0]), np.arange(z.shape[1]), indexing="ij")
        ys = [row_label(l) for l in result.layers]
        fig.data[0].hoverinfo = "skip"
        fig.data[0].hovertemplate = None
        fig.add_scatter(
            x=[x[c] for c in cols.ravel()], y=[ys[r] for r in rows.ravel()], mode="markers",
            marker=dict(size=14, symbol="square", color="rgba(0,0,0,0)", line=dict(width=0)), showlegend=False,
            customdata=np.stack([rows.ravel(), cols.ravel(), z.ravel(), result.raw.ravel()], 1),
            hovertemplate=(f"row %{{y}} · {where} %{{x}}<br>restores %{{customdata[2]:.2f}} of the gap"
                           f"<br>{result.metric_name} after the patch: %{{customdata[3]:.3f}}"
                           "<br><i>click: patch this cell alone</i><extra></extra>"),
            selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)))
        fig.update_layout(clickmode="event+select")
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=50, b=10),
        title=dict(text=(f"Patching the {SITE_TITLES[result.site]} · {result.model} · {metric_text(result)}: "
                         f"clean {result.metric_clean:.2f}, corrupted {result.metric_corrupt:.2f}"), font=dict(size=14)),
        xaxis=dict(title=where, tickangle=-40, automargin=True),
        yaxis=dict(title="layer" if result.site != "resid" else "row", automargin=True),
    )
    return fig


def reading(result: PatchResult) -> str:
    """One or two sentences on where the answer is restored, from the numbers."""
    z = result.patch
    if result.site == "resid" and z.shape[1] > 1:
        # The last row at the last position is the clean answer itself (1): say where else it is carried.
        r, c = np.unravel_index(int(np.nanargmax(z[:, :-1])), z[:, :-1].shape)
        last = np.nonzero(z[:, -1] >= 0.5)[0]
        late = (f" At the last position, patching restores more than half of it from row {row_label(result.layers[last[0]])} on."
                if len(last) else "")
        return (f"Before the last position, the strongest cell is row {row_label(result.layers[r])} at position {c} "
                f"({visible(result.tokens[c])} → {visible(result.corrupt_tokens[c])}), restoring {z[r, c]:.0%} of the "
                f"gap between the corrupted ({result.metric_corrupt:.2f}) and the clean ({result.metric_clean:.2f}) "
                f"{result.metric_name}.{late}")
    r, c = np.unravel_index(int(np.nanargmax(z)), z.shape)
    where = result.columns[c] if result.site == "head" else f"position {c} ({visible(result.corrupt_tokens[c])})"
    return (f"The largest effect: layer {row_label(result.layers[r])}, {where}, restoring {z[r, c]:.0%} of the gap between "
            f"the corrupted ({result.metric_corrupt:.2f}) and the clean ({result.metric_clean:.2f}) {result.metric_name}.")


def lens_rows_figure(result: PatchResult, height: int = 300) -> go.Figure:
    """The metric the logit lens reads at the last position, layer by layer, for both prompts."""
    x = [row_label(str(l)) if l else "emb" for l in range(len(result.lens_clean))]
    fig = go.Figure()
    fig.add_scatter(x=x, y=result.lens_clean, name="clean prompt", mode="lines+markers", line=dict(color="#2f6db5"))
    fig.add_scatter(x=x, y=result.lens_corrupt, name="corrupted prompt", mode="lines+markers",
                    line=dict(color="#c0392b"))
    fig.add_scatter(x=x, y=np.asarray(result.lens_clean) - np.asarray(result.lens_corrupt), name="difference",
                    mode="lines", line=dict(color="#777", dash="dot"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), hovermode="x unified",
                      title=dict(text=f"What the logit lens reads at the last position: {metric_text(result)}",
                                 font=dict(size=14)),
                      xaxis=dict(title="row", automargin=True), yaxis=dict(title=result.metric_name, automargin=True),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def readable_rows(fig: go.Figure, height: int, font: int = 12) -> go.Figure:
    """``fig`` (a lens heatmap, rows from emb up) ``height`` px tall, with a label on every k-th row only, so
    that labels of ``font`` px stand LABEL_SPACING font sizes apart (counted from the top row, always labelled)."""
    fig.update_layout(height=height)
    y = list(fig.data[0].y)
    margin = fig.layout.margin
    room = height - (margin.t or 80) - max(margin.b or 80, ROTATED_TOKENS)
    k = max(1, -(-len(y) * font * LABEL_SPACING // max(1, room)))
    shown = y[::-1][::int(k)][::-1]
    fig.update_yaxes(tickmode="array", tickvals=shown, ticktext=shown)
    return fig


def reach_figure(lens, row: int, position: int, height: int = 480, stride: int = 1) -> go.Figure:
    """The corrupted prompt's lens after a one-cell patch, with the cells the patch can reach outlined:
    its own row and every later one, at its position and every later one (a decoder reads only back).
    ``stride``: every stride-th row (and the last); the outline then starts at the first row shown at or
    above the patched one, whose star is drawn only when it is shown."""
    from .logit_lens import logit_lens_figure, strided_rows

    fig = readable_rows(logit_lens_figure(lens, stride=stride), height)
    shown = strided_rows(len(lens.layers), stride)
    first = next(i for i, r in enumerate(shown) if r >= row)
    n_rows, n_cols = len(shown), len(lens.positions)
    fig.add_shape(type="rect", xref="x", yref="y", x0=position - 0.5, x1=n_cols - 0.5, y0=first - 0.5,
                  y1=n_rows - 0.5, line=dict(color="#d35400", width=3), fillcolor="rgba(0,0,0,0)")
    if shown[first] == row:
        fig.add_annotation(x=position, y=first, xref="x", yref="y", text="★", showarrow=False,
                           font=dict(size=18, color="#d35400"))
    fig.update_layout(title=dict(
        text=f"The corrupted prompt, with row {row_label(str(row)) if row else 'emb'} at position {position} "
             "from the clean run", font=dict(size=14)))
    return fig


def comparison_figure(c, height: int = 480) -> go.Figure:
    """KL between the two models' lens distributions at every cell; each cell names the top-1 token, or
    both when the models disagree."""
    text = [[a if same else f"{a}|{b}" for a, b, same in zip(ra, rb, rs)]
            for ra, rb, rs in zip(c.top1_a, c.top1_b, c.agree.tolist())]
    text = [[visible(t)[:14] for t in row] for row in text]
    x = [f"{i}·{visible(t)}" for i, t in enumerate(c.tokens)]
    fig = go.Figure(go.Heatmap(
        z=c.kl.astype(float), x=x, y=[row_label(l) for l in c.layers], text=text, texttemplate="%{text}",
        textfont=dict(size=9), colorscale="Purples", zmin=0, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="KL (nats)", side="right")),
        hovertemplate="row %{y} · %{x}<br>top-1: %{text}<br>KL = %{z:.3f} nats<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"KL({c.model_a} ‖ {c.model_b}) per cell · top-1 tokens, a|b where they "
                                      "differ", font=dict(size=14)),
                      xaxis=dict(tickangle=-40, automargin=True), yaxis=dict(automargin=True))
    return fig


def clicked_cell(points: list[dict]) -> tuple[int, int] | None:
    """(row, position) of a patching-grid cell from a plotly selection's points (``patch_figure``'s markers)."""
    from .style import point_customdata

    for pt in points or []:
        cd = point_customdata(pt)
        if cd is not None and len(cd) == 4:
            return int(cd[0]), int(cd[1])
    return None


def noise_figure(result, height: int = 560) -> go.Figure:
    """Causal tracing with noise: rows × positions, how much of the gap between the clean and the noised run
    one restored activation closes; the noised tokens marked with ✱ under the columns."""
    z = result.patch.astype(float)
    span = max(1.0, float(np.nanmax(np.abs(z)))) if z.size else 1.0
    x = [f"{p}·{visible(t)}{' ✱' if p in result.subject else ''}" for p, t in enumerate(result.tokens)]
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=[row_label(l) for l in result.layers], colorscale="RdBu", zmid=0, zmin=-span, zmax=span,
        customdata=result.raw, xgap=1, ygap=1, colorbar=dict(title=dict(text="answer restored", side="right")),
        hovertemplate=(f"row %{{y}} · position %{{x}}<br>restores %{{z:.2f}} of the gap<br>{result.metric_name}, "
                       f"mean of {result.samples} noise samples: %{{customdata:.3f}}<extra></extra>")))
    what = {"resid": "the residual stream", "attn": "attention outputs", "mlp": "MLP outputs"}[result.site]
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=50, b=10),
        title=dict(text=(f"Restoring {what} after noise on ✱ · {result.model} · {result.metric_name}: clean "
                         f"{result.metric_clean:.2f}, noised {result.metric_noised:.2f}"), font=dict(size=14)),
        xaxis=dict(title="position", tickangle=-40, automargin=True, type="category"),
        yaxis=dict(title="layer" if result.site != "resid" else "row", automargin=True),
    )
    return fig


def noise_reading(result) -> str:
    """One sentence on where restoring helps most, from the numbers."""
    r, p = np.unravel_index(int(np.nanargmax(result.patch)), result.patch.shape)
    return (f"Restoring {row_label(result.layers[r])} at position {p} (“{visible(result.tokens[p])}”) brings back "
            f"{result.patch[r, p]:.0%} of the gap the noise opened.")
