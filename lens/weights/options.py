"""What a weight-space request may ask. Imports nothing heavy; each class checks itself and names its cache key."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LensError

MAX_NEURONS = 200  # neurons listed per side (promoters, suppressors)
MAX_TOKENS = 50  # tokens listed per neuron or head
MAX_CONTEXTS = 20  # top-activating contexts kept per neuron
CONTEXT_BEFORE, CONTEXT_AFTER = 12, 3  # tokens shown around a context's peak
COMPOSITIONS = ("q", "k", "v")


def _whole(value, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f"{lo} or more"
        raise LensError(f"{what} must be a whole number {span}, not {value!r}")
    return value


def _token(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value == "":
        raise LensError(f"the token is a token's text (e.g. ' Paris'), not {value!r}")
    return value


@dataclass(frozen=True)
class NeuronOptions:
    """The MLP neurons whose output vectors most raise (and lower) ``token``'s logit, ``top`` each side;
    ``token`` None: the model's own top-1 after a prompt."""

    token: str | None = None
    top: int = 20
    top_k: int = 8  # tokens shown for each listed neuron

    def check(self) -> None:
        _token(self.token)
        _whole(self.top, "--top", 1, MAX_NEURONS)
        _whole(self.top_k, "top-k", 1, MAX_TOKENS)

    def key(self) -> dict:
        return {"token": self.token, "top": self.top, "top_k": self.top_k}


@dataclass(frozen=True)
class NeuronPageOptions:
    """One neuron: ``layer`` 1-based, ``neuron`` 0-based (its row of the down projection)."""

    layer: int = 1
    neuron: int = 0
    top_k: int = 15
    contexts: int = 10

    def check(self, n_layers: int | None = None, n_neurons: int | None = None) -> None:
        _whole(self.layer, "--layer", 1, n_layers)
        _whole(self.neuron, "--neuron", 0, None if n_neurons is None else n_neurons - 1)
        _whole(self.top_k, "top-k", 1, MAX_TOKENS)
        _whole(self.contexts, "--contexts", 1, MAX_CONTEXTS)

    def key(self) -> dict:
        return {"layer": self.layer, "neuron": self.neuron, "top_k": self.top_k, "contexts": self.contexts}


@dataclass(frozen=True)
class HeadWeightOptions:
    """Every head's OV copying over a vocabulary subset, and the composition scores of one kind."""

    composition: str = "v"  # q | k | v
    top_k: int = 8
    vocab: int = 1000  # the shipped corpus's most frequent tokens the copying score is taken over

    def check(self) -> None:
        if self.composition not in COMPOSITIONS:
            raise LensError(f"the composition is one of {', '.join(COMPOSITIONS)}, not {self.composition!r}")
        _whole(self.top_k, "top-k", 1, MAX_TOKENS)
        _whole(self.vocab, "the vocabulary subset", 10, 5000)

    def key(self) -> dict:
        return {"composition": self.composition, "top_k": self.top_k, "vocab": self.vocab}
