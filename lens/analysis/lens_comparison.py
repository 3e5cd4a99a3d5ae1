"""Lenses side by side on one prompt: per row, how close each lens's reading is to the model's answer."""
from __future__ import annotations

import numpy as np

from ..errors import LensError
from ..results import LensComparison, LogitLensResult
from .early_exit import exit_fractions


def compare_lenses(results: list[LogitLensResult], lens_ids: list[str] | None = None) -> LensComparison:
    """Mean KL to the final distribution, top-1 agreement with the model's prediction and the share of
    positions already saturated, per row, for each lens's result of the same prompt and positions."""
    if not results:
        raise LensError("no lens to compare")
    first = results[0]
    for r in results[1:]:
        if r.token_ids != first.token_ids or r.positions != first.positions or r.layers != first.layers:
            raise LensError("lenses can only be compared on the same prompt, positions and model")
    kl = np.stack([r.kl_to_final.astype(np.float64).mean(1) for r in results])
    agree = np.stack([(r.top_ids[:, :, 0] == r.top_ids[-1:, :, 0]).mean(1) for r in results])
    exits = np.stack([exit_fractions(r.exit_layer, len(r.layers)) for r in results])
    return LensComparison(model=first.model, tokens=first.tokens, layers=first.layers,
                          lenses=[r.lens for r in results], mean_kl=kl, top1_agreement=agree,
                          exit_fraction=exits, lens_ids=list(lens_ids or [""] * len(results)))
