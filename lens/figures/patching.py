"""The activation-patching heatmap: on the lens's axes (rows = layers, columns = positions), how much of
the clean answer each patched activation restores in the corrupted run."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible
from ..results import PatchResult

SITE_TITLES = {"resid": "residual stream", "attn": "attention output", "mlp": "MLP output", "head": "head output"}


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
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=50, b=10),
        title=dict(text=(f"Patching the {SITE_TITLES[result.site]} · {result.model} · {metric_text(result)}: "
                         f"clean {result.metric_clean:.2f}, corrupted {result.metric_corrupt:.2f}"), font=dict(size=14)),
        xaxis=dict(title=where, tickangle=-40, automargin=True),
        yaxis=dict(title="layer" if result.site != "resid" else "row (emb = the input of layer 1)", automargin=True),
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
