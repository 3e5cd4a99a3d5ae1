"""The slide look: large type, black text and strong gridlines that survive a projector."""
from __future__ import annotations

SLIDE_FONT = 18  # px: the smallest chart text on a slide
SLIDE_TITLE = 22


def for_slides(fig, max_height: int | None = None):
    """``fig`` restyled in place for presenting (and returned): every label at least SLIDE_FONT px,
    black on white, darker gridlines, and no taller than ``max_height``."""
    fig.update_layout(
        font=dict(size=SLIDE_FONT, color="#000000"),
        title_font=dict(size=SLIDE_TITLE, color="#000000"),
        hoverlabel=dict(font_size=SLIDE_FONT),
        legend=dict(font=dict(size=SLIDE_FONT)),
        paper_bgcolor="#ffffff", plot_bgcolor="#ffffff",
    )
    axes = dict(tickfont_size=SLIDE_FONT, title_font_size=SLIDE_FONT, gridcolor="#9a9a9a", linecolor="#000000",
                automargin=True)  # larger labels push the margins out instead of overlapping the titles
    if any(t.type == "heatmap" for t in fig.data):
        axes["showgrid"] = False  # a heatmap's cells are its grid
    fig.update_xaxes(**axes)
    fig.update_yaxes(**axes)
    for trace in fig.data:
        if hasattr(trace, "colorbar"):
            trace.colorbar.tickfont = dict(size=SLIDE_FONT)
            trace.colorbar.title.font = dict(size=SLIDE_FONT)
        if getattr(trace, "textfont", None) is not None and trace.type != "heatmap":
            trace.textfont.size = max(SLIDE_FONT, trace.textfont.size or 0)
    if max_height is not None and (fig.layout.height or 450) > max_height:
        fig.update_layout(height=max_height)
    if (fig.layout.margin.b or 80) < 120:
        fig.update_layout(margin_b=120)  # rotated token labels at SLIDE_FONT need the room
    _thin_ticks(fig)
    return fig


def _thin_ticks(fig) -> None:
    """Keep every n-th explicit y tick, so that labels at SLIDE_FONT do not overlap."""
    y = fig.layout.yaxis
    if not y.tickvals or not y.ticktext:
        return
    margin = fig.layout.margin
    room = (fig.layout.height or 450) - (margin.t or 80) - (margin.b or 80)
    fits = max(2, int(room / (SLIDE_FONT * 1.5)))
    n = len(y.tickvals)
    if n > fits:
        k = -(-n // fits)
        fig.update_yaxes(tickvals=list(y.tickvals)[::k], ticktext=list(y.ticktext)[::k])


def point_customdata(point) -> list | None:
    """A selected point's customdata as a list. Streamlit hands a row of customdata to the page as a dict
    keyed "0", "1", … (as a list in other versions): both come back as a list."""
    cd = point.get("customdata") if isinstance(point, dict) else None
    if isinstance(cd, dict):
        try:
            return [cd[k] for k in sorted(cd, key=int)]
        except (TypeError, ValueError):
            return None
    return list(cd) if isinstance(cd, (list, tuple)) else None
