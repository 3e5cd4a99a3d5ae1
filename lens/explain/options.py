"""What an explanation asks for. Imports nothing heavy; each class checks itself and names its cache key."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LensError

MAX_TOP = 50  # tokens listed in a cell's walk-through
MAX_DIMS = 64  # largest dimensions of a vector listed


def _whole(value, what: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo) or (
            hi is not None and value > hi):
        span = (f"from {lo} to {hi}" if lo is not None and hi is not None else
                f"{lo} or more" if lo is not None else "")
        raise LensError(f"{what} must be a whole number {span}, not {value!r}".replace("  ", " "))
    return value


@dataclass(frozen=True)
class CellOptions:
    """One logit-lens cell: ``layer`` is the lens row (0: the embeddings, r: the output of block r, so the last row
    is the model's own output); ``position`` 0-based, negative counts from the end (-1: the last token)."""

    layer: int = 0
    position: int = -1
    top: int = 8  # tokens whose logits are shown (the cell's top tokens)
    dims: int = 8  # largest dimensions of the residual vector shown

    def check(self, n_layers: int | None = None) -> None:
        _whole(self.layer, "--layer", 0, n_layers)
        _whole(self.position, "--position")
        _whole(self.top, "--top", 5, MAX_TOP)
        _whole(self.dims, "--dims", 1, MAX_DIMS)

    def key(self) -> dict:
        return {"layer": self.layer, "position": self.position, "top": self.top, "dims": self.dims}


@dataclass(frozen=True)
class AttentionWeightOptions:
    """One attention weight: block ``layer`` (1-based), ``head`` (0-based), from query position ``query`` to key
    position ``key`` (negative: from the end)."""

    layer: int = 1
    head: int = 0
    query: int = -1
    key_position: int = 0
    dims: int = 8

    def check(self, n_layers: int | None = None, n_heads: int | None = None) -> None:
        _whole(self.layer, "the layer", 1, n_layers)
        _whole(self.head, "the head", 0, None if n_heads is None else n_heads - 1)
        _whole(self.query, "--query")
        _whole(self.key_position, "--key")
        _whole(self.dims, "--dims", 1, MAX_DIMS)

    def key(self) -> dict:
        return {"layer": self.layer, "head": self.head, "query": self.query, "key": self.key_position,
                "dims": self.dims}


@dataclass(frozen=True)
class NeuronAtOptions:
    """One MLP neuron of block ``layer`` (1-based), ``neuron`` 0-based, at ``position`` (negative: from the end)."""

    layer: int = 1
    neuron: int = 0
    position: int = -1
    dims: int = 8

    def check(self, n_layers: int | None = None, n_neurons: int | None = None) -> None:
        _whole(self.layer, "the layer", 1, n_layers)
        _whole(self.neuron, "the neuron", 0, None if n_neurons is None else n_neurons - 1)
        _whole(self.position, "--position")
        _whole(self.dims, "--dims", 1, MAX_DIMS)

    def key(self) -> dict:
        return {"layer": self.layer, "neuron": self.neuron, "position": self.position, "dims": self.dims}


def parse_pair(text: str, what: str) -> tuple[int, int]:
    """``"L.N"`` (e.g. ``--head 3.1``) as two whole numbers; a LensError says what was expected."""
    a, sep, b = str(text).partition(".")
    if not sep or not a.strip().lstrip("-").isdigit() or not b.strip().isdigit():
        raise LensError(f"{what} is written LAYER.INDEX (e.g. 3.1), not {text!r}")
    return int(a), int(b)
