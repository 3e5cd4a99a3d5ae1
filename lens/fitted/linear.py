"""The linear-shortcut lens: per row, the ridge least-squares affine map from ``h_r`` to ``h_L``.

Solved from the normal equations: over the corpus we add up ``XᵀX`` and ``XᵀY`` per row
(``X`` the row's vectors with a column of ones for the bias, ``Y`` the last block's
output before the final norm), then solve ``(XᵀX + λD) [M; b] = XᵀY`` once per row,
``D`` the identity with a zero for the bias (which is not shrunk). No gradient descent,
and the corpus is read once.

Each token is weighted by ``1 / ‖h_L‖²``: the read-out normalises, so what matters is
the direction of the prediction, and without the weight a few huge vectors (the first
token of a sequence, an attention sink with a norm ~10× the rest) would set the fit.
``λ = ridge · tr(XᵀX) / d`` (per row, on the weighted sums) keeps the solve well-posed
for any corpus size.
"""
from __future__ import annotations

import time

import torch

from ..errors import LensError
from ..jobs import checkpoint
from ..options import Progress
from .affine import AffineLens, content_id
from .collect import batches, residual_rows
from .corpus import Corpus

DEFAULT_RIDGE = 1e-3
FIT_BATCH = 8  # chunks per forward pass


def weighted_design(rows: torch.Tensor, sqrt_d: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(X [L, N, d+1], Y [N, d]) scaled by each token's weight ``√d / ‖h_L‖`` (a square root of 1/‖h_L‖²,
    times √d so that numbers stay near 1)."""
    y = rows[-1]
    s = sqrt_d / y.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # [N, 1]
    X = torch.cat([rows[:-1], torch.ones(*rows.shape[1:-1], 1).expand(rows.shape[0] - 1, -1, 1)], -1)
    return X * s, y * s


class NormalEquations:
    """Running ``XᵀX`` [L, d+1, d+1] and ``XᵀY`` [L, d+1, d] in float64 (each batch's sums in float32)."""

    def __init__(self, n_rows: int, d: int):
        self.d = d
        self.G = torch.zeros(n_rows, d + 1, d + 1, dtype=torch.float64)
        self.C = torch.zeros(n_rows, d + 1, d, dtype=torch.float64)
        self.n_tokens = 0

    def add(self, rows: torch.Tensor) -> None:
        X, Y = weighted_design(rows, self.d ** 0.5)
        Xt = X.transpose(1, 2)
        self.G += torch.bmm(Xt, X).double()
        self.C += torch.matmul(Xt, Y).double()
        self.n_tokens += Y.shape[0]

    def solve(self, ridge: float = DEFAULT_RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
        """(M [L, d, d], b [L, d]) minimising ``Σ w‖x M + b − y‖² + λ‖M‖²`` per row."""
        d = self.d
        diag = torch.ones(d + 1, dtype=torch.float64)
        diag[-1] = 0.0  # the bias is not shrunk
        lam = ridge * torch.diagonal(self.G[:, :d, :d], dim1=1, dim2=2).sum(-1) / d  # [L]
        A = self.G + lam.view(-1, 1, 1) * torch.diag(diag)
        sol = torch.linalg.solve(A, self.C)  # [L, d+1, d]
        return sol[:, :d, :].float().contiguous(), sol[:, d, :].float().contiguous()


def fit_linear(engine, corpus: Corpus, ridge: float = DEFAULT_RIDGE, batch: int = FIT_BATCH,
               progress: Progress | None = None) -> AffineLens:
    """The linear-shortcut lens of ``engine``'s model fitted on ``corpus`` (progress after each batch)."""
    adapter = engine.adapter
    adapter.require_lm_head("a fitted lens does not apply")
    if not ridge > 0:
        raise LensError(f"the ridge must be above 0, not {ridge}")
    t0 = time.perf_counter()
    eq = NormalEquations(adapter.n_layers, adapter.d_model)
    total = corpus.n_tokens
    for group in batches(corpus.chunks, batch):
        checkpoint()
        eq.add(residual_rows(engine, group))
        if progress is not None:
            progress(min(eq.n_tokens / total, 0.99), f"linear lens: read {eq.n_tokens:,} of {total:,} corpus tokens")
    weight, bias = eq.solve(ridge)
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress(1.0, f"linear lens fitted on {total:,} tokens in {seconds:.0f} s")
    meta = {"id": content_id(weight, bias), "source": "fitted", "corpus": corpus.name, "corpus_digest": corpus.digest,
            "tokens": total, "ridge": ridge, "seconds": round(seconds, 1)}
    return AffineLens("linear", weight, bias, meta)
