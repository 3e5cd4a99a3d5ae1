"""A measure over a suite's prompts: its mean and spread per row or block, the mean CKA, the outlier dimension
(pure numpy from the per-prompt numbers that lens/anatomy/suite.py stacks)."""
from __future__ import annotations

from collections import Counter
import numpy as np

# Per row or block, over the prompts: these measures get a mean, a standard deviation and 10th/90th percentiles.
MEASURES = ("norm", "norm_ratio", "block_change", "attn_share", "mlp_share", "max_abs", "kurtosis", "skip_kl",
            "swap_kl", "prev_cos", "self_cos")
LOW, HIGH = 10, 90  # the percentiles of the spread the charts draw



def spread(x: np.ndarray) -> dict[str, np.ndarray]:
    """Over the first axis (the prompts): mean, standard deviation (n − 1; 0 for one prompt) and the 10th and 90th
    percentiles (linear interpolation)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    return {"mean": x.mean(0), "sd": x.std(0, ddof=1) if n > 1 else np.zeros(x.shape[1:]),
            "p10": np.percentile(x, LOW, axis=0), "p90": np.percentile(x, HIGH, axis=0)}


def summary(r) -> dict:
    """Of an AnatomySuiteResult: ``{"mean": {measure: [...]}, "sd": …, "p10": …, "p90": …, "cka_mean": [[…]], "cka_sd": [[…]]}``."""
    out: dict = {k: {} for k in ("mean", "sd", "p10", "p90")}
    for name in MEASURES:
        for stat, v in spread(getattr(r, name)).items():
            out[stat][name] = v
    cka = spread(r.cka)
    out["cka_mean"], out["cka_sd"] = cka["mean"], cka["sd"]
    return out


def outliers(r) -> dict:
    """Of an AnatomySuiteResult: The outlier dimension over the suite: each prompt's is the dimension of its largest coordinate at any row
    (as the one-prompt reading says); ``dim`` is the most frequent of those, ``prompts`` how many prompts have it;
    per row, the most frequent max-|h| dimension (``row_dim``) and in how many prompts it is the max (``row_count``);
    ``rows_with``: of all the prompts' rows, how many have ``dim`` as their max; ``rows_dim``: the dimension that is
    the max of the most rows of all prompts (the stream's outlier through the middle layers, where the largest
    coordinate of all may sit in the last ones), ``rows_count`` how many."""
    max_abs, max_dim = np.asarray(r.max_abs), np.asarray(r.max_dim)
    each = [int(max_dim[i, int(np.nanargmax(max_abs[i]))]) for i in range(len(max_abs))]
    dim, prompts = Counter(each).most_common(1)[0]
    row_dim, row_count = [], []
    for col in max_dim.T:
        d, c = Counter(int(v) for v in col).most_common(1)[0]
        row_dim.append(d)
        row_count.append(c)
    rows_dim, rows_count = Counter(int(v) for v in max_dim.ravel()).most_common(1)[0]
    return {"dim": dim, "prompts": prompts, "each": each, "row_dim": row_dim, "row_count": row_count,
            "rows_with": int((max_dim == dim).sum()), "rows_dim": rows_dim, "rows_count": rows_count}
