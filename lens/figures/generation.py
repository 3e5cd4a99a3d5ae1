"""Watch it generate: the logit lens growing one column per new token, played in the browser.

One figure with a frame per step and a play button: the frames run client-side, so a
talk's animation never waits for the server. Frame k shows the prompt and the first k
new tokens; its newest column (boxed) is the position whose prediction became token k + 1.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible
from ..results import Generation, GenerationAttention, LogitLensResult
from .logit_lens import METRICS, metric_values, strided_rows

_HIDDEN = ""  # the label of a position not generated yet
SLIDER_INSET = 18  # px: from a plotly slider's end to its first tick (the rail's inset and half the grip)
TYPICAL_PLOT_WIDTH = 1000  # px: the heatmap's width on a laptop screen
BUTTONS_WIDTH = 0.16  # the part of the plot's width that ▶ Play and ❚❚ (pause) take, at slide size too
GENERATION_TOP = 120  # px above the heatmap: the title, ▶ Play and the slider


def _short(token: str, width: int = 7) -> str:
    s = visible(token)
    return s if len(s) <= width else s[: width - 1] + "…"


def generation_figure(gen: Generation, lens: LogitLensResult, metric: str = "probability", stride: int = 1,
                      height: int | None = None) -> go.Figure:
    spec = METRICS[metric]
    P, T = gen.n_prompt, len(gen.token_ids)
    N = T - P
    rows = strided_rows(len(lens.layers), stride)
    values = np.asarray(metric_values(lens, metric)[rows], float)
    z_all = np.log10(np.maximum(values, 1.0)) if spec.log else values
    text_all = [[_short(lens.top_tokens[r][c][0]) for c in range(T)] for r in rows]
    labels = [f"{p}·{_short(t, 10)}" for p, t in enumerate(gen.tokens)]
    y = [("emb" if lens.layers[r] == "emb" else f"L{lens.layers[r]}") for r in rows]
    zmin, zmax = (0.0, 1.0) if metric in ("probability", "target_prob") else (0.0, float(np.nanmax(z_all[1:] if len(rows) > 1 else z_all)))

    def frame(k: int):
        shown = P + k  # columns 0..shown-1 are visible
        z = z_all.copy()
        z[:, shown:] = np.nan
        text = [[t if c < shown else "" for c, t in enumerate(row)] for row in text_all]
        ticktext = [label if c < shown else _HIDDEN for c, label in enumerate(labels)]
        if k < N:
            title = (f"Step {k} of {N} · after “{visible(gen.tokens[shown - 1])}” the model writes "
                     f"“{visible(gen.tokens[shown])}” (p = {gen.chosen_probs[k]:.2f})")
        else:
            title = f"All {N} new tokens · colour: {spec.title}"
        box = dict(type="rect", xref="x", yref="paper", x0=shown - 1.5, x1=shown - 0.5, y0=0, y1=1,
                   line=dict(color="#c0392b", width=3))
        data = [go.Heatmap(z=z, text=text)]
        layout = dict(title=dict(text=title), shapes=[box], xaxis=dict(ticktext=ticktext, tickvals=list(range(T))))
        return data, layout

    data, layout = frame(0)
    heat = go.Heatmap(
        z=data[0].z, x=list(range(T)), y=y, text=data[0].text, texttemplate="%{text}",
        textfont=dict(size=11 if T <= 24 else 9), colorscale=spec.colorscale, zmin=zmin, zmax=zmax,
        colorbar=dict(title=dict(text=spec.title, side="right")), xgap=1, ygap=1,
        hovertemplate="layer %{y}, position %{x}<br>top-1: %{text}<br>" + spec.label + ": %{z:.3f}<extra></extra>")
    frames = []
    for k in range(N + 1):
        d, lay = frame(k)
        frames.append(go.Frame(name=str(k), data=d, layout=lay))
    fig = go.Figure(heat, frames=frames)
    # The slider's first and last ticks sit SLIDER_INSET px inside its ends: its ends go that far beyond the
    # centres of the first and last boxed columns (at a typical plot width), but clear of ▶ Play and ❚❚.
    inset = SLIDER_INSET / TYPICAL_PLOT_WIDTH
    x0 = max(BUTTONS_WIDTH, (P - 0.5) / T - inset)
    x1 = min(1.0, (T - 0.5) / T + inset)
    fig.update_layout(
        height=height or max(420, 20 * len(rows) + 260), margin=dict(l=60, r=20, t=GENERATION_TOP, b=110),
        title=dict(text=layout["title"]["text"], x=0.01, y=0.985, yanchor="top", font=dict(size=15)),
        shapes=layout["shapes"],
        xaxis=dict(title="position · token (the boxed column chose the newest token)", tickangle=-45,
                   tickvals=list(range(T)), ticktext=layout["xaxis"]["ticktext"], range=[-0.5, T - 0.5]),
        yaxis=dict(title="layer", type="category"), plot_bgcolor="white",
        # Play and the step slider above the plot: below it they would meet the rotated token labels.
        updatemenus=[dict(type="buttons", direction="left", x=0, y=1.02, xanchor="left", yanchor="bottom",
                          buttons=[dict(label="▶ Play", method="animate",
                                        args=[None, dict(frame=dict(duration=700, redraw=True), fromcurrent=True,
                                                         transition=dict(duration=0))]),
                                   dict(label="❚❚", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])],
        sliders=[dict(active=0, x=x0, len=x1 - x0, y=1.02, yanchor="bottom", pad=dict(t=0, b=0, l=0, r=0),
                      currentvalue=dict(prefix="boxed position: ", xanchor="right"),
                      # Step k's tick over the column it boxes, labelled with that column's position.
                      steps=[dict(label=str(P - 1 + k), method="animate",
                                  args=[[str(k)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                       transition=dict(duration=0))]) for k in range(N + 1)])],
    )
    return fig


def token_table(gen: Generation, lens: LogitLensResult) -> list[dict]:
    """One row per new token: the probability it had when chosen, and the first layer from which
    the lens's top-1 at the position that chose it was that token all the way up."""
    rows = []
    for k in range(len(gen.token_ids) - gen.n_prompt):
        pos = gen.n_prompt + k - 1  # the column whose prediction chose new token k
        tok = gen.token_ids[pos + 1]
        tops = [int(lens.top_ids[r, pos, 0]) for r in range(len(lens.layers))]
        settled = next((r for r in range(len(tops)) if all(t == tok for t in tops[r:])), None)
        rows.append({"step": k + 1, "token": visible(gen.tokens[pos + 1]),
                     "probability": round(float(gen.chosen_probs[k]), 3),
                     "top-1 from layer": ("–" if settled is None else lens.layers[settled])})
    return rows


def generation_attention_figure(r: GenerationAttention, skip_first: bool = True) -> go.Figure:
    """New tokens × source tokens: where the position that chose each new token looked (attention
    averaged over heads and layers). ``skip_first`` leaves out the first token (the attention sink)."""
    start = 1 if skip_first and len(r.tokens) > 1 else 0
    z = np.asarray(r.attention, float)[:, start:]
    z = np.where(np.arange(start, len(r.tokens))[None, :] <= np.asarray(r.positions)[:, None], z, np.nan)
    x = [f"{p}·{_short(t, 10)}" for p, t in enumerate(r.tokens)][start:]
    y = [f"{k + 1}. {_short(r.tokens[p + 1], 10)}" for k, p in enumerate(r.positions)]
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, colorscale="YlGnBu", zmin=0, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="share", side="right")),
        hovertemplate="new token %{y}<br>from %{x}<br>share %{z:.3f}<extra></extra>"))
    n_prompt = r.n_prompt - start
    fig.add_vline(x=n_prompt - 0.5, line=dict(color="#c0392b", width=2, dash="dot"))
    fig.update_layout(
        title=dict(text="Where each new token looked (attention, averaged over heads and layers"
                        + ("; first token left out)" if start else ")"), x=0.01, font=dict(size=15)),
        height=max(300, 22 * len(y) + 200), margin=dict(l=110, r=20, t=50, b=110), plot_bgcolor="white",
        xaxis=dict(title="source token (dotted line: end of the prompt)", type="category", tickangle=-45),
        yaxis=dict(title="new token", type="category", autorange="reversed"))
    return fig
