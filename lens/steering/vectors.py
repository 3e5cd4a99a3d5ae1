"""Steering vectors in the residual stream entering one block (``resid_pre.l``)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import LensError


def last_residual(engine, ids: Sequence[int], layer: int) -> torch.Tensor:
    """[d] the residual stream entering block ``layer`` (1-based) at the last token of ``ids``."""
    out = engine.run(ids, read={f"resid_pre.{layer}": [len(ids) - 1]}, logits="none")
    return out.reads[f"resid_pre.{layer}"][0, 0].double()


def contrast_vector(engine, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], layer: int) -> torch.Tensor:
    """[d] the mean over pairs of positive − negative at each text's last token (CAA / ActAdd), in float64."""
    diffs = [last_residual(engine, p, layer) - last_residual(engine, n, layer) for p, n in pairs]
    return torch.stack(diffs).mean(0)


def token_vector(adapter, token_id: int) -> torch.Tensor:
    """[d] the unembedding row of ``token_id``: the direction the logit lens reads as that token."""
    if adapter.project_out is not None:
        raise LensError(f"{adapter.model_type} projects the residual stream before the unembedding: "
                        "a token's row is not a residual direction here; use a contrast vector")
    return adapter.unembed.weight[token_id].detach().double().cpu()
