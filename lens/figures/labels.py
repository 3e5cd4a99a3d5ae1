"""Where a scatter's text labels go: each beside its point, on a side where it covers no other label; a label with
no such side is left out (its point keeps its hover). Overlaps are judged in pixels, for the plot's size and text
size: a figure builder places them for the page (``labelled``), and the slide look places them again for presenter
mode's shorter plot and larger type (``relabel``, from the labels and axis ranges the trace keeps in its ``meta``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Plotly's text positions, in the order tried: above the point first (where a lone label goes).
POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "top left",
             "bottom right", "bottom left")
PLOT_PX = (1000.0, 245.0)  # the plot area a size is not given for (a trajectory chart in presenter mode)
FONT_PX = 18.0  # presenter mode's text size
GAP_PX = 4.0  # between a point and its label
CHAR_EM, LINE_EM = 0.55, 1.1  # a label's width per character and its height, in font sizes (Inter as drawn)
MARGIN_PX = 4.0  # kept clear around each label: plotly's own offsets and axis padding are estimated, not known


def _box(position: str, px: float, py: float, w: float, h: float) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a ``w`` × ``h`` label at ``position`` around the point (``px``, ``py``),
    screen coordinates (y grows downwards)."""
    vertical, horizontal = position.split()
    if vertical == "top":
        top = py - GAP_PX - h
    elif vertical == "bottom":
        top = py + GAP_PX
    else:
        top = py - h / 2
    if horizontal == "center":
        left = px - w / 2
    elif horizontal == "right":
        left = px + (GAP_PX if vertical == "middle" else GAP_PX / 2)
    else:
        left = px - (GAP_PX if vertical == "middle" else GAP_PX / 2) - w
    return left, top, left + w, top + h


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


ROUNDS = 12  # passes of each label moving to its least covered side (a few settle the charts drawn here)


def label_positions(x: Sequence[float], y: Sequence[float], texts: Sequence[str],
                    x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                    plot_px: tuple[float, float] = PLOT_PX, font_px: float = FONT_PX) -> list[str | None]:
    """A text position per label (``texts[i]`` at (``x[i]``, ``y[i]``)) such that no two labels drawn overlap, or
    None for a label left out because every side of it would cover one drawn. Each label in turn moves to the side
    that covers the others least (above its point where none does), for a few rounds; then, while two still
    overlap, the label covering most is left out, and at the end a left-out label that has a free side comes back.
    ``x_range``/``y_range``: the axes' ranges (default: the points' own, padded as plotly pads them)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n == 0:
        return []

    def scale(v: np.ndarray, given, size: float) -> np.ndarray:
        lo, hi = given if given is not None else (float(np.nanmin(v)), float(np.nanmax(v)))
        if given is None:
            pad = 0.05 * (hi - lo) or 1.0
            lo, hi = lo - pad, hi + pad
        return (v - lo) / ((hi - lo) or 1.0) * size

    px = scale(x, x_range, plot_px[0])
    py = plot_px[1] - scale(y, y_range, plot_px[1])  # screen y grows downwards
    sizes = [(CHAR_EM * font_px * max(1, len(str(t))) + 2 * MARGIN_PX, LINE_EM * font_px + 2 * MARGIN_PX)
             for t in texts]
    boxes = np.array([[_box(p, px[i], py[i], *sizes[i]) for p in POSITIONS] for i in range(n)])  # [n, sides, 4]
    side = np.zeros(n, dtype=int)
    kept = np.isfinite(px) & np.isfinite(py)

    def covered(i: int) -> np.ndarray:
        """[sides]: how much of the other kept labels, where they are now, each side of label ``i`` covers (px²)."""
        others = kept.copy()
        others[i] = False
        a, b = boxes[i][:, None, :], boxes[others, side[others]][None, :, :]  # [sides, 1, 4], [1, m, 4]
        w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
        h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
        return (np.clip(w, 0, None) * np.clip(h, 0, None)).sum(1)

    def settle() -> None:
        for _ in range(ROUNDS):
            moved = False
            for i in np.flatnonzero(kept):
                cost = covered(i)
                best = int(np.argmin(cost))  # the first side of least cover
                if cost[best] < cost[side[i]]:
                    side[i], moved = best, True
            if not moved:
                return

    settle()
    while kept.any():  # leave out the label that covers most (the last of equals), until none overlap
        cost = np.array([covered(i)[side[i]] if kept[i] else -1.0 for i in range(n)])
        if cost.max() <= 0:
            break
        kept[np.flatnonzero(cost == cost.max())[-1]] = False
        settle()
    for i in range(n):  # a label left out early may have room now
        if not kept[i] and np.isfinite(px[i]) and np.isfinite(py[i]):
            free = np.flatnonzero(covered(i) == 0)
            if len(free):
                side[i], kept[i] = free[0], True
    return [POSITIONS[side[i]] if kept[i] else None for i in range(n)]


def shown_labels(texts: list[str], sides: list[str | None]) -> tuple[list[str], list[str]]:
    """(texts, positions) for plotly: a label left out (``None``) drawn as no text."""
    return ([t if side else "" for t, side in zip(texts, sides)], [side or POSITIONS[0] for side in sides])


def labelled(texts: list[str], x, y, x_range: tuple[float, float], y_range: tuple[float, float],
             plot_px: tuple[float, float], font_px: float) -> dict:
    """A scatter trace's ``text``, ``textposition`` and ``meta`` for these labels on a plot of ``plot_px`` with
    ``font_px`` text; ``meta`` keeps what ``relabel`` needs to place them again at another size."""
    named, sides = shown_labels(list(texts), label_positions(x, y, texts, x_range, y_range, plot_px, font_px))
    return dict(text=named, textposition=sides,
                meta={"labels": list(texts), "ranges": [list(map(float, x_range)), list(map(float, y_range))]})


def relabel(trace, plot_px: tuple[float, float], font_px: float) -> None:
    """Place a ``labelled`` trace's labels again, in place, for a plot of ``plot_px`` with ``font_px`` text."""
    meta = trace.meta if isinstance(trace.meta, dict) else None
    if not meta or "labels" not in meta or trace.x is None:
        return
    (x0, x1), (y0, y1) = meta["ranges"]
    named, sides = shown_labels(meta["labels"], label_positions(trace.x, trace.y, meta["labels"], (x0, x1), (y0, y1),
                                                                plot_px, font_px))
    trace.text, trace.textposition = named, sides
