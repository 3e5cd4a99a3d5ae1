"""The options of the layer-anatomy measures (``Backend.anatomy``) and of autocontrastive decoding
(``Backend.contrastive``): frozen dataclasses that check themselves and name their cache key."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LensError
from ..options import MAX_NEW_TOKENS

MAX_TOP_DIMS = 64
MAX_TOP_K = 50


def _whole(value, what: str, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        top = f" to {hi}" if hi is not None else " or more"
        raise LensError(f"{what} must be a whole number from {lo}{top}, not {value!r}")


@dataclass(frozen=True)
class AnatomyOptions:
    """``swap``: also run every pair of neighbouring blocks swapped (l ↔ l+1), beside skipping each block;
    ``top_dims``: how many residual dimensions the outlier heatmap shows (those of largest mean |h| at any row)."""

    swap: bool = False
    top_dims: int = 16

    def check(self) -> None:
        if not isinstance(self.swap, bool):
            raise LensError(f"swap is true or false, not {self.swap!r}")
        _whole(self.top_dims, "the number of top dimensions", 1, MAX_TOP_DIMS)

    def key(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ContrastiveOptions:
    """Autocontrastive decoding: the next token scored by log p_L − log p_l, where p_L is the model's output and
    p_l the logit lens after the "amateur" block ``amateur_layer`` (1-based, below the last), over the plausible
    tokens (p_L ≥ ``alpha`` · max p_L); ``top_k`` tokens of each ranking; greedy continuations of
    ``max_new_tokens`` with and without it."""

    amateur_layer: int = 1
    alpha: float = 0.1
    top_k: int = 10
    max_new_tokens: int = 12

    def check(self, n_layers: int | None = None) -> None:
        if n_layers is not None and n_layers < 2:
            raise LensError("autocontrastive decoding needs a model of two blocks or more: it contrasts an early one "
                            "with the last")
        hi = None if n_layers is None else n_layers - 1
        try:
            _whole(self.amateur_layer, "the amateur layer", 1, hi)
        except LensError as exc:
            raise LensError(f"{exc} (a block below the last, whose logit lens is the amateur)") from None
        try:
            a = float(self.alpha)
        except (TypeError, ValueError):
            raise LensError(f"alpha must be a number from 0 to 1, not {self.alpha!r}") from None
        if not 0.0 < a <= 1.0:
            raise LensError(f"alpha must be a number above 0 and at most 1, not {self.alpha!r}")
        _whole(self.top_k, "the number of tokens shown", 1, MAX_TOP_K)
        _whole(self.max_new_tokens, "the number of new tokens", 1, MAX_NEW_TOKENS)

    def key(self) -> dict:
        return {**asdict(self), "alpha": float(self.alpha)}

MAX_SUITE_PROMPTS = 200  # a suite's prompts are measured one at a time, each run once per block skipped
MAX_TOKENS = 512  # every layer's CKA with every other is a tokens × tokens Gram matrix per layer
