"""The language of each layer: probability per script, stacked over the layers, and tracked words."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..model.tokens import visible
from ..results import LanguageMass
from .lens_comparison import row_labels

SCRIPT_COLOURS = {"Latin": "#2f6db5", "Cyrillic": "#d1495b", "Greek": "#8f2d56", "Arabic": "#00798c",
                  "Hebrew": "#edae49", "Devanagari": "#66a182", "Han": "#e4572e", "Kana": "#f29e4c",
                  "Hangul": "#6a4c93", "Thai": "#1982c4", "pieces": "#9e9e9e", "other": "#d6d6d6"}
WORD_COLOURS = ("#e4572e", "#2f6db5", "#2a9d8f", "#6a4c93", "#edae49", "#8f2d56")
MIN_SHOWN = 0.01  # a script under 1% in every row joins "other"


def language_figure(result: LanguageMass, height: int = 380) -> go.Figure:
    x = row_labels(result.layers)
    has_words = bool(result.words)
    fig = make_subplots(rows=1, cols=2 if has_words else 1, horizontal_spacing=0.1,
                        subplot_titles=("probability per script", "probability of the tracked words")
                        if has_words else ("probability per script",))
    other = result.scripts.index("other")
    rest = result.mass[:, other].copy()
    for s, name in enumerate(result.scripts):
        if s == other:
            continue
        if result.mass[:, s].max() < MIN_SHOWN:
            rest += result.mass[:, s]
            continue
        shown = "pieces of characters" if name == "pieces" else name
        fig.add_trace(go.Scatter(x=x, y=result.mass[:, s], name=shown, stackgroup="scripts", mode="lines",
                                 line=dict(width=0.5, color=SCRIPT_COLOURS.get(name)),
                                 hovertemplate=f"{shown}, layer %{{x}}: %{{y:.1%}}<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=rest, name="no letters / other", stackgroup="scripts", mode="lines",
                             line=dict(width=0.5, color=SCRIPT_COLOURS["other"]),
                             hovertemplate="other, layer %{x}: %{y:.1%}<extra></extra>"), 1, 1)
    for w, (word, tok) in enumerate(zip(result.words, result.word_tokens)):
        label = f"{word!r}" + (f" (as {visible(tok)!r})" if visible(tok).strip() != word.strip() else "")
        fig.add_trace(go.Scatter(x=x, y=result.word_probs[:, w], name=label, mode="lines+markers",
                                 line=dict(width=3, color=WORD_COLOURS[w % len(WORD_COLOURS)]),
                                 hovertemplate=f"{label}, layer %{{x}}: %{{y:.2%}}<extra></extra>"), 1, 2)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    if has_words:  # tracked words are often a few percent: their own scale, from 0
        fig.update_yaxes(rangemode="tozero", tickformat=".1%", row=1, col=2)
    fig.update_xaxes(type="category", nticks=12, title_text="layer")
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=60, b=60), plot_bgcolor="white",
                      legend=dict(orientation="h", y=-0.25, x=0),
                      title=dict(text=f"{result.lens} lens at position {result.position} "
                                      f"(after {visible(result.tokens[result.position])!r})", x=0.01,
                                 font=dict(size=14)),
                      font=dict(family="Inter, Helvetica, Arial, sans-serif"))
    return fig
