"""Layer anatomy over a prompt suite: every prompt measured on its own (exactly as ``Backend.anatomy`` measures
one), stacked per prompt (the means and spreads over the prompts: lens/anatomy/spread.py)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .measure import KEEP, anatomy_and_stream, rows_of
from .options import AnatomyOptions
from .results import AnatomySuiteResult


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
