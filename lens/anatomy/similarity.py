"""Linear CKA (Kornblith et al. 2019) between layers: how alike two layers' representations of the same tokens are,
up to rotation and scale (1: the same up to those; near 0: unrelated)."""
from __future__ import annotations

import numpy as np


def _grams(xs) -> np.ndarray:
    """[n_layers, n, n] the Gram matrix of each layer's centred representations [n, d]; CKA compares these."""
    out = []
    for x in xs:
        c = np.asarray(x, dtype=np.float64)
        c = c - c.mean(0, keepdims=True)
        out.append(c @ c.T)
    return np.stack(out)


def linear_cka(xs, ys=None) -> np.ndarray:
    """[len(xs), len(ys)] linear CKA between each representation of ``xs`` and each of ``ys`` (default: xs), every
    one [n, d_i] over the same n samples: ⟨K_x, K_y⟩ / (‖K_x‖ ‖K_y‖) with K = X_c X_cᵀ (the same as
    ‖Y_cᵀ X_c‖²_F / (‖X_cᵀ X_c‖_F ‖Y_cᵀ Y_c‖_F)); NaN where a layer is constant over the samples."""
    kx = _grams(xs)
    ky = kx if ys is None else _grams(ys)
    fx = kx.reshape(len(kx), -1)
    fy = ky.reshape(len(ky), -1)
    nx, ny = np.linalg.norm(fx, axis=1), np.linalg.norm(fy, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (fx @ fy.T) / np.outer(nx, ny)
    if ys is None:  # exactly 1 on the diagonal (rounding would leave 1 ± 1e-16)
        np.fill_diagonal(out, np.where(nx > 0, 1.0, np.nan))
    return out
