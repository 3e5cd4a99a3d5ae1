"""Another target for a lens already computed: the rows of one of its alternatives (LensOptions.alternatives).
Plain numpy (no torch): the dashboard's server calls it without the model's libraries."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..results import LogitLensResult


def retarget(result: LogitLensResult, token: str) -> LogitLensResult | None:
    """``result`` with ``token`` as its target, where ``token`` is one of its alternatives (as decoded): what the
    lens computes with that token as the target, taken from the rows it followed already. None otherwise."""
    if token not in result.alternative_tokens:
        return None
    j = result.alternative_tokens.index(token)
    P = len(result.positions)
    return dataclasses.replace(
        result, target_ids=np.full(P, result.alternative_ids[j], np.int64), target_tokens=[token] * P,
        target_rank=result.alternative_rank[j].copy(), target_prob=result.alternative_prob[j].copy(),
        target_note="", options={**result.options, "target": token})
