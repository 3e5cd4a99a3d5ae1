"""Ablations as edits: heads or MLP blocks zeroed or set to their mean, blocks skipped or swapped."""
from __future__ import annotations

from ..engine.base import Edit
from .edits import replace_all, replace_heads, run_block_instead, skip_block


def mean_sites(ablation) -> list[str]:
    """The sites whose mean over the prompt's positions a mean ablation puts in."""
    if ablation.mode != "mean":
        return []
    return sorted({f"head_out.{l}" for l, _ in ablation.heads} | {f"mlp_out.{l}" for l in ablation.mlp})


def ablation_edits(ablation, head_dim: int, means: dict | None = None) -> dict[str, Edit]:
    """The edits that make the model ``ablation`` describes (lens/options.py); ``means``: site -> [T, ...]
    of the same prompt (a plain run reading ``mean_sites``), for mean ablation."""
    def mean(site):
        return None if means is None else means[site].mean(0)
    edits: dict[str, Edit] = {}
    by_layer: dict[int, list[int]] = {}
    for l, h in ablation.heads:
        by_layer.setdefault(l, []).append(h)
    for l, heads in by_layer.items():
        edits[f"head_out.{l}"] = replace_heads(heads, head_dim, mean(f"head_out.{l}"))
    for l in ablation.mlp:
        edits[f"mlp_out.{l}"] = replace_all(mean(f"mlp_out.{l}"))
    for l in ablation.skip:
        edits[f"block.{l}"] = skip_block
    if ablation.swap is not None:
        a, b = ablation.swap
        edits[f"block.{a}"] = run_block_instead(b)
        edits[f"block.{b}"] = run_block_instead(a)
    return edits
