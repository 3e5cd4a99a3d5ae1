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
