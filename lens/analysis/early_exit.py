"""Early exit: from which row on a lens already says the model's final answer, and for good.

The saturation row of a position (Geva et al. 2022) is the first row whose top-1 equals
the model's own prediction and stays equal in every later row; a model that could stop
there ("exit early", as LayerSkip trains models to) would give the same token.
"""
from __future__ import annotations

import numpy as np


def saturation_rows(top1: np.ndarray, final: np.ndarray) -> list[int | None]:
    """[P] per position, the first row r with ``top1[r':, p] == final[p]`` for every r' ≥ r; None where
    the last row itself disagrees. ``top1`` is [R, P] (row 0: the embeddings)."""
    agree = np.asarray(top1) == np.asarray(final)[None, :]  # [R, P]
    R = agree.shape[0]
    # Rows from the bottom up that agree all the way to the top: the reversed cumulative AND.
    tail = np.flip(np.logical_and.accumulate(np.flip(agree, 0), 0), 0)
    out: list[int | None] = []
    for p in range(agree.shape[1]):
        n_agree = int(tail[:, p].sum())  # tail is False then True up the rows
        out.append(R - n_agree if n_agree else None)
    return out


def exit_fractions(exit_rows: list[int | None], n_rows: int) -> np.ndarray:
    """[R] the share of positions that could exit at or before each row (never-saturated ones never)."""
    counts = np.zeros(n_rows, np.float64)
    for r in exit_rows:
        if r is not None:
            counts[r] += 1
    return np.cumsum(counts) / max(1, len(exit_rows))
