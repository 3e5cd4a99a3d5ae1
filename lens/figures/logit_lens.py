"""The logit-lens heatmap: layers × positions, the top-1 token written in each cell."""
from __future__ import annotations

import math
from html import escape
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible
from ..results import LogitLensResult

MAX_CELL_TEXT_COLUMNS = 48  # wider windows get hover-only cells: their text could not be read
# Cell text width and size by the number of columns, so that neighbours do not overlap at ~1200 px.
CELL_TEXT = ((24, 7, 11), (36, 5, 9), (MAX_CELL_TEXT_COLUMNS, 3, 8))  # (up to n columns, characters, px)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # short: it is also the value shown in the page's URL
    help: str
    colorscale: str  # sequential: darker always means more (or, for the rank, closer to the top)
    log: bool = False  # colour by log10 of the value
    unit: str = ""

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("probability", "top-1 probability", "How sure the layer is of its top-1 token.", "Blues"),
    Metric("entropy", "entropy", "Spread of the layer's distribution: 0 = one token, high = unsure.", "Viridis",
           unit="nats"),
    Metric("kl", "KL to final", "How far the layer's distribution is from the model's final one.", "OrRd",
           unit="nats"),
    Metric("target_prob", "target probability", "Probability the layer gives the target token.", "Greens"),
    Metric("target_rank", "target rank", "Rank of the target token (1 = top); colour on a log scale.", "Greens_r",
           log=True, unit="log scale"),
)}


def metric_values(result: LogitLensResult, key: str) -> np.ndarray:
    if key == "probability":
        return result.top_probs[:, :, 0]
    if key == "entropy":
        return result.entropy
    if key == "kl":
        return result.kl_to_final
    if key == "target_prob":
        return result.target_prob
    if key == "target_rank":
        return result.target_rank.astype(np.float64)
    raise ValueError(f"unknown metric {key!r}; choose from {', '.join(METRICS)}")


def strided_rows(n_rows: int, stride: int) -> list[int]:
    """Every ``stride``-th row from the embeddings up, always keeping the final layer."""
    stride = max(1, int(stride))
    rows = list(range(0, n_rows, stride))
    if rows[-1] != n_rows - 1:
        rows.append(n_rows - 1)
    return rows


def heatmap_height(n_rows: int) -> int:
    """The heatmap's height in px for ``n_rows`` rows (normal mode; presenter mode fits the screen instead)."""
    return max(360, 22 * n_rows + 140)


EXIT_TITLE = " · <span style='color:#e4572e'>▁</span> final answer from here up"


def stride_to_fit(n_rows: int, max_rows: int) -> int:
    """The smallest layer stride that shows at most ``max_rows`` of ``n_rows`` rows (the last always shown)."""
    return next(s for s in range(1, n_rows + 1) if len(strided_rows(n_rows, s)) <= max(2, max_rows))


def _short(token: str, width: int = 7) -> str:
    s = visible(token)
    return s if len(s) <= width else s[: width - 1] + "…"


def position_labels(result: LogitLensResult) -> list[str]:
    return [f"{p}·{_short(result.tokens[p], 10)}" for p in result.positions]


def _hover(result: LogitLensResult, rows: list[int], cols: list[int]) -> tuple[list, str]:
    """Per-cell hover values and the one template that lays them out.

    The browser fills the template, so the figure carries numbers and tokens, not a
    formatted paragraph per cell (a third of the bytes, and the bytes are what a redraw costs).
    Per cell: the top-k tokens, their probabilities, entropy, KL, target rank and probability."""
    k = result.top_ids.shape[-1]
    after = [escape(visible(result.tokens[p]), quote=False) for p in result.positions]
    probs = np.round(result.top_probs.astype(np.float64), 3)  # as shown: no second rounding
    ent, kl = np.round(result.entropy.astype(np.float64), 3), np.round(result.kl_to_final.astype(np.float64), 3)
    cells, target = _target_cells(result, rows, cols)
    data = [[[*(escape(visible(t), quote=False) for t in result.top_tokens[r][c]), *probs[r, c].tolist(),
              float(ent[r, c]), float(kl[r, c]), *cells[i][j], target[j], after[c], str(result.positions[c])]
             for j, c in enumerate(cols)] for i, r in enumerate(rows)]
    i = 2 * k  # where the per-cell numbers start
    template = (
        f"<b>layer %{{y}}</b>, position %{{customdata[{i + 6}]}} (after %{{customdata[{i + 5}]}})<br>"
        + "<br>".join(f"{j + 1}. %{{customdata[{j}]}}  %{{customdata[{k + j}]:.3f}}" for j in range(k))
        + f"<br>entropy %{{customdata[{i}]:.3f}} nats · KL→final %{{customdata[{i + 1}]:.3f}}"
        + f"<br>target %{{customdata[{i + 4}]}}: rank %{{customdata[{i + 2}]}}, p=%{{customdata[{i + 3}]}}"
        + "<extra></extra>"
    )
    return data, template


def _target_cells(result: LogitLensResult, rows: list[int], cols: list[int]) -> tuple[list, list[str]]:
    """The target's part of each cell's hover: [rank, probability] per cell (rows × cols), and the target as
    shown, per column (a live heatmap swaps these for another target's: ``live_payload``)."""
    tp = result.target_prob.astype(np.float64)
    cells = [[[int(result.target_rank[r, c]), float(f"{tp[r, c]:.3g}")] for c in cols] for r in rows]
    return cells, [escape(visible(result.target_tokens[c]), quote=False) for c in cols]


TARGET_AT = 2  # where a cell's hover values hold its target's rank (then its probability, then the target): 2k + 2
TARGET_METRICS = ("target_prob", "target_rank")  # the metrics whose colours follow the target


LENS_TITLES = {"logit": "Logit lens", "linear": "Linear-shortcut lens", "tuned": "Tuned lens", "jacobian": "Jacobian lens"}


def logit_lens_figure(result: LogitLensResult, metric: str = "probability", stride: int = 1,
                      columns: tuple[int, int] | None = None, show_tokens: bool | None = None,
                      show_exit: bool = False, hover: bool = True, texts: bool = True) -> go.Figure:
    """Heatmap of ``metric``; ``columns`` is a [start, stop) window into the result's positions.

    ``show_tokens`` writes each cell's top-1 token into it; by default only while the
    window has at most MAX_CELL_TEXT_COLUMNS columns (beyond that they cannot be read).
    ``show_exit`` draws a line under each column's saturation cell (lens/analysis/early_exit.py).
    ``hover=False`` leaves out the per-cell hover data and ``texts=False`` the cells' texts (the same for every
    metric: ``live_payload`` takes them from one figure instead of building and checking them once per metric)."""
    spec = METRICS[metric]
    rows = strided_rows(len(result.layers), stride)
    c0, c1 = columns or (0, len(result.positions))
    cols = list(range(c0, c1))
    if show_tokens is None:
        show_tokens = len(cols) <= MAX_CELL_TEXT_COLUMNS
    every, ticks = _colour_values(result, metric, cols)
    z = every[rows]

    width, size = next((w, px) for n, w, px in CELL_TEXT if len(cols) <= n) if show_tokens else (7, 11)
    text = [[_short(result.top_tokens[r][c][0], width) for c in cols] for r in rows] if texts else None
    customdata, hovertemplate = _hover(result, rows, cols) if hover else (None, None)

    labels = position_labels(result)
    x = [labels[c] for c in cols]
    y = [("emb" if result.layers[r] == "emb" else f"L{result.layers[r]}") for r in rows]
    # The colour scale is that of every layer, shown or not: a layer stride (which the live chart switches in the
    # browser, from the rows of one figure) leaves each colour meaning the same.
    colorbar = dict(title=dict(text=spec.title, side="right"), **ticks)
    zmin, zmax = (0.0, 1.0) if metric in ("probability", "target_prob") else (0.0, None)
    title = f"{LENS_TITLES.get(result.lens, result.lens)} · {result.model} · colour: {spec.title}"
    if metric == "kl" and rows[0] == 0 and len(every) > 1 and np.isfinite(every[1:]).any():
        # The embeddings' KL (~100 nats) would leave every other row the same colour.
        zmax = float(np.nanmax(every[1:]))
        if np.nanmax(every[0]) > zmax:
            title += f" · the emb row (up to {np.nanmax(every[0]):.0f} nats) is beyond the scale"
    heat = go.Heatmap(
        z=z, x=x, y=y, text=text if show_tokens and texts else None,
        texttemplate="%{text}" if show_tokens else None,
        textfont=dict(size=size),
        customdata=customdata, hovertemplate=hovertemplate,
        colorscale=spec.colorscale, zmin=zmin, zmax=zmax, colorbar=colorbar, xgap=1, ygap=1,
    )
    fig = go.Figure(heat)
    if show_exit:
        fig.update_layout(shapes=exit_marks(result, rows, cols))
        title += EXIT_TITLE
    fig.update_layout(
        height=heatmap_height(len(rows)),
        margin=dict(l=60, r=20, t=40, b=90),
        xaxis=dict(title="input position · token (the cell predicts the token after it)", tickangle=-45,
                   type="category"),
        yaxis=dict(title="layer", type="category"),
        title=dict(text=title, x=0.01, font=dict(size=15)),
        font=dict(family="Inter, Helvetica, Arial, sans-serif"),
        plot_bgcolor="white",
    )
    return fig


def _colour_values(result: LogitLensResult, metric: str, cols: list[int]) -> tuple[np.ndarray, dict]:
    """Every row's colour values at ``cols`` (log10 of the value on a log scale) and, on a log scale, the colour
    bar's ticks (those of every layer: a stride changes no colour)."""
    every = metric_values(result, metric)[:, cols]
    if not METRICS[metric].log:
        return every, {}
    every = np.log10(np.maximum(every, 1.0))
    top = max(1.0, float(np.nanmax(every)) if every.size else 1.0)
    ticks = list(range(0, int(math.ceil(top)) + 1))
    return every, dict(tickvals=ticks, ticktext=[f"{10 ** t:,}" for t in ticks])


def exit_marks(result: LogitLensResult, rows: list[int], cols: list[int]) -> list[dict]:
    """Plotly shapes: under each column's saturation cell, a line (above it the lens says the final answer).
    On a strided heatmap the line goes under the first shown row at or above the saturation row."""
    shapes = []
    for i, c in enumerate(cols):
        e = result.exit_layer[c]
        if e is None or e == 0:
            continue  # never saturated, or from the embeddings on: nothing below to mark
        shown = next((j for j, r in enumerate(rows) if r >= e), None)
        if shown is None:
            continue
        shapes.append(dict(type="line", xref="x", yref="y", x0=i - 0.5, x1=i + 0.5, y0=shown - 0.5,
                           y1=shown - 0.5, line=dict(color="#e4572e", width=4)))
    return shapes


def prediction_figure(result: LogitLensResult, height: int = 320) -> go.Figure:
    """The model's own top-k next tokens after the last position, as horizontal bars (largest on top)."""
    final, last = len(result.layers) - 1, len(result.positions) - 1
    # Numbered: two tokens that look the same ("a" and "a" with another byte) stay two bars.
    labels = [f"{i + 1}. {visible(t)}" for i, t in enumerate(result.top_tokens[final][last])]
    probs = result.top_probs[final, last].tolist()
    fig = go.Figure(go.Bar(x=probs[::-1], y=[f"{label} " for label in labels[::-1]], orientation="h",
                           marker_color="#2f6db5", text=[f"{p:.1%}" for p in probs[::-1]], textposition="auto"))
    # automargin: the left margin grows to the longest token label (a fixed one cut them to their last letter).
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=30),
                      xaxis=dict(title="probability", range=[0, 1]), yaxis=dict(automargin=True))
    return fig


def live_payload(result: LogitLensResult, stride: int = 1, show_exit: bool = False, style=None,
                 targets: dict[str, LogitLensResult] | None = None) -> dict:
    """What the page's live heatmap (ui/live) draws: ``logit_lens_figure`` for every colour metric, so that the
    browser switches the metric without asking the server. The cell texts and hovers are the same for every
    metric: sent once (``shared``), each figure keeps only what differs. ``layers`` and ``positions`` name each
    row's layer (0: the embeddings) and each column's position, for a clicked cell.

    Without ``style``, the layer stride and the exit marks switch in the browser too: the figures are those of
    every layer with no marks, and ``strides`` gives, for each stride, the rows it shows and the chart's height;
    ``exits`` gives each column's exit row and the title's note (``live_figure`` does what the browser does).
    With ``style`` (presenter mode's restyling, which depends on the rows shown), each figure is drawn at
    ``stride`` and ``show_exit`` and restyled, and those two switch on the server.

    ``targets``: the same lens with other targets (``retarget``), by the target box's text; the browser switches
    to them too. Each gives its figures of the target metrics and its target's part of every cell's hover
    (``_target_cells``, for the rows the hovers have), the rest being the same."""
    import json

    live_rows = style is None
    if live_rows:
        stride, show_exit = 1, False
    figures, shared = {}, None
    if live_rows:
        # The cell texts and hovers as logit_lens_figure writes them, built here once: plotly checking and copying
        # them cell by cell was most of the payload's time.
        rows, cols = list(range(len(result.layers))), list(range(len(result.positions)))
        customdata, template = _hover(result, rows, cols)
        shared = {"customdata": customdata, "hovertemplate": template}
        if len(cols) <= MAX_CELL_TEXT_COLUMNS:
            width = next(w for n, w, _ in CELL_TEXT if len(cols) <= n)
            shared["text"] = [[_short(result.top_tokens[r][c][0], width) for c in cols] for r in rows]
    for key in METRICS:
        first = shared is None  # (presenter mode's restyling fits the cell texts: each figure keeps them to it)
        fig = logit_lens_figure(result, metric=key, stride=stride, show_exit=show_exit, hover=first,
                                texts=first or style is not None)
        fig = style(fig) if style is not None else fig
        d = json.loads(fig.to_json())
        trace = d["data"][0]
        if shared is None:
            shared = {k: trace[k] for k in ("text", "customdata", "hovertemplate") if k in trace}
        for k in list(shared):
            if trace.get(k) == shared[k]:
                del trace[k]
        figures[key] = d
    n_rows = len(result.layers)
    out = {"figures": figures, "shared": shared or {},
           "layers": [0 if result.layers[r] == "emb" else int(result.layers[r]) for r in strided_rows(n_rows, stride)],
           "positions": [int(p) for p in result.positions]}
    if live_rows:
        out["strides"] = {str(s): {"rows": rows, "height": heatmap_height(len(rows))}
                          for s in range(1, max(2, n_rows)) for rows in [strided_rows(n_rows, s)]}
        out["exits"] = {"rows": [None if e is None else int(e) for e in result.exit_layer], "title": EXIT_TITLE}
    if targets:
        rows = list(range(n_rows)) if live_rows else strided_rows(n_rows, stride)
        cols = list(range(len(result.positions)))
        k = result.top_ids.shape[-1]
        out["targets"] = {}
        for name, other in targets.items():
            figs = {}
            for key in TARGET_METRICS:
                # The primary's figure with this target's colours: all that differs (logit_lens_figure's own
                # build and plotly's checks of it took as long as the rest of the payload). New dicts where it
                # differs, the rest shared with the primary's, not copied: the payload is only written out.
                every, ticks = _colour_values(other, key, cols)
                primary = figures[key]
                trace = primary["data"][0]
                figs[key] = {**primary, "data": [{**trace, "z": every[rows].tolist(),
                                                  "colorbar": {**trace["colorbar"], **ticks}}, *primary["data"][1:]]}
            cells, token = _target_cells(other, rows, cols)
            out["targets"][name] = {"figures": figs, "cells": cells, "token": token}
        out["target_at"] = 2 * k + TARGET_AT
        out["target_metrics"] = list(TARGET_METRICS)
    return out


def live_figure(payload: dict, metric: str, stride: int | None = None, exits: bool = False,
                target: str | None = None) -> dict:
    """The figure JSON the live heatmap draws for ``metric`` (at ``stride``, with or without the exit marks, where
    the payload switches those in the browser), as the browser builds it (ui/live/live_heatmap.js): the shared
    cell texts and hovers put back into the metric's figure; the stride's rows of each per-row array, its height;
    the exit marks under those rows. ``target``: one of the payload's ``targets`` (its target metrics' figures,
    and its rank, probability and token in every cell's hover)."""
    import copy

    other = (payload.get("targets") or {}).get(target) if target is not None else None
    fig = copy.deepcopy((other or {}).get("figures", {}).get(metric) or payload["figures"][metric])
    trace = fig["data"][0]
    for k, v in payload["shared"].items():
        trace.setdefault(k, copy.deepcopy(v))
    if other is not None and "customdata" in trace:
        at = payload["target_at"]
        trace["customdata"] = [[[*cell[:at], *other["cells"][i][j], other["token"][j], *cell[at + 3:]]
                                for j, cell in enumerate(row)] for i, row in enumerate(trace["customdata"])]
    if "strides" not in payload:
        return fig
    view = payload["strides"][str(stride or 1)]
    rows = view["rows"]
    for k in ("z", "text", "customdata", "y"):
        if k in trace:
            trace[k] = _rows_of(trace[k], rows)
    fig["layout"]["height"] = view["height"]
    if exits:
        exit_rows = payload["exits"]["rows"]
        fig["layout"]["shapes"] = [
            dict(type="line", xref="x", yref="y", x0=i - 0.5, x1=i + 0.5, y0=shown - 0.5, y1=shown - 0.5,
                 line=dict(color="#e4572e", width=4))
            for i, e in enumerate(exit_rows) if e
            for shown in [next((j for j, r in enumerate(rows) if r >= e), None)] if shown is not None]
        fig["layout"]["title"]["text"] += payload["exits"]["title"]
    return fig


def _rows_of(value, rows: list[int]):
    """The rows ``rows`` of a per-row array in plotly's JSON: a list, or a numpy array as plotly.py writes it
    ({"dtype", "bdata", "shape"}: then as nested lists)."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        a = a.reshape([int(n) for n in str(value["shape"]).split(",")]) if value.get("shape") else a
        return a[rows].tolist()
    return [value[r] for r in rows]
