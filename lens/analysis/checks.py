"""Range checks of layers and positions, shared by the analyses. Imports nothing heavy."""
from __future__ import annotations

from ..errors import LensError


def check_layer(layer: int, n_layers: int) -> int:
    """A 1-based block number (as in the lens rows L1..Ln)."""
    layer = int(layer)
    if not 1 <= layer <= n_layers:
        raise LensError(f"layer {layer} is out of range: this model has layers 1..{n_layers}")
    return layer


def check_position(position: int | None, n_tokens: int) -> int:
    """A 0-based position; None is the last token, and a negative one counts from the end (-1: the last)."""
    if position is None:
        return n_tokens - 1
    p = int(position)
    if p < 0:
        p += n_tokens
    if not 0 <= p < n_tokens:
        raise LensError(f"position {position} is outside the prompt's {n_tokens} tokens (0..{n_tokens - 1})")
    return p
