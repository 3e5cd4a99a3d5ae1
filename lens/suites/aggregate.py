"""What a suite says as a whole: per lens row, each measure's mean, median and a 95 % bootstrap interval of the
mean, the distribution of exit layers, grouped by a label column; and the patching grid averaged over pairs.

Pure numpy. The bootstrap is the percentile bootstrap: ``resamples`` resamples of the prompts with
replacement (seeded, so the same suite gives the same interval), the mean of each, and the 2.5th and 97.5th
percentiles of those means (numpy's linear interpolation between order statistics).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import LensError
from .results import SuiteAggregate, SuiteLensResult

RESAMPLES = 1000
SEED = 0
MEASURES = ("target_prob", "target_logprob", "target_rank", "kl_to_final", "logit_diff")


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[resamples, n]: how often each of ``n`` items is drawn in each resample (the draws:
    ``default_rng(seed).integers(0, n, size=(resamples, n))``)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
    return counts


def bootstrap_ci(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = 0.95) -> np.ndarray:
    """The percentile-bootstrap interval of the mean of ``values`` ([n] or [n, R]: one interval per column):
    [2] or [R, 2] (lo, hi). NaN for no values; a single value is its own interval."""
    v = np.asarray(values, np.float64)
    cols = v[:, None] if v.ndim == 1 else v
    n = cols.shape[0]
    if n == 0:
        out = np.full((cols.shape[1], 2), np.nan)
    else:
        # Each resample's mean from the counts of its draws: [resamples, n] @ [n, R], never [resamples, n, R].
        means = resample_counts(n, resamples, seed) @ cols / n
        tail = (1.0 - level) / 2 * 100
        out = np.percentile(means, [tail, 100 - tail], axis=0).T
    return out[0] if v.ndim == 1 else out


def _summary(values: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, median, interval per column of [n, R] (NaN columns when n is 0)."""
    R = values.shape[1]
    if len(values) == 0:
        return np.full(R, np.nan), np.full(R, np.nan), np.full((R, 2), np.nan)
    return values.mean(0), np.median(values, 0), bootstrap_ci(values, resamples, seed)


def summarise(result: SuiteLensResult, rows: np.ndarray, by: str | None, group: str,
              resamples: int = RESAMPLES, seed: int = SEED) -> SuiteAggregate:
    """The aggregate of the prompts ``rows`` (indices into the result) of ``result``."""
    rows = np.asarray(rows, np.int64)
    R = len(result.layers)
    out: dict = {}
    for m in MEASURES:
        v = np.asarray(getattr(result, m), np.float64)[rows]
        if m == "logit_diff":  # only the prompts that have a foil
            v = v[~np.isnan(v).any(1)]
            out["logit_diff_n"] = int(len(v))
        out[f"{m}_mean"], out[f"{m}_median"], out[f"{m}_ci95"] = _summary(v, resamples, seed)
    exits = [result.exit_layer[i] for i in rows]
    counts = np.bincount([R if e is None else int(e) for e in exits], minlength=R + 1).astype(np.int64)
    given = np.asarray(result.target_given, bool)[rows]
    n_correct = int((result.correct[rows] & given).sum())  # a prompt without a target is trivially "right"
    return SuiteAggregate(layers=list(result.layers), by=by, group=group, n=int(len(rows)), **out,
                          exit_counts=counts, n_targets=int(given.sum()), n_correct=n_correct,
                          accuracy=n_correct / given.sum() if given.any() else float("nan"),
                          resamples=int(resamples), seed=int(seed))


def aggregate(result: SuiteLensResult, by: str | None = None, resamples: int = RESAMPLES,
              seed: int = SEED) -> list[SuiteAggregate]:
    """Every prompt as one group (``by`` None), or one group per value of the label column ``by``, in the
    order the values first appear."""
    if not isinstance(resamples, int) or not 1 <= resamples <= 100_000:
        raise LensError(f"resamples must be a whole number from 1 to 100,000, not {resamples!r}")
    N = len(result.prompts)
    if by is None:
        return [summarise(result, np.arange(N), None, "all", resamples, seed)]
    if by not in result.labels:
        have = ", ".join(result.labels) or "none"
        raise LensError(f"the suite has no column {by!r} to group by (its label columns: {have})")
    values = result.labels[by]
    groups = list(dict.fromkeys(values))
    return [summarise(result, np.array([i for i, v in enumerate(values) if v == g]), by, g, resamples, seed)
            for g in groups]


# ---------------------------------------------------------------- patching grids over pairs

def align_right(grids: Sequence[np.ndarray]) -> np.ndarray:
    """[P, R, C] from P grids [R, T_p] with C the longest T_p: column C − k holds each grid's k-th column
    from the end; cells a shorter pair does not have are NaN."""
    if not grids:
        raise LensError("no pair to average")
    R = grids[0].shape[0]
    C = max(g.shape[1] for g in grids)
    out = np.full((len(grids), R, C), np.nan)
    for p, g in enumerate(grids):
        out[p, :, C - g.shape[1]:] = g
    return out


def grid_mean(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean over pairs of [P, R, C] (NaN cells left out) and the count of pairs in each cell; NaN where
    no pair has the cell."""
    have = ~np.isnan(stacked)
    count = have.sum(0).astype(np.int64)
    total = np.where(have, stacked, 0.0).sum(0)
    mean = np.full(count.shape, np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    return mean, count
