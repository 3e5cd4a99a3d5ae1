"""The slide look: large type, black text and strong gridlines that survive a projector."""
from __future__ import annotations

SLIDE_FONT = 18  # px: the smallest chart text on a slide
SLIDE_TITLE = 22
# An exported slide image is drawn at 1600×900 and scaled by 1.2 to 1920×1080: 24 px there are 28.8 px on the
# slide, readable from the back of a room.
EXPORT_FONT = 24
SCREEN_WIDTH = 1216  # px: a 1280 px screen less presenter mode's side padding
CHAR_WIDTH = 0.62  # a character's mean width in a sans-serif font, in font sizes
ROTATED_LABELS = 8.3  # font sizes: the x axis's rotated token labels below a heatmap (150 px at SLIDE_FONT)


def for_slides(fig, max_height: int | None = None, width: int = SCREEN_WIDTH, font: int = SLIDE_FONT):
    """``fig`` restyled in place for presenting (and returned): every label at least ``font`` px, black on
    white, darker gridlines, no taller than ``max_height``; heatmap cell text at ``font`` where it fits a cell
    of a ``width`` px wide chart, else left to the hover."""
    title = round(font * SLIDE_TITLE / SLIDE_FONT)
    fig.update_layout(
        font=dict(size=font, color="#000000"),
        title_font=dict(size=title, color="#000000"),
        hoverlabel=dict(font_size=font),
        legend=dict(font=dict(size=font)),
        paper_bgcolor="#ffffff", plot_bgcolor="#ffffff",
    )
    axes = dict(tickfont_size=font, title_font_size=font, gridcolor="#9a9a9a", linecolor="#000000",
                automargin=True)  # larger labels push the margins out instead of overlapping the titles
    if any(t.type == "heatmap" for t in fig.data):
        axes["showgrid"] = False  # a heatmap's cells are its grid
    fig.update_xaxes(**axes)
    fig.update_yaxes(**axes)
    for trace in fig.data:
        if hasattr(trace, "colorbar"):
            trace.colorbar.tickfont = dict(size=font)
            trace.colorbar.title.font = dict(size=font)
        if getattr(trace, "textfont", None) is not None and trace.type != "heatmap":
            trace.textfont.size = max(font, trace.textfont.size or 0)
        if trace.type == "bar":
            trace.constraintext = "none"  # plotly shrinks a bar's text to the bar's thickness: 18 px became 12
    if max_height is not None and (fig.layout.height or 450) > max_height:
        fig.update_layout(height=max_height)
    elif max_height is not None and any(t.type == "heatmap" and t.texttemplate for t in fig.data):
        fig.update_layout(height=max_height)  # the screen's whole height: room for cell text at slide size
    if fig.layout.title.text and (fig.layout.margin.t or 80) < 2 * title:
        fig.update_layout(margin_t=2 * title)  # a title at this size needs the room above the plot
    if (fig.layout.margin.b or 80) < font * 6.7:
        fig.update_layout(margin_b=round(font * 6.7))  # rotated token labels at this size need the room
    for note in fig.layout.annotations or ():
        note.font.size = max(font, note.font.size or 0)
    for menu in (*(fig.layout.updatemenus or ()), *(fig.layout.sliders or ())):
        menu.font = dict(size=font)
    for slider in fig.layout.sliders or ():
        slider.currentvalue.font = dict(size=font)
    _thin_ticks(fig, font)
    _thin_category_ticks(fig, width, font)
    _thin_colorbar_ticks(fig, font)
    for trace in fig.data:
        if trace.type == "heatmap" and trace.texttemplate:
            _fit_cell_text(fig, trace, width, font)
    _place_labels(fig, width, font)
    return fig


def _place_labels(fig, width: int, font: int) -> None:
    """Point labels placed for the page (lens/figures/labels.py) placed again for this size: a shorter plot and
    larger type bring labels into one another."""
    from .labels import relabel

    m = fig.layout.margin
    # Beside the plot: the y axis's labels and a colour bar; above and below, automargin takes ~30 px more than the
    # margins at this type size (measured: a 450 px trajectory chart's plot is 249 px tall, 280 by its margins).
    plot = (max(100, width - (m.l or 80) - (m.r or 80) - 150),
            max(60, (fig.layout.height or 450) - (m.t or 100) - (m.b or 80) - 40))
    for trace in (*fig.data, *(d for f in fig.frames or () for d in f.data or ())):
        relabel(trace, plot, font)


def cell_text_fits(n_rows: int, n_cols: int, chars: int, height: float, width: float,
                   font: int = SLIDE_FONT) -> bool:
    """Whether ``chars`` characters at ``font`` px fit a cell of an ``n_rows`` × ``n_cols`` grid of
    ``height`` × ``width`` px (a line and a little air above and below, a character's width per character)."""
    return height / max(1, n_rows) >= font * 1.25 and width / max(1, n_cols) >= font * CHAR_WIDTH * chars + 4


def slide_rows(height: int, top: int = 60, font: int = SLIDE_FONT) -> int:
    """How many heatmap rows of ``font`` px text a chart ``height`` px tall holds (rotated labels below)."""
    return max(1, int((height - top - ROTATED_LABELS * font) // (font * 1.25)))


def _fit_cell_text(fig, trace, width: int, font: int) -> None:
    """Cell text at ``font`` px where every cell's text fits; otherwise none (the hover keeps it)."""
    z = trace.z if trace.z is not None else []
    n_rows, n_cols = len(z), (len(z[0]) if len(z) else 0)
    texts = [str(t) for row in (trace.text or []) for t in row]
    chars = max((len(t) for t in texts), default=0)
    margin = fig.layout.margin
    plot_h = (fig.layout.height or 450) - (margin.t or 80) - max(margin.b or 80, ROTATED_LABELS * font)
    plot_w = width - (margin.l or 80) - (margin.r or 80) - 5 * font  # the colour bar
    if not (n_rows and n_cols):
        return
    # The longest text that fits, down to 4 characters (a token's start says which it is); else no text.
    fit = next((c for c in range(chars, 3, -1) if cell_text_fits(n_rows, n_cols, c, plot_h, plot_w, font)), None)
    if fit is None:
        trace.texttemplate = None  # text smaller than a slide's could not be read from the back of a room
        return
    trace.textfont.size = font
    if fit < chars:
        trace.text = [[_cut(str(t), fit) for t in row] for row in trace.text]
        for frame in fig.frames or ():  # an animation's frames bring their own text
            for d in frame.data:
                if d.type == "heatmap" and d.text is not None:
                    d.text = [[_cut(str(t), fit) for t in row] for row in d.text]


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _thin_ticks(fig, font: int = SLIDE_FONT) -> None:
    """Keep every n-th explicit y tick, so that labels at ``font`` px do not overlap."""
    y = fig.layout.yaxis
    if not y.tickvals or not y.ticktext:
        return
    k = _step(len(y.tickvals), max(2, int(_plot_height(fig) / (font * 1.5))))
    if k > 1:
        fig.update_yaxes(tickvals=list(y.tickvals)[::k], ticktext=list(y.ticktext)[::k])


def _plot_height(fig) -> int:
    """The plot's height in px: the figure's less its top and bottom margins (plotly's defaults where unset)."""
    margin = fig.layout.margin
    return (fig.layout.height or 450) - (margin.t or 80) - (margin.b or 80)


def _step(n: int, fits: int) -> int:
    """Keep every k-th of ``n`` labels so that at most ``fits`` are left: k (1: all of them)."""
    return -(-n // max(1, fits))


def _thin_colorbar_ticks(fig, font: int = SLIDE_FONT) -> None:
    """Keep every n-th explicit tick of each colour bar (a heatmap's, or a scatter's markers'), so that labels at
    ``font`` px do not run into each other on a short chart (emb, L3 … L30 by a 200 px bar once overlapped)."""
    room = _plot_height(fig)
    for trace in fig.data:
        marker = getattr(trace, "marker", None)
        for bar in (getattr(trace, "colorbar", None), getattr(marker, "colorbar", None) if marker else None):
            if bar is None or bar.tickvals is None or bar.ticktext is None:
                continue
            k = _step(len(bar.tickvals), max(2, int(room * (bar.len if bar.len is not None else 1) / (font * 1.4))))
            if k > 1:
                bar.tickvals, bar.ticktext = list(bar.tickvals)[::k], list(bar.ticktext)[::k]


def _thin_category_ticks(fig, width: int, font: int = SLIDE_FONT) -> None:
    """Keep every n-th label of a line or bar chart's horizontal category axis (the layers: emb, L1 … L30), so that
    labels at ``font`` px stand apart on a ``width`` px chart; plotly's own thinning left them 2–3 px apart there.
    (A heatmap's token columns each keep their label.)"""
    x = fig.layout.xaxis
    if x.tickvals is not None or x.dtick is not None or x.tickangle not in (None, 0) or \
            any(t.type == "heatmap" for t in fig.data):
        return
    categories: dict[str, None] = {}
    for trace in fig.data:
        values = getattr(trace, "x", None)
        if values is None or not len(values) or not all(isinstance(v, str) for v in values):
            return  # numbers (or no x): plotly's own ticks
        categories.update(dict.fromkeys(values))
    names = list(categories)
    margin = fig.layout.margin
    plot = width - (margin.l if margin.l is not None else 80) - (margin.r if margin.r is not None else 80) - 4 * font
    label = max(len(n) for n in names) * CHAR_WIDTH * font + 0.6 * font  # its width and a gap
    k = -(-int(len(names) * label) // max(1, int(plot)))
    if k > 1:
        fig.update_xaxes(tickmode="array", tickvals=names[::k], ticktext=names[::k])


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
