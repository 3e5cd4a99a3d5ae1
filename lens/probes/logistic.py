"""L2-regularised logistic regression, deterministic: Newton's method in float64 on the training rows' span.

The loss is Σᵢ log(1 + exp(−sᵢ(w·xᵢ + b))) + (λ/2)‖w‖² (sᵢ = ±1; the bias is not penalised), the objective of
scikit-learn's ``LogisticRegression(C=1/λ)``. A residual stream has more dimensions than a probe set has prompts
(576 against ~60), so the fit runs in the span of the (centred) training rows: any part of w orthogonal to them
changes no prediction and only adds to the penalty, so the optimum lies in that span, and Newton's method there
solves an n×n system instead of a d×d one. Newton with step halving converges in a handful of steps and gives
the same answer on every run (no random start, no shuffling).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MAX_STEPS = 100
TOLERANCE = 1e-10  # on the Newton decrement: the loss is within this of its minimum


@dataclass
class Fit:
    w: np.ndarray  # [d] the weights on the features as given
    b: float
    loss: float  # the regularised objective at (w, b)
    steps: int


def _objective(Z: torch.Tensor, s: torch.Tensor, a: torch.Tensor, lam: float) -> torch.Tensor:
    """Σ softplus(−s·(Z a[:-1] + a[-1])) + λ/2 ‖a[:-1]‖² (Z has orthonormal columns: ‖w‖ = ‖a[:-1]‖)."""
    m = Z @ a[:-1] + a[-1]
    return torch.nn.functional.softplus(-s * m).sum() + 0.5 * lam * (a[:-1] @ a[:-1])


def fit_logistic(X: np.ndarray, y: np.ndarray, lam: float = 1.0) -> Fit:
    """Fit ``y`` (0/1) from the rows of ``X`` [n, d] with L2 strength ``lam`` (> 0)."""
    X = torch.as_tensor(np.asarray(X, np.float64))
    s = torch.as_tensor(np.where(np.asarray(y) > 0, 1.0, -1.0))
    mu = X.mean(0)
    # An orthonormal basis of the centred rows' span: w = V a, so Z = (X − mu) V.
    U, S, Vt = torch.linalg.svd(X - mu, full_matrices=False)
    keep = S > S.max() * 1e-10 if S.numel() else S > 0
    V = Vt[keep].T  # [d, k]
    Z = (X - mu) @ V
    k = Z.shape[1]
    A = torch.cat([Z, torch.ones(len(Z), 1, dtype=Z.dtype)], 1)  # the bias as the last column
    reg = torch.full((k + 1,), float(lam), dtype=Z.dtype)
    reg[-1] = 0.0
    a = torch.zeros(k + 1, dtype=Z.dtype)
    f = _objective(Z, s, a, lam)
    steps = 0
    for steps in range(1, MAX_STEPS + 1):
        m = A @ a
        p = torch.sigmoid(-s * m)  # the weight of each row's error
        g = A.T @ (-s * p) + reg * a
        H = (A.T * (p * (1 - p))) @ A + torch.diag(reg)
        H[-1, -1] += 1e-12  # a separable set: keep the bias's row solvable
        step = torch.linalg.solve(H, g)
        decrement = float(g @ step)
        if decrement / 2 < TOLERANCE:
            break
        t = 1.0
        while True:  # step halving: the objective never rises
            new = a - t * step
            fn = _objective(Z, s, new, lam)
            if fn <= f or t < 1e-12:
                break
            t /= 2
        a, f = new, fn
    w = V @ a[:-1]
    b = float(a[-1] - mu @ w)
    return Fit(w=w.numpy(), b=b, loss=float(f), steps=steps)


def predict(fit: Fit, X: np.ndarray) -> np.ndarray:
    """0/1 per row of ``X``."""
    return (np.asarray(X, np.float64) @ fit.w + fit.b > 0).astype(np.int64)


def folds_of(y: np.ndarray, k: int) -> np.ndarray:
    """[n] each row's fold, 0..k−1: each class dealt out in turn in the set's order (stratified, no shuffle), so
    every fold holds both classes in their proportions."""
    y = np.asarray(y)
    fold = np.empty(len(y), np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both scaled by the training rows' mean and standard deviation (a residual stream has a few dimensions
    hundreds of times larger than the rest: unscaled, the penalty would fall on the rest)."""
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd, mu, sd


def cross_validated(X: np.ndarray, y: np.ndarray, k: int, lam: float) -> tuple[float, np.ndarray]:
    """(accuracy over every held-out row, [k] each fold's accuracy) of k-fold cross-validation."""
    fold = folds_of(y, k)
    right, per = 0, np.empty(k)
    for f in range(k):
        tr, te = fold != f, fold == f
        a, b, _, _ = standardise(X[tr], X[te])
        hit = predict(fit_logistic(a, y[tr], lam), b) == y[te]
        right += int(hit.sum())
        per[f] = hit.mean()
    return right / len(y), per


def direction(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """The probe fitted on every row, as a direction in the stream's own coordinates, and its training accuracy.

    The fit is on standardised features (w_std); in the stream's coordinates the decision function is
    (w_std / sd)·x + const, so the direction is w_std / sd. It is scaled so that its length is the distance between
    the two classes' means along it: adding it once moves the mean of class 0 to the mean of class 1 along the
    probe's direction."""
    Xs, _, mu, sd = standardise(X, X)
    fit = fit_logistic(Xs, y, lam)
    w = fit.w / sd
    if not np.linalg.norm(w) > 0:  # every prompt's stream the same (the embeddings of one last token): no direction
        return np.zeros_like(w), float((predict(fit, Xs) == y).mean())
    u = w / np.linalg.norm(w)
    gap = float((X[y == 1].mean(0) - X[y == 0].mean(0)) @ u)
    return u * gap, float((predict(fit, Xs) == y).mean())
