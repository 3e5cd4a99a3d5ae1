"""Attribution and circuits: the AtP estimate beside the real patching grid, their scatter, the circuit's component
graph (the route graph's look: layers upward, heads and MLPs across) and its faithfulness curve."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..circuits.results import AttributionResult, CircuitResult
from ..model.tokens import visible
from .attention import FONT
from .patching import SITE_TITLES, column_labels, row_label

LABELLED = 24  # more nodes than this: names in the hover only (they would overlap)
LOGITS_GAP = 2.5  # the logits this far above the last layer: their tick clear of its
POSITIVE, NEGATIVE = "rgba(47,109,181,0.8)", "rgba(192,57,43,0.8)"  # an edge that raises the metric, lowers it


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), height=height, font=FONT,
                      margin=dict(l=70, r=20, t=60, b=80), plot_bgcolor="white")
    return fig


def estimate_figure(r: AttributionResult, height: int = 560) -> go.Figure:
    """The estimate's grid, and the real one beside it when verified, on one colour scale."""
    grids = [("AtP estimate" + (" (QK fix)" if r.qk_fix else ""), r.estimate)]
    if r.verified:
        grids.append(("real patching", r.actual))
    x = column_labels(r)
    y = [row_label(l) for l in r.layers]
    span = max(1.0, max(float(np.nanmax(np.abs(g))) for _, g in grids))
    fig = make_subplots(rows=1, cols=len(grids), subplot_titles=[t for t, _ in grids], shared_yaxes=True,
                        horizontal_spacing=0.04)
    where = "head" if r.site == "head" else "position"
    for i, (title, g) in enumerate(grids):
        fig.add_trace(go.Heatmap(
            z=g.astype(float), x=x, y=y, colorscale="RdBu", zmid=0, zmin=-span, zmax=span, xgap=1, ygap=1,
            showscale=i == len(grids) - 1, colorbar=dict(title=dict(text="answer restored", side="right")),
            hovertemplate=f"{title}<br>row %{{y}} · {where} %{{x}}: %{{z:.2f}} of the gap<extra></extra>"),
            row=1, col=i + 1)
        fig.update_xaxes(title=where, tickangle=-40, automargin=True, row=1, col=i + 1)
    fig.update_yaxes(title="layer" if r.site != "resid" else "row", automargin=True, row=1, col=1)
    return _layout(fig, f"The {SITE_TITLES[r.site]}: estimated, and patched", height)


def scatter_figure(r: AttributionResult, height: int = 480) -> go.Figure:
    """Every cell: real patching across, the estimate up; the diagonal is perfect agreement."""
    if not r.verified:
        raise ValueError("the scatter needs the verified result (real patching beside the estimate)")
    C = r.estimate.shape[1]
    cols = column_labels(r)
    rows = np.repeat(np.arange(r.estimate.shape[0]), C)
    text = [f"row {row_label(r.layers[i // C])} · {cols[i % C]}" for i in range(r.estimate.size)]
    actual = np.abs(r.actual) if r.grad_drop else r.actual  # GradDrop estimates a size
    lo = float(min(actual.min(), r.estimate.min(), 0.0))
    hi = float(max(actual.max(), r.estimate.max(), 1.0))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#999", dash="dot"),
                             hoverinfo="skip", name="estimate = actual"))
    fig.add_trace(go.Scatter(
        x=actual.ravel(), y=r.estimate.ravel(), mode="markers", text=text, name="cells",
        marker=dict(size=7, color=rows, colorscale="Viridis", opacity=0.8,
                    colorbar=dict(title=dict(text="layer", side="right"))),
        hovertemplate="%{text}<br>actual %{x:.3f}<br>estimate %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="|real patching| (share of the gap)" if r.grad_drop else
                     "real patching (share of the gap restored)", zeroline=True, automargin=True)
    fig.update_yaxes(title="AtP estimate, GradDrop (size)" if r.grad_drop else "AtP estimate", zeroline=True,
                     automargin=True)
    fig.update_layout(showlegend=False)
    return _layout(fig, f"Pearson r = {r.correlation:.2f} over {r.estimate.size} cells", height)


def agreement_text(r: AttributionResult) -> str:
    """One sentence on how well the estimate agrees, and where it is furthest off."""
    if not r.verified:
        return "Not checked against real patching."
    worst = r.disagreements[0]
    real = "real size" if r.grad_drop else "real"
    return (f"Pearson r = {r.correlation:.3f} over every cell{' (GradDrop: sizes)' if r.grad_drop else ''}; "
            f"the furthest off is row {row_label(worst['layer'])} at {worst['column']}: estimate "
            f"{worst['estimate']:.2f}, {real} {worst['actual']:.2f}.")


def disagreement_rows(r: AttributionResult) -> list[dict]:
    return [{"row": row_label(d["layer"]), "column": d["column"], "estimate": round(d["estimate"], 3),
             "actual": round(d["actual"], 3), "gap": round(d["gap"], 3)} for d in r.disagreements]


# ---------------------------------------------------------------- circuits

def _place(name: str, H: int, L: int) -> tuple[float, float]:
    """(x, y) of a writer or reader: the embedding below, heads across each layer, its MLP at the right, logits on top."""
    if name == "emb":
        return (H / 2, 0.0)
    if name == "logits":
        return (H / 2, L + LOGITS_GAP)
    if ".h" in name:
        layer, head = name[1:].split(".h")
        return (float(head), float(layer))
    return (H + 0.8, float(name[1:]))


def node_label(name: str) -> str:
    """'L5.H3', 'MLP 5', 'emb', 'logits' for a writer's name; 'L5.H3 query', 'L5 KV1 keys', 'L5 values'… for a
    reader's."""
    if name.endswith((".q", ".k", ".v")):
        part = {"q": "query", "k": "keys", "v": "values"}[name[-1]]
        head = name[:-2]
        if ".kv" in head:
            layer, kv = head[1:].split(".kv")
            return f"L{layer} KV{kv} {part}"
        return f"{node_label(head)} {part}"
    if ".h" in name:
        layer, head = name[1:].split(".h")
        return f"L{layer}.H{head}"
    if name.startswith("m"):
        return f"MLP {name[1:]}"
    return name


def _reader_heads(reader: str, writers: set[str], H: int, KV: int) -> list[str]:
    """The heads in the circuit that read through ``reader``: a head's query, a key/value head's keys or values
    (every query head it serves), or a whole layer's attention (every head, they read one input)."""
    if reader.endswith(".q"):
        return [reader[:-2]] if reader[:-2] in writers else []
    if reader.endswith((".k", ".v")):
        layer, kv = reader[1:-2].split(".kv")
        group = H // max(1, KV)
        return [w for w in (f"a{layer}.h{h}" for h in range(int(kv) * group, (int(kv) + 1) * group)) if w in writers]
    return [w for w in writers if w.startswith(reader + ".h")]


def circuit_figure(c: CircuitResult, height: int = 620) -> go.Figure:
    """The kept edges, width by |score|, blue where the edge raises the metric and red where it lowers it; an edge
    into a head's query, keys or values ends at the heads that read them (into a layer's attention, where its heads
    share one input: at every head of that layer in the circuit)."""
    L = max(int(n[1:].split(".")[0]) for n in c.writers if n != "emb")
    H = sum(1 for n in c.writers if n.startswith("a1.h"))
    KV = sum(1 for n in c.readers if n.startswith("a1.kv") and n.endswith(".k"))
    writers = {c.writers[u] for u, _, _ in c.kept}
    top = max((abs(s) for _, _, s in c.kept), default=1.0) or 1.0
    fig = go.Figure()
    bins: dict[tuple[str, int], tuple[list, list]] = {}
    for u, v, s in c.kept:
        a = _place(c.writers[u], H, L)
        reader = c.readers[v]
        if reader.startswith("a"):
            layer = float(reader[1:].split(".")[0])
            ends = [_place(w, H, L) for w in _reader_heads(reader, writers, H, KV)] or [(H / 2, layer)]
        else:
            ends = [_place(reader, H, L)]
        xs, ys = bins.setdefault(("+" if s >= 0 else "−", min(6, int(6 * abs(s) / top))), ([], []))
        for b in ends:
            xs += [a[0], b[0], None]
            ys += [a[1], b[1], None]
    for (sign, wb), (xs, ys) in sorted(bins.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(color=POSITIVE if sign == "+" else NEGATIVE, width=1 + 1.2 * wb)))
    out = {}
    for u, v, s in c.kept:
        out.setdefault(c.writers[u], []).append(f"→ {node_label(c.readers[v])}: {s:+.3f}")
    names = sorted(writers, key=lambda n: _place(n, H, L)[::-1]) + ["logits"]
    xs, ys, hover, colour, labels = [], [], [], [], []
    for n in names:
        x, y = _place(n, H, L)
        xs.append(x)
        ys.append(y)
        labels.append(node_label(n) if len(names) <= LABELLED and ".h" in n else "")  # the axes name the rest
        lines = out.get(n, [])
        hover.append(f"<b>{node_label(n)}</b><br>" + "<br>".join(lines[:8]) + ("<br>…" if len(lines) > 8 else ""))
        colour.append("#555" if n in ("emb", "logits") else "#2f6db5" if ".h" in n else "#e07b39")
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", text=labels, textposition="middle right",
                             hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", showlegend=False,
                             cliponaxis=False, textfont=dict(size=11),
                             marker=dict(size=11, color=colour, line=dict(width=1, color="white"))))
    every = 1 if L <= 16 else 2 if L <= 32 else 4
    fig.update_yaxes(tickvals=[0] + [l for l in range(1, L + 1) if l % every == 0] + [L + LOGITS_GAP],
                     ticktext=["emb"] + [f"L{l}" for l in range(1, L + 1) if l % every == 0] + ["logits"],
                     range=[-0.8, L + LOGITS_GAP + 0.8], title="layer", showgrid=False, zeroline=False)
    fig.update_xaxes(tickvals=list(range(H)) + [H + 0.8], ticktext=[f"H{h}" for h in range(H)] + ["MLP"],
                     range=[-0.6, H + 2.2], title="head", showgrid=False, zeroline=False)
    title = f"First {c.edges} edges, {len(c.kept)} once pruned: {round(100 * c.faithfulness) + 0:.0f} % restored"
    return _layout(fig, title, height)


def faithfulness_figure(c: CircuitResult, height: int = 420) -> go.Figure:
    """Faithfulness of the top-n edges against n (log scale), the chosen n marked."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=c.curve_edges, y=c.curve_faithfulness, mode="lines+markers", name="top-n edges",
                             line=dict(color="#2f6db5"),
                             hovertemplate="top %{x} edges: %{y:.2f} of the gap<extra></extra>"))
    fig.add_trace(go.Scatter(x=[max(c.edges, 1)], y=[c.faithfulness], mode="markers", name="this circuit",
                             marker=dict(size=14, symbol="star", color="#c0392b"),
                             hovertemplate="top %{x} edges: %{y:.2f}<extra></extra>"))
    for y, dash in ((1.0, "dot"), (0.8, "dash")):
        fig.add_hline(y=y, line=dict(color="#999", dash=dash, width=1))
    fig.update_xaxes(type="log", title="edges kept (log scale)", automargin=True)
    fig.update_yaxes(title="faithfulness", automargin=True)
    fig.update_layout(showlegend=False)
    n80 = f"{c.edges_80} of {len(c.edge_score)} edges: 80 %" if c.edges_80 is not None else "none reach 80 %"
    return _layout(fig, f"Faithfulness ({n80})", height)


def circuit_text(c: CircuitResult) -> str:
    text = (f"The first {c.edges} of {len(c.edge_score)} edges ({len(c.kept)} once pruned) give "
            f"{metric_name_text(c)} {c.metric_circuit:.2f} (clean {c.metric_clean:.2f}, corrupted "
            f"{c.metric_corrupt:.2f}): faithfulness {c.faithfulness:.2f}.")
    if not c.kept:
        text += (" None of them joins the input to the logits, so the circuit is the corrupted run: keep more edges"
                 + (f" ({c.edges_80} restore 80 %)" if c.edges_80 else "") + " or rank by largest |score|.")
    return text


def metric_name_text(c) -> str:
    return f"log p({visible(c.target)})" if c.foil is None else f"logit({visible(c.target)}) − logit({visible(c.foil)})"
