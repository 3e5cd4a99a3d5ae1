"""Edits: what an intervention does at one site, as ``edit(activation [B, T, ...], call) -> activation``.

Each function here returns an edit for ``engine.run(write={site: edit})`` (or ``resume``); none
knows about hooks or modules.
"""
from __future__ import annotations

import torch

from ..engine.base import Edit, SiteCall


def set_vector(position: int, vector: torch.Tensor) -> Edit:
    """Every batch element gets ``vector`` at ``position``."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        x = x.clone()
        x[:, position] = vector.to(x.dtype)
        return x
    return edit


def set_diagonal(vectors: torch.Tensor, positions: list[int] | None = None) -> Edit:
    """Batch element i gets ``vectors[i]`` at position ``positions[i]`` (default: position i): one
    patched position per element, the batch of a patching grid's row."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        x = x.clone()
        idx = torch.arange(vectors.shape[0])
        pos = idx if positions is None else torch.as_tensor(positions)
        x[idx, pos] = vectors.to(x.dtype)
        return x
    return edit


def set_head_per_element(source: torch.Tensor, head_dim: int) -> Edit:
    """On ``head_out``: batch element h gets head h's slice of ``source`` [T, H·hd] at every position."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        x = x.clone()
        for h in range(x.shape[0]):
            x[h, :, h * head_dim:(h + 1) * head_dim] = source[:, h * head_dim:(h + 1) * head_dim].to(x.dtype)
        return x
    return edit


def replace_heads(heads: list[int], head_dim: int, values: torch.Tensor | None = None) -> Edit:
    """On ``head_out``: the slices of ``heads`` set to zero, or to ``values`` [H·hd] (e.g. their means)."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        x = x.clone()
        for h in heads:
            sl = slice(h * head_dim, (h + 1) * head_dim)
            x[..., sl] = 0 if values is None else values[sl].to(x.dtype)
        return x
    return edit


def replace_all(values: torch.Tensor | None = None) -> Edit:
    """The whole activation set to zero, or to ``values`` [d] at every position."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        return torch.zeros_like(x) if values is None else values.to(x.dtype).expand_as(x)
    return edit


def skip_block(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
    """On ``block.l``: the block passes its input on (the residual stream goes by it)."""
    return call.input


def run_block_instead(layer: int) -> Edit:
    """On ``block.l``: block ``layer``'s weights run in block l's place, with the arguments the model gave l."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        return call.run_block(layer)
    return edit


def add_vector(vector: torch.Tensor, scale: float = 1.0, positions=None) -> Edit:
    """``scale · vector`` added at ``positions`` (None: every position), e.g. on ``resid_pre.l`` to steer."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        x = x.clone()
        sl = slice(None) if positions is None else positions
        x[:, sl] = x[:, sl] + scale * vector.to(x.dtype)
        return x
    return edit
