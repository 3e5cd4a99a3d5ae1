"""Layer anatomy over a prompt suite: every prompt measured on its own (exactly as ``Backend.anatomy`` measures
one), then each measure's mean over the prompts with its spread (pure numpy from the per-prompt numbers)."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np

from .measure import KEEP, anatomy_and_stream, rows_of
from .options import AnatomyOptions
from .results import AnatomySuiteResult

# Per row or block, over the prompts: these measures get a mean, a standard deviation and 10th/90th percentiles.
MEASURES = ("norm", "norm_ratio", "block_change", "attn_share", "mlp_share", "max_abs", "kurtosis", "skip_kl",
            "swap_kl", "prev_cos", "self_cos")
LOW, HIGH = 10, 90  # the percentiles of the spread the charts draw


def anatomy_suite(engine, ids: Sequence[Sequence[int]], tokens: Sequence[list[str]], n_layers: int,
                  options: AnatomyOptions, model: str, decode: Callable[[int], str], suite: str,
                  prompts: Sequence[str], where: Sequence[str], progress=None) -> AnatomySuiteResult:
    """Every prompt's anatomy (``ids[i]``, its ``tokens[i]``), one after another, stacked per prompt."""
    got, mean_abs = [], []
    N = len(ids)
    for k, (x, toks) in enumerate(zip(ids, tokens)):
        if progress is not None:
            progress(k / N, f"prompt {k + 1} of {N}: its pass, then {n_layers} skipped blocks"
                            + (" and the swaps" if options.swap else ""))
        r, h = anatomy_and_stream(engine, x, toks, n_layers, options, model, decode)
        got.append(r)
        mean_abs.append(np.abs(h[:, KEEP]).mean(1))  # [L+1, d]
    if progress is not None:
        progress(1.0, f"measured {N} prompts")
    mean_abs = np.stack(mean_abs)  # [N, L+1, d]
    order = np.argsort(-mean_abs.mean(0).max(0), kind="stable")[:min(options.top_dims, mean_abs.shape[-1])]
    stack = lambda name: np.stack([np.asarray(getattr(r, name)) for r in got])  # noqa: E731
    swap = stack("swap_kl") if options.swap else np.zeros((N, 0))
    return AnatomySuiteResult(
        model=model, suite=suite, prompts=list(prompts), where=list(where), n_tokens=[len(x) for x in ids],
        rows=rows_of(n_layers), norm=stack("norm"), norm_ratio=stack("norm_ratio"),
        block_change=stack("block_change"), attn_share=stack("attn_share"), mlp_share=stack("mlp_share"),
        max_abs=stack("max_abs"), max_dim=stack("max_dim").astype(np.int64), kurtosis=stack("kurtosis"),
        skip_kl=stack("skip_kl"), skip_top=[list(r.skip_top) for r in got], swap_kl=swap, top=[r.top for r in got],
        cka=stack("cka"), top_dims=[int(i) for i in order], dim_mean_abs=mean_abs[:, :, order],
        prev_cos=np.stack([np.nanmean(r.prev_cos[:, 1:], axis=1) for r in got]),
        self_cos=np.stack([np.nanmean(r.self_cos[:, 1:], axis=1) for r in got]), options=options.key())


def spread(x: np.ndarray) -> dict[str, np.ndarray]:
    """Over the first axis (the prompts): mean, standard deviation (n − 1; 0 for one prompt) and the 10th and 90th
    percentiles (linear interpolation)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    return {"mean": x.mean(0), "sd": x.std(0, ddof=1) if n > 1 else np.zeros(x.shape[1:]),
            "p10": np.percentile(x, LOW, axis=0), "p90": np.percentile(x, HIGH, axis=0)}


def summary(r: AnatomySuiteResult) -> dict:
    """``{"mean": {measure: [...]}, "sd": …, "p10": …, "p90": …, "cka_mean": [[…]], "cka_sd": [[…]]}``."""
    out: dict = {k: {} for k in ("mean", "sd", "p10", "p90")}
    for name in MEASURES:
        for stat, v in spread(getattr(r, name)).items():
            out[stat][name] = v
    cka = spread(r.cka)
    out["cka_mean"], out["cka_sd"] = cka["mean"], cka["sd"]
    return out


def outliers(r: AnatomySuiteResult) -> dict:
    """The outlier dimension over the suite: each prompt's is the dimension of its largest coordinate at any row
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
