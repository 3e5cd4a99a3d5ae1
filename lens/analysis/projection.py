"""Project every token's residual-stream vector at every layer to 2-D or 3-D.

Two modes:

- ``joint``: one projection fitted on the points of all layers together, so each
  token leaves a trajectory through depth in one shared space;
- ``aligned``: one PCA per layer, each rotated/reflected onto the previous
  layer's layout (orthogonal Procrustes), to step through layers and compare
  layouts without arbitrary sign flips.

Before fitting, each layer is divided by its RMS (over its kept points and
dimensions): norms grow with depth and would otherwise dominate. PCA is exact
(an eigendecomposition in float64), fast enough to be the default; UMAP
(umap-learn) is imported only when asked for, with the 15 nearest neighbours
precomputed by torch.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ..errors import LensError
from ..engine.trace import Trace
from ..options import MAX_UMAP_POINTS, Progress, ProjectionOptions
from ..results import ProjectionResult
from .linalg import serial
from .points import PointSet, select_points



# ---------------------------------------------------------------- maths


def pca(X, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA of the rows of ``X`` [n, d]: (coordinates [n, k], explained-variance ratio [k]).

    An eigendecomposition in float64 of the smaller of XᵀX and XXᵀ (numpy on one thread,
    see ``lens.linalg``). Each component's sign is fixed so that its
    largest-magnitude coordinate is positive.
    """
    Xc = np.asarray(X.numpy() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    Xc = Xc - Xc.mean(0, keepdims=True)
    n, d = Xc.shape
    total = float(np.einsum("ij,ij->", Xc, Xc))
    if n <= d:  # Gram route: the eigenvectors of X Xᵀ, scaled, are the coordinates
        with serial():
            evals, evecs = np.linalg.eigh(Xc @ Xc.T)
        evals, evecs = np.clip(evals[::-1][:k], 0, None), evecs[:, ::-1][:, :k]
        coords = evecs * np.sqrt(evals)
    else:
        C = Xc.T @ Xc
        with serial():
            evals, evecs = np.linalg.eigh(C)
        evals, evecs = np.clip(evals[::-1][:k], 0, None), evecs[:, ::-1][:, :k]
        coords = Xc @ evecs
    if coords.shape[1] < k:  # fewer points than dimensions asked for
        coords = np.concatenate([coords, np.zeros((n, k - coords.shape[1]))], axis=1)
        evals = np.concatenate([evals, np.zeros(k - evals.shape[0])])
    big = np.abs(coords).argmax(0)
    signs = np.sign(coords[big, np.arange(k)])
    signs[signs == 0] = 1
    coords = coords * signs
    ratio = evals / total if total > 0 else np.zeros(k)
    return coords, ratio


def procrustes_rotation(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The orthogonal Q (rotation or reflection) minimising ‖A Q − B‖ for centred A, B [n, k]."""
    with serial():
        U, _, Vt = np.linalg.svd(A.T @ B)
    return U @ Vt


def align_layers(coords: np.ndarray) -> np.ndarray:
    """Rotate each layer's centred layout [R, N, k] onto the previous (already aligned) one."""
    out = coords - coords.mean(axis=1, keepdims=True)
    for r in range(1, out.shape[0]):
        out[r] = out[r] @ procrustes_rotation(out[r], out[r - 1])
    return out


def knn(X: torch.Tensor, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self included, first) by Euclidean distance, with torch."""
    X = X.float()
    idx, dist = [], []
    for s in range(0, X.shape[0], chunk):
        D = torch.cdist(X[s:s + chunk], X, compute_mode="use_mm_for_euclid_dist")
        rows = torch.arange(s, min(s + chunk, X.shape[0]))
        D[rows - s, rows] = -1.0  # each point is its own first neighbour, even among duplicates
        v, i = D.topk(k, dim=1, largest=False)
        idx.append(i)
        dist.append(v.clamp_min(0))
    return torch.cat(idx).numpy().astype(np.int64), torch.cat(dist).numpy().astype(np.float32)


def umap_fit(X: torch.Tensor, dims: int, n_neighbors: int, min_dist: float, seed: int | None,
             progress: Progress | None = None, max_points: int = MAX_UMAP_POINTS) -> np.ndarray:
    say = progress or (lambda f, m: None)
    n = X.shape[0]
    if n > max_points:
        raise LensError(
            f"UMAP on {n:,} points (layers × tokens) would take minutes; the limit here is {max_points:,}. "
            "Use PCA, or a shorter prompt or corpus"
        )
    if n < 4:
        raise LensError(f"UMAP needs at least 4 points, not {n}; use PCA")
    k = min(n_neighbors, n - 1)
    say(0.05, f"finding the {k} nearest neighbours of {n:,} points")
    idx, dists = knn(X, k)
    say(0.15, "loading UMAP (the first time in a process compiles its code: 10–30 s)")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap  # lazy: its numba warm-up is paid only when UMAP is asked for

        say(0.3, f"optimising the UMAP layout of {n:,} points")
        model = umap.UMAP(n_neighbors=k, n_components=dims, min_dist=min_dist, random_state=seed,
                          precomputed_knn=(idx, dists), force_approximation_algorithm=True,
                          transform_mode="embedding")
        emb = model.fit_transform(X.numpy())
    say(1.0, "UMAP done")
    return np.asarray(emb, dtype=np.float32)


# ---------------------------------------------------------------- the analysis


def project_points(pts: PointSet, options: ProjectionOptions = ProjectionOptions(),
                   progress: Progress | None = None, max_umap_points: int = MAX_UMAP_POINTS) -> ProjectionResult:
    options.check()
    X = pts.X  # [R, N, d]
    R, N, d = X.shape
    k = options.dims
    norms = X.norm(dim=-1)
    if options.rms_scale:
        rms = X.pow(2).mean(dim=(1, 2)).sqrt().clamp_min(1e-12)
    else:
        rms = torch.ones(R)
    Xs = X / rms.view(R, 1, 1)
    t0 = time.perf_counter()
    explained = np.full((R, k), np.nan, np.float32)
    if options.method == "umap":
        coords = umap_fit(Xs.reshape(R * N, d), k, options.n_neighbors, options.min_dist, options.seed,
                          progress, max_points=max_umap_points).reshape(R, N, k)
    elif options.mode == "joint":
        c, ratio = pca(Xs.reshape(R * N, d), k)
        coords = c.reshape(R, N, k)
        explained[:] = ratio
    else:
        coords = np.empty((R, N, k))
        for r in range(R):
            coords[r], explained[r] = pca(Xs[r], k)
            if progress is not None:
                progress((r + 1) / R, f"PCA of layer {pts.layers[r]}")
        coords = align_layers(coords)
    seconds = time.perf_counter() - t0
    return ProjectionResult(
        model=pts.model, n_layers=pts.n_layers, layers=list(pts.layers), tokens=list(pts.tokens),
        token_ids=list(pts.token_ids), positions=list(pts.positions), text_index=list(pts.text_index),
        n_texts=pts.n_texts, coords=np.asarray(coords, np.float32), norms=norms.numpy().astype(np.float32),
        rms=rms.numpy().astype(np.float32), explained=explained, method=options.method, mode=options.mode,
        seconds=float(seconds), options=options.key(),
    )


def project(traces: Sequence[Trace], options: ProjectionOptions = ProjectionOptions(),
            special_ids=(), progress: Progress | None = None, max_umap_points: int = MAX_UMAP_POINTS) -> ProjectionResult:
    """Projection of the residual streams of one or more traced texts."""
    options.check()
    pts = select_points(traces, skip_first=options.skip_first, skip_special=options.skip_special,
                        special_ids=special_ids)
    return project_points(pts, options, progress, max_umap_points)
