"""What a sampling request may ask. Imports nothing heavy; checks itself and names its cache key."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import LensError

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 10.0
MAX_SHOWN = 50  # tokens in the distribution (and rows of the walk-through)
MAX_SEED = 2 ** 31 - 1


@dataclass(frozen=True)
class SampleOptions:
    """``temperature`` divides the logits; ``top_k`` (0: off) keeps the k most likely; ``top_p`` (1: off) then keeps
    the fewest most likely tokens whose probabilities sum to at least p, the order transformers' ``generate``
    applies them in; ``seed`` draws the sample."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    shown: int = 20  # rows of the walk-through table (the distribution lists up to MAX_SHOWN)

    def check(self, vocab_size: int | None = None) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not (
                MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            raise LensError(f"--temperature must be a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE}, not {t!r}")
        hi = vocab_size if vocab_size is not None else None
        k = self.top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 0 or (hi is not None and k > hi):
            raise LensError(f"--top-k must be a whole number from 0 (off) to {hi or 'the vocabulary size'}, not {k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1:
            raise LensError(f"--top-p must be a number above 0 and at most 1 (1: off), not {p!r}")
        s = self.seed
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise LensError(f"--seed must be a whole number from 0 to {MAX_SEED}, not {s!r}")
        if isinstance(self.shown, bool) or not isinstance(self.shown, int) or not 1 <= self.shown <= MAX_SHOWN:
            raise LensError(f"the rows shown must be a whole number from 1 to {MAX_SHOWN}, not {self.shown!r}")

    def key(self) -> dict:
        return {"temperature": float(self.temperature), "top_k": self.top_k, "top_p": float(self.top_p),
                "seed": self.seed, "shown": self.shown}
