"""A suite's figures: one measure over the layers with its 95 % interval as a band (one line per group when the
suite is faceted by a label), each prompt's own line behind it, where prompts settle their answer, and the
patching grid averaged over pairs."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..model.tokens import visible
from ..suites.results import SuiteAggregate, SuiteLensResult, SuitePatchResult
from .lens_comparison import row_labels
from .patching import SITE_TITLES, row_label

# measure -> (axis title, hover format, log axis)
MEASURES = {
    "target_logprob": ("log p(target) (nats)", ".2f", False),
    "target_prob": ("p(target)", ".3f", False),
    "target_rank": ("rank of the target (1 = top)", ".0f", True),
    "kl_to_final": ("KL to the final distribution (nats)", ".2f", False),
    "logit_diff": ("logit(target) − logit(foil)", ".2f", False),
}
# Distinct hues for groups, readable on white and told apart in greyscale by their order.
GROUP_COLOURS = ("#2f6db5", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fa0", "#5c5c5c", "#8c564b", "#17becf")
FONT = "Inter, Helvetica, Arial, sans-serif"


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def measure_title(measure: str) -> str:
    return MEASURES[measure][0]


def suite_lines_figure(aggregates: list[SuiteAggregate], measure: str = "target_logprob",
                       result: SuiteLensResult | None = None, statistic: str = "mean",
                       height: int = 420) -> go.Figure:
    """Per lens row, the ``statistic`` (mean or median) of ``measure`` over each group's prompts, with the 95 %
    bootstrap interval of the mean as a band; with ``result``, every prompt's own line, faint, behind them
    (its hover names the prompt, so an outlier can be found in the table)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}")
    title, fmt, log = MEASURES[measure]
    x = row_labels(aggregates[0].layers)
    fig = go.Figure()
    if result is not None:
        values = np.asarray(getattr(result, measure), np.float64)
        for i, prompt in enumerate(result.prompts):
            if np.isnan(values[i]).all():
                continue  # logit_diff of a prompt without a foil
            fig.add_scatter(x=x, y=values[i], mode="lines", line=dict(color="rgba(120,120,120,0.22)", width=1),
                            showlegend=False, customdata=[[i, visible(prompt)[-60:]]] * len(x),
                            hovertemplate=(f"prompt %{{customdata[0]}}: %{{customdata[1]}}<br>%{{x}}: "
                                           f"%{{y:{fmt}}}<extra></extra>"))
    for k, a in enumerate(aggregates):
        colour = GROUP_COLOURS[k % len(GROUP_COLOURS)]
        centre = getattr(a, f"{measure}_{statistic}")
        lo, hi = np.asarray(getattr(a, f"{measure}_ci95"), np.float64).T
        n = a.logit_diff_n if measure == "logit_diff" else a.n
        name = f"{a.group} (n={n})" if a.by else f"all {n} prompts"
        # The band: the upper edge, then the lower edge back (one closed shape, no line of its own).
        fig.add_scatter(x=[*x, *x[::-1]], y=[*hi, *lo[::-1]], fill="toself", fillcolor=_rgba(colour, 0.18),
                        line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=name)
        fig.add_scatter(x=x, y=centre, mode="lines+markers", name=name, legendgroup=name,
                        line=dict(color=colour, width=3), marker=dict(size=5),
                        customdata=np.stack([lo, hi], 1),
                        hovertemplate=(f"{name}<br>%{{x}}: {statistic} %{{y:{fmt}}}<br>95% interval of the mean "
                                       f"[%{{customdata[0]:{fmt}}}, %{{customdata[1]:{fmt}}}]<extra></extra>"))
    grouped = aggregates[0].by is not None
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white", font=dict(family=FONT),
        showlegend=grouped, legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        xaxis=dict(title="layer", type="category", automargin=True, gridcolor="#e5e5e5", nticks=12),
        yaxis=dict(title=title, automargin=True, gridcolor="#e5e5e5", type="log" if log else "linear",
                   range=[0, 1.02] if measure == "target_prob" else None),
    )
    return fig


def exit_figure(aggregates: list[SuiteAggregate], height: int = 300) -> go.Figure:
    """How many prompts settle their final answer at each layer (the exit layer: from there on the lens's
    top-1 is the model's answer), and how many never do, per group."""
    x = [*row_labels(aggregates[0].layers), "never"]
    fig = go.Figure()
    for k, a in enumerate(aggregates):
        name = f"{a.group} (n={a.n})" if a.by else f"all {a.n} prompts"
        fig.add_bar(x=x, y=a.exit_counts, name=name, marker_color=GROUP_COLOURS[k % len(GROUP_COLOURS)],
                    hovertemplate=f"{name}<br>%{{y}} prompts settle at %{{x}}<extra></extra>")
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white", font=dict(family=FONT),
        barmode="group", showlegend=aggregates[0].by is not None,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        xaxis=dict(title="exit layer", type="category", automargin=True, nticks=12),
        # Whole prompts: ticks on whole numbers, about five of them.
        yaxis=dict(title="prompts", automargin=True, gridcolor="#e5e5e5", rangemode="tozero", tick0=0,
                   dtick=max(1, -(-max(int(a.exit_counts.max()) for a in aggregates) // 5))),
    )
    return fig


def pair_columns(result: SuitePatchResult) -> list[str]:
    """Column labels: ``-k·token`` where every pair has the same clean token there, else ``-k``."""
    if result.site == "head":
        return list(result.columns)
    return [f"{c}·{visible(t)}" if t else c for c, t in zip(result.columns, result.column_tokens)]


def pair_grid_figure(result: SuitePatchResult, height: int = 560) -> go.Figure:
    """The patching grid averaged over the pairs (positions counted from the end), each cell's pair count in
    its hover; cells no pair has are blank."""
    z = np.asarray(result.mean, np.float64)
    finite = z[np.isfinite(z)]
    span = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    where = "head" if result.site == "head" else "position from the end"
    P = len(result.clean)
    fig = go.Figure(go.Heatmap(
        z=z, x=pair_columns(result), y=[row_label(l) for l in result.layers], colorscale="RdBu", zmid=0,
        zmin=-span, zmax=span, customdata=np.asarray(result.count), xgap=1, ygap=1,
        colorbar=dict(title=dict(text="answer restored", side="right")),
        hovertemplate=(f"row %{{y}} · {where} %{{x}}<br>restores %{{z:.2f}} of the gap on average"
                       f"<br>over %{{customdata}} of {P} pairs<extra></extra>"),
    ))
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=50, b=10), font=dict(family=FONT),
        title=dict(text=f"Patching the {SITE_TITLES[result.site]} · {result.model} · mean over {P} pairs "
                        f"({result.metric_name})", font=dict(size=14)),
        xaxis=dict(title=where, tickangle=-40, automargin=True, type="category"),  # "-3" is a label
        yaxis=dict(title="layer" if result.site != "resid" else "row", automargin=True),
    )
    return fig
