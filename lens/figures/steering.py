"""Figures of a steering run (lens/steering/): the dose-response, and the target's lens in the plain and the steered
run."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..steering.results import SteerResult

PLAIN_COLOR, STEERED_COLOR = "#7f7f7f", "#d62728"


def _unit(r: SteerResult) -> str:
    if r.mode == "orthogonal":
        return "factor on the parallel part"
    return "coefficient (× mean residual norm)" if r.unit == "norm" else "coefficient (× the raw vector)"


def dose_figure(r: SteerResult, height: int = 420) -> go.Figure:
    """Coefficient → log p(target) of the next token after the prompt, the chosen coefficient marked; hovering a
    point with a generated text shows it."""
    texts = {round(c, 9): t for c, t in zip(r.text_coefs, r.texts)}
    hover = [f"“{texts[round(float(c), 9)]}”" if round(float(c), 9) in texts else "" for c in r.dose_coefs]
    fig = go.Figure(go.Scatter(
        x=r.dose_coefs, y=r.dose_logprob, mode="lines+markers", line=dict(color=STEERED_COLOR),
        customdata=hover, name=f"log p({r.target.strip() or repr(r.target)})",
        hovertemplate="coefficient %{x:.3g}: log p = %{y:.2f}<br>%{customdata}<extra></extra>"))
    if len(r.dose_coefs):
        fig.add_vline(x=r.coef, line=dict(color="#444", dash="dot"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                      title=dict(text=f"Dose-response: log p(“{r.target}”) next", font=dict(size=14)),
                      xaxis=dict(title=_unit(r), automargin=True, zeroline=True, zerolinecolor="#bbb"),
                      yaxis=dict(title="log-probability", automargin=True))
    return fig


def lens_figure(r: SteerResult, height: int = 420) -> go.Figure:
    """Per layer, log p(target) read by the logit lens at the prompt's last token, plain and steered; the layer
    steered marked (the streams agree before it)."""
    x = [f"L{l}" for l in r.layers]
    fig = go.Figure()
    fig.add_scatter(x=x, y=r.lens_plain, mode="lines+markers", name="plain", line=dict(color=PLAIN_COLOR),
                    hovertemplate="%{x} plain: %{y:.2f}<extra></extra>")
    fig.add_scatter(x=x, y=r.lens_steered, mode="lines+markers", name="steered", line=dict(color=STEERED_COLOR),
                    hovertemplate="%{x} steered: %{y:.2f}<extra></extra>")
    fig.add_vline(x=r.layer - 1.5, line=dict(color="#444", dash="dot"))  # between L(l−1) and Ll: where v goes in
    # The runs are named in the title, coloured as their lines: a legend would sit on the lines somewhere.
    title = (f"log p(“{r.target}”) per layer: <span style='color:{PLAIN_COLOR}'>plain</span>, "
             f"<span style='color:{STEERED_COLOR}'>steered</span>")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                      title=dict(text=title, font=dict(size=14)),
                      xaxis=dict(title="layer (the stream after each block)", automargin=True),
                      yaxis=dict(title="log-probability", automargin=True))
    return fig


def steer_reading(r: SteerResult) -> str:
    """One line on what the charts show."""
    gain = float(r.lens_steered[-1] - r.lens_plain[-1])
    how = {"add": f"adding {r.coef_raw:.3g} × the vector", "orthogonal": f"the part along the vector × {r.coef:g}",
           "cap": f"its projection capped at {r.coef_raw * r.vector_norm:.3g}", "ablate": "the direction removed"}
    return (f"At the stream entering block {r.layer} ({r.positions} positions), {how[r.mode]} (‖v‖ = "
            f"{r.vector_norm:.3g}, mean ‖h‖ = {r.mean_norm:.3g}) moves log p(“{r.target}”) next by {gain:+.2f}.")


def steer_table(r: SteerResult) -> list[dict]:
    """The dose-response's texts: coefficient and continuation."""
    return [{"coefficient": float(np.round(c, 4)), "continuation": t} for c, t in zip(r.text_coefs, r.texts)]


GRID_TEXT_COLUMNS = 28  # more columns than this: the top-1 tokens are left to the hover (too narrow to read)


def _grid_axes(r: SteerResult, rows: list[int]) -> tuple[list[str], list[str]]:
    from ..model.tokens import visible

    x = [f"{i}·{_short(visible(t), 8)}" for i, t in enumerate(r.grid_tokens)]
    y = ["emb" if r.grid_rows[i] == "emb" else f"L{r.grid_rows[i]}" for i in rows]
    return x, y


def _short(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def grid_rows(r: SteerResult, max_rows: int | None = None) -> list[int]:
    """The lens rows drawn: all, or every k-th from the embeddings up (the last always kept) to fit ``max_rows``."""
    n = len(r.grid_rows)
    if max_rows is None or n <= max_rows:
        return list(range(n))
    k = -(-n // max_rows)
    rows = list(range(0, n, k))
    return rows if rows[-1] == n - 1 else rows + [n - 1]


def _layout(fig: go.Figure, r: SteerResult, title: str, height: int) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
                      title=dict(text=title, font=dict(size=14), x=0.01),
                      # short: it must fit half a presenter's screen
                      xaxis=dict(title="position (the prompt ┆ the plain continuation)", type="category",
                                 tickangle=-45, automargin=True),
                      yaxis=dict(title="layer", type="category", automargin=True))
    # where the prompt ends and the continuation starts
    fig.add_vline(x=r.n_prompt - 0.5, line=dict(color="#444", dash="dot"))
    return fig


def grid_figure(r: SteerResult, run: str = "plain", height: int = 520, max_rows: int | None = None,
                cell_text: bool = True) -> go.Figure:
    """The logit lens of one run (``plain`` or ``steered``) over the prompt and the plain continuation: each cell
    coloured by its top-1 token's probability, the token written in it."""
    from ..model.tokens import visible

    rows = grid_rows(r, max_rows)
    top = r.grid_plain_top if run == "plain" else r.grid_steered_top
    prob = np.asarray(r.grid_plain_top_prob if run == "plain" else r.grid_steered_top_prob)[rows]
    lp = np.asarray(r.grid_plain_logprob if run == "plain" else r.grid_steered_logprob)[rows]
    x, y = _grid_axes(r, rows)
    show = cell_text and len(x) <= GRID_TEXT_COLUMNS  # cell_text False: the tokens in the hover only
    text = [[_short(visible(top[i][c]), 6) for c in range(len(x))] for i in rows]
    hover = [[[visible(top[i][c]), float(lp[j, c])] for c in range(len(x))] for j, i in enumerate(rows)]
    fig = go.Figure(go.Heatmap(
        z=prob, x=x, y=y, text=text if show else None, texttemplate="%{text}" if show else None,
        textfont=dict(size=10), customdata=hover, colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="top-1 p", side="right")),
        hovertemplate=(f"%{{y}}, %{{x}} ({run})<br>top-1 “%{{customdata[0]}}” p = %{{z:.3f}}<br>"
                       f"log p(“{visible(r.target)}”) = %{{customdata[1]:.2f}}<extra></extra>")))
    colour = PLAIN_COLOR if run == "plain" else STEERED_COLOR
    return _layout(fig, r, f"<span style='color:{colour}'>{run.capitalize()}</span> run's lens: each cell's top-1 "
                           "token", height)


def difference_figure(r: SteerResult, height: int = 520, max_rows: int | None = None,
                      cell_text: bool = True) -> go.Figure:
    """Per cell, log p(target) in the steered run minus in the plain run (red: steering raised it), the steered
    run's top-1 written where it differs from the plain run's."""
    from ..model.tokens import visible

    rows = grid_rows(r, max_rows)
    d = r.grid_difference[rows]
    x, y = _grid_axes(r, rows)
    show = cell_text and len(x) <= GRID_TEXT_COLUMNS  # cell_text False: the tokens in the hover only
    text = [[_short(visible(r.grid_steered_top[i][c]), 6) if r.grid_steered_top[i][c] != r.grid_plain_top[i][c]
             else "" for c in range(len(x))] for i in rows]
    hover = [[[visible(r.grid_plain_top[i][c]), visible(r.grid_steered_top[i][c]),
               float(r.grid_plain_logprob[i, c]), float(r.grid_steered_logprob[i, c])]
              for c in range(len(x))] for i in rows]
    span = float(np.nanmax(np.abs(d))) if d.size else 1.0
    span = span if span > 0 else 1.0
    t = visible(r.target)
    fig = go.Figure(go.Heatmap(
        z=d, x=x, y=y, text=text if show else None, texttemplate="%{text}" if show else None,
        textfont=dict(size=10), customdata=hover, colorscale="RdBu_r", zmid=0, zmin=-span, zmax=span, xgap=1,
        ygap=1, colorbar=dict(title=dict(text="Δ log p", side="right")),
        hovertemplate=(f"%{{y}}, %{{x}}<br>log p(“{t}”): plain %{{customdata[2]:.2f}}, steered "
                       "%{customdata[3]:.2f} (Δ %{z:+.2f})<br>top-1: plain “%{customdata[0]}”, steered "
                       "“%{customdata[1]}”<extra></extra>")))
    return _layout(fig, r, f"Lens difference: log p(“{t}”) steered − plain per cell (red: raised; text: the "
                           "steered top-1 where it changed)", height)


def difference_reading(r: SteerResult) -> str:
    """One line on the difference heatmap: where the target gained most, and how many cells' top-1 changed."""
    d = r.grid_difference
    if not d.size:
        return ""
    i, c = np.unravel_index(int(np.argmax(d)), d.shape)
    changed = sum(a != b for ra, rb in zip(r.grid_plain_top, r.grid_steered_top) for a, b in zip(ra, rb))
    before = int(r.layer)  # rows emb..L(layer−1) read the stream before the edit: unchanged
    return (f"Both runs read the same text (the prompt and the plain continuation), so each cell differs by the "
            f"edit alone; rows up to {'emb' if before == 1 else f'L{before - 1}'} are before it. log p(“{r.target}”) "
            f"rises most at layer {r.grid_rows[i]}, position {c} ({d[i, c]:+.2f}); the top-1 token changed in "
            f"{changed} of {d.size} cells.")
