"""What each block adds to the residual stream, from one pass's activations (numpy, float64).

``h`` is the residual stream [L+1, T, d] (row 0 the embeddings entering block 1, row l the output of block l; the
last row the last block's raw output, before the final norm); ``attn`` and ``mlp`` [L, T, d] what each block's
attention and MLP write. Every measure uses positions ``keep`` (1 … T−1: the first token is left out).
"""
from __future__ import annotations

import numpy as np


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine along the last axis (NaN where a vector is zero)."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / (na * nb)


def norm_growth(h: np.ndarray, keep: slice) -> tuple[np.ndarray, np.ndarray]:
    """Mean ‖h‖ per row [L+1], and each row's over the row before [L]."""
    norm = np.linalg.norm(h[:, keep], axis=-1).mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return norm, norm[1:] / norm[:-1]


def block_change(h: np.ndarray, keep: slice) -> np.ndarray:
    """[L] mean over positions of 1 − cos(h_{l−1}, h_l)."""
    return 1.0 - _cos(h[:-1, keep], h[1:, keep]).mean(1)


def sublayer_shares(h: np.ndarray, attn: np.ndarray, mlp: np.ndarray, keep: slice) -> tuple[np.ndarray, np.ndarray]:
    """[L] each sub-block's part of the block's write Δ = h_l − h_{l−1}: Σ_p ⟨a_p, Δ_p⟩ / Σ_p ‖Δ_p‖² for the attention
    and the same for the MLP (the projection of each write on Δ; they add up to 1 where Δ = a + m, and one may be
    negative where the two writes partly cancel)."""
    delta = (h[1:] - h[:-1])[:, keep]
    total = (delta * delta).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (attn[:, keep] * delta).sum((1, 2)) / total, (mlp[:, keep] * delta).sum((1, 2)) / total


def massive(h: np.ndarray, keep: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: max |h| over the kept positions and every dimension [L+1], its dimension and its position."""
    x = np.abs(h[:, keep])
    rows, T, d = x.shape
    flat = x.reshape(rows, -1).argmax(1)
    pos, dim = np.divmod(flat, d)
    first = keep.start or 0
    return x.reshape(rows, -1).max(1), dim.astype(np.int64), (pos + first).astype(np.int64)


def kurtosis(h: np.ndarray, keep: slice) -> np.ndarray:
    """[L+1] mean over positions of the kurtosis of a vector's coordinates, E[(x−μ)⁴]/σ⁴ (3 for a Gaussian; large
    when a few dimensions dwarf the rest)."""
    x = h[:, keep]
    c = x - x.mean(-1, keepdims=True)
    var = (c ** 2).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((c ** 4).mean(-1) / var ** 2).mean(1)


def top_dimensions(h: np.ndarray, keep: slice, k: int) -> tuple[list[int], np.ndarray]:
    """The ``k`` dimensions of largest mean |h| (over the kept positions) at any row, largest first, and their
    mean |h| per row [L+1, k]."""
    mean_abs = np.abs(h[:, keep]).mean(1)  # [L+1, d]
    order = np.argsort(-mean_abs.max(0), kind="stable")[:k]
    return [int(i) for i in order], mean_abs[:, order]


def embedding_cosines(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token erasure (a proxy): [L+1, T] cos(h_r[p], h_0[p−1]), how much of the previous token's embedding the stream
    at p still carries, and cos(h_r[p], h_0[p]), its own token's; NaN at position 0 (left out)."""
    rows, T, _ = h.shape
    prev = np.full((rows, T), np.nan)
    own = np.full((rows, T), np.nan)
    if T > 1:
        prev[:, 1:] = _cos(h[:, 1:], h[0, :-1][None])
        own[:, 1:] = _cos(h[:, 1:], h[0, 1:][None])
    return prev, own
