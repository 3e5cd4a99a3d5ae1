"""Range checks of positions, shared by the analyses (a layer number: options.check_layer). Imports nothing heavy."""
from __future__ import annotations

from ..errors import LensError


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
