"""lens/figures/labels.py: scatter labels beside their points, none over another (judged at presenter size)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lens.figures.labels import (CHAR_EM, FONT_PX, LINE_EM, MARGIN_PX, PLOT_PX, POSITIONS, _box, _overlap,
                                 label_positions, shown_labels)


def boxes(x, y, texts, sides, x_range, y_range):
    """Each label's box in pixels, computed here the plain way from the axes and the font (None: left out)."""
    out = []
    for xi, yi, t, side in zip(x, y, texts, sides):
        if side is None:
            out.append(None)
            continue
        px = (xi - x_range[0]) / (x_range[1] - x_range[0]) * PLOT_PX[0]
        py = PLOT_PX[1] - (yi - y_range[0]) / (y_range[1] - y_range[0]) * PLOT_PX[1]
        out.append(_box(side, px, py, CHAR_EM * FONT_PX * len(t) + 2 * MARGIN_PX, LINE_EM * FONT_PX + 2 * MARGIN_PX))
    return out


def test_a_lone_label_goes_above_its_point_and_far_apart_labels_stay_there():
    assert label_positions([0.0], [0.0], ["Paris"]) == ["top center"]
    assert label_positions([0, 10, 20], [0, 10, 0], ["a", "b", "c"], (-1, 21), (-1, 11)) == ["top center"] * 3


def test_two_labels_that_would_overlap_go_to_different_sides():
    """The home prompt's projection ended so once: "France" just above "capital" (presenter mode cut into both)."""
    x, y, texts = [19.5, 19.7], [5.3, 3.3], ["France", "capital"]
    rng = ((-10.0, 26.0), (-11.0, 21.0))
    assert _overlap(*boxes(x, y, texts, ["top center"] * 2, *rng))  # the old placement, overlapping
    sides = label_positions(x, y, texts, *rng)
    assert None not in sides and sides != ["top center"] * 2
    assert not _overlap(*boxes(x, y, texts, sides, *rng))


def test_box_sides():
    left, top, right, bottom = _box("top center", 100, 100, 40, 20)
    assert (left, right) == (80, 120) and bottom < 100
    assert _box("bottom center", 100, 100, 40, 20)[1] > 100
    assert _box("middle right", 100, 100, 40, 20)[0] > 100
    assert _box("middle left", 100, 100, 40, 20)[2] < 100


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10), st.text("abcdefgh", min_size=1, max_size=8)),
                min_size=1, max_size=12))
def test_no_label_drawn_covers_another_and_one_is_left_out_only_for_want_of_room(points):
    """Boxes computed here: no two labels drawn overlap, and a label left out overlaps a drawn one on every side."""
    x, y, texts = (list(v) for v in zip(*points))
    rng = ((-1.0, 11.0), (-1.0, 11.0))
    sides = label_positions(x, y, texts, *rng)
    assert len(sides) == len(x) and set(sides) <= set(POSITIONS) | {None}
    assert any(sides)  # one at least always has room
    placed = boxes(x, y, texts, sides, *rng)
    drawn = [b for b in placed if b is not None]
    assert not any(_overlap(a, b) for i, a in enumerate(drawn) for b in drawn[:i])
    for i, side in enumerate(sides):
        if side is None:
            for other in POSITIONS:
                b = boxes([x[i]], [y[i]], [texts[i]], [other], *rng)[0]
                assert any(_overlap(b, d) for d in placed if d is not None), (i, other)


def test_a_label_left_out_is_drawn_as_no_text():
    assert shown_labels(["a", "b"], ["top center", None]) == (["a", ""], ["top center", "top center"])


def test_the_projection_figures_place_their_labels_for_the_page_and_again_for_slides():
    """The trajectory chart's end labels and each layer frame's labels are placed for the page's plot, and placed
    again by the slide look for presenter mode's plot and type (lens/figures/style.py), from the labels and ranges
    the trace keeps."""
    from lens.engine_backend import local_backend
    from lens.figures.projection import BELOW, PLOT_WIDTH, TRAJECTORY_HEIGHT, _label, aligned_figure, trajectory_figure
    from lens.figures.style import SLIDE_FONT, for_slides
    from lens.model.loading import load_model
    from lens.options import ProjectionOptions

    backend = local_backend(load_model("tiny-llama"))
    r = backend.projection("hello there, the end; see me here", ProjectionOptions(method="pca"))
    texts = [_label(t) for t in r.tokens]  # the labels themselves, as the chart writes them
    ranges = [(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
              for lo, hi in [(np.nanmin(r.coords[..., d]), np.nanmax(r.coords[..., d])) for d in range(2)]]

    def placed(trace, plot, font):
        (x0, x1), (y0, y1) = trace.meta["ranges"]
        return shown_labels(texts, label_positions(trace.x, trace.y, texts, (x0, x1), (y0, y1), plot, font))

    fig = trajectory_figure(r)
    labels = [t for t in fig.data if t.mode == "text"][0]
    assert labels.meta["labels"] == texts and np.allclose(labels.meta["ranges"], ranges)
    assert (list(labels.text), list(labels.textposition)) == placed(labels, (PLOT_WIDTH, TRAJECTORY_HEIGHT - 110), 13)
    slide = for_slides(fig, 500, width=1216)
    m = slide.layout.margin
    labels = [t for t in slide.data if t.mode == "text"][0]
    plot = (1216 - m.l - m.r - 150, 500 - m.t - m.b - 40)
    assert (list(labels.text), list(labels.textposition)) == placed(labels, plot, SLIDE_FONT)

    anim = aligned_figure(r, labels=True)
    for frame in (anim.frames[0].data[0], anim.frames[-1].data[0]):
        assert tuple(frame.meta["ranges"][0]) == tuple(anim.layout.xaxis.range)
        assert (list(frame.text), list(frame.textposition)) == placed(frame, (PLOT_WIDTH, 640 - 50 - BELOW), 13)
