"""The slide look: chart text on a projector and on an exported slide is large enough to read from the back
of a room, or left to the hover where it cannot be; colour scales read the same way everywhere."""
from __future__ import annotations

import re

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
import pytest

from lens.figures.generation import generation_figure
from lens.figures.logit_lens import METRICS, logit_lens_figure, strided_rows, stride_to_fit
from lens.figures.style import EXPORT_FONT, SLIDE_FONT, cell_text_fits, for_slides, slide_rows
from lens.options import GenerateOptions, LensOptions


@pytest.fixture(scope="module")
def backend(bundled):
    from lens.engine_backend import local_backend

    return local_backend(bundled, None)


def _luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)) if colour.startswith("#") else \
        (float(v) / 255 for v in colour[colour.index("(") + 1:-1].split(",")[:3])
    lin = lambda v: v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4  # noqa: E731
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


@pytest.mark.parametrize("key", list(METRICS))
def test_every_metric_colour_scale_is_monotone_in_lightness(key):
    """A diverging or dark-ended scale made the highest values look lighter than middle ones."""
    lum = [_luminance(c) for _, c in pc.get_colorscale(METRICS[key].colorscale)]
    steps = np.diff(lum)
    assert (steps <= 1e-9).all() or (steps >= -1e-9).all(), (key, np.round(lum, 2))


def test_stride_to_fit_is_the_smallest_stride_that_fits():
    for n in (2, 7, 13, 31, 49):
        for most in (2, 5, 10, 40):
            s = stride_to_fit(n, most)
            assert len(strided_rows(n, s)) <= max(2, most)
            assert s == 1 or len(strided_rows(n, s - 1)) > max(2, most)


def _shown_text_sizes(fig) -> list[float]:
    return [t.textfont.size for t in fig.data if t.type == "heatmap" and t.texttemplate]


def test_presenter_cell_text_is_slide_size_or_left_to_the_hover(backend):
    """All 31 rows in 450 px cannot hold 18 px text: it is dropped (the hover keeps every token); at the stride
    presenter mode chooses it is drawn at 18 px."""
    r = backend.logit_lens("The capital of France is", LensOptions(top_k=3))
    n_rows = len(r.layers)
    dense = for_slides(logit_lens_figure(r, stride=1), max_height=450)
    assert _shown_text_sizes(dense) == [] and dense.data[0].customdata is not None
    stride = stride_to_fit(n_rows, slide_rows(450, top=60))
    fig = for_slides(logit_lens_figure(r, stride=stride), max_height=450)
    assert _shown_text_sizes(fig) == [SLIDE_FONT]
    # The grid it draws holds its text (checked with the plain arithmetic, not the function that decided).
    rows, cols = len(fig.data[0].z), len(fig.data[0].z[0])
    longest = max(len(t) for row in fig.data[0].text for t in row)
    plot_h = 450 - fig.layout.margin.t - 150
    assert plot_h / rows >= 18 * 1.25 and (1216 - 60 - 20 - 90) / cols >= 18 * 0.62 * longest + 4
    assert all(len(t) <= longest for row in fig.data[0].text for t in row)


def test_cell_text_fits_checks_both_directions():
    assert cell_text_fits(10, 10, 5, 10 * 23, 10 * 60)
    assert not cell_text_fits(10, 10, 5, 10 * 22, 10 * 60)  # rows too low for 18 px
    assert not cell_text_fits(10, 10, 8, 10 * 23, 10 * 60)  # 8 characters need 93 px


def test_long_cell_text_is_cut_to_what_fits_not_drawn_small():
    z = np.zeros((4, 14))
    text = [["abcdefghijkl"] * 14 for _ in range(4)]
    fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}"))
    fig.update_layout(height=450, margin=dict(l=60, r=20, t=40, b=90))
    for_slides(fig, width=1216)
    shown = fig.data[0].text[0][0]
    assert fig.data[0].textfont.size == SLIDE_FONT and shown.endswith("…") and 4 <= len(shown) < 12
    assert (1216 - 60 - 20 - 90) / 14 >= 18 * 0.62 * len(shown) + 4


def test_generation_slider_labels_the_boxed_columns(backend):
    opts = GenerateOptions(max_new_tokens=6)
    gen = backend.generate("The capital of France is", opts)
    lens = backend.generation_lens("The capital of France is", opts, LensOptions(top_k=1))
    fig = generation_figure(gen, lens)
    P, T = gen.n_prompt, len(gen.token_ids)
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == [str(p) for p in range(P - 1, T)]
    # Its ends sit just outside the centres of the first and last boxed columns (where the axis draws them).
    first, last = (P - 1 + 0.5) / T, (T - 1 + 0.5) / T
    assert slider.x < first < slider.x + 0.05 and slider.x + slider.len > last > slider.x + slider.len - 0.05


def test_an_exported_slide_draws_its_text_at_28_px_or_more(backend):
    """The 1920×1080 PNG is the 1600×900 drawing scaled by 1.2: text of 24 px there is 28.8 px on the slide."""
    from lens.export import SLIDE, static_image

    r = backend.logit_lens("The capital of France is", LensOptions(top_k=3))
    svg = static_image(logit_lens_figure(r, stride=2), "svg").decode()
    sizes = [float(s) for s in re.findall(r"font-size: ?([\d.]+)px", svg)]
    assert sizes and min(sizes) >= EXPORT_FONT, sorted(set(sizes))
    assert min(sizes) * 1920 / SLIDE[0] >= 28
    # At a stride of 2 the 16 rows hold the cell tokens at that size (the README says so).
    assert "Paris" in svg and svg.count(">␣of<") >= 3


def test_a_layer_axis_on_a_slide_keeps_labels_that_stand_apart():
    """30 blocks on half a slide: every n-th label, each 18 px label with room beside it (plotly's own thinning
    left 2.5 px between them); a numeric axis and a heatmap's token columns are left as they are."""
    from lens.figures.style import CHAR_WIDTH, SCREEN_WIDTH

    names = [f"L{i}" for i in range(1, 31)]
    fig = for_slides(go.Figure(go.Bar(x=names, y=np.arange(30.0))).update_layout(margin=dict(l=10, r=10)), 500,
                     width=SCREEN_WIDTH // 2)
    kept = list(fig.layout.xaxis.tickvals)
    assert kept == names[::len(names) // len(kept)][:len(kept)] and 2 <= len(names) // len(kept) <= 4, kept
    plot = SCREEN_WIDTH // 2 - 20 - 4 * SLIDE_FONT
    assert len(kept) * (3 * CHAR_WIDTH * SLIDE_FONT + 0.6 * SLIDE_FONT) <= plot
    assert list(fig.layout.xaxis.ticktext) == kept
    wide = for_slides(go.Figure(go.Bar(x=names[:8], y=np.arange(8.0))), 500)  # few enough to keep all
    assert wide.layout.xaxis.tickvals is None
    numeric = for_slides(go.Figure(go.Scatter(x=np.arange(30), y=np.arange(30.0))), 500, width=SCREEN_WIDTH // 2)
    assert numeric.layout.xaxis.tickvals is None
    heat = for_slides(go.Figure(go.Heatmap(z=np.ones((2, 30)), x=names)), 500, width=SCREEN_WIDTH // 2)
    assert heat.layout.xaxis.tickvals is None


def test_a_bars_text_on_a_slide_is_not_shrunk_to_the_bar():
    fig = for_slides(go.Figure(go.Bar(x=[0.77, 0.06], y=["a", "b"], orientation="h", text=["77.3%", "6.5%"],
                                      textposition="auto")), 300)
    assert fig.data[0].constraintext == "none" and fig.data[0].textfont.size >= SLIDE_FONT


def test_a_colour_bars_layer_ticks_on_a_short_slide_chart_stand_apart():
    """A projection's colour bar names every third layer (11 labels); on a slide chart 200 px tall, fewer, each
    label at least 1.4 lines from the next."""
    ticks = list(range(0, 31, 3))
    fig = go.Figure(go.Scatter(x=np.arange(31.0), y=np.arange(31.0), mode="markers",
                               marker=dict(color=np.arange(31), colorbar=dict(tickvals=ticks,
                                                                              ticktext=[f"L{t}" for t in ticks]))))
    fig.update_layout(height=320, margin=dict(t=40, b=80))
    for_slides(fig, 320)
    bar = fig.data[0].marker.colorbar
    room = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert 2 <= len(bar.tickvals) < len(ticks) and room / len(bar.tickvals) >= 1.4 * SLIDE_FONT
    assert list(bar.ticktext) == [f"L{t}" for t in bar.tickvals] and bar.tickvals[0] == 0
