"""What an attribution request may ask: a target (default: the model's top-1), a foil, a position, sources and a
window. Imports nothing heavy; each class checks itself and names its cache key."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LensError
from ..options import MAX_TOP_K, check_position_value

ALIGNS = ("centre", "start")  # a knockout window centred on its layer (Geva et al. 2023), or starting at it
DEFAULT_WINDOW = 9  # layers per knockout window (Geva et al. 2023; cut to the model's depth)
MAX_EACH_TOKEN = 24  # knockout with no sources given: the last this many tokens one by one (the rest together)
SUBLAYER_POSITIONS = 48  # the sub-layer lens decodes at most this many positions (the last ones)


def _text(value, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LensError(f"the {what} is a token's text (e.g. ' Paris'), not {value!r}")
    return value


def _top_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
        raise LensError(f"top-k must be a whole number from 1 to {MAX_TOP_K}, not {k!r}")
    return k


def sources_from_text(text) -> tuple[int, ...] | None:
    """Source positions as typed ('2,3', '2-4', '-3'), or None for none given."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        items = [str(x) for x in text]
    else:
        items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        return None
    out: list[int] = []
    for item in items:
        a, dash, b = item[1:].partition("-")
        try:
            if dash:  # a range a-b (a may be negative: '-3' alone is one position)
                lo, hi = int(item[0] + a), int(b)
                if hi < lo:
                    raise ValueError
                out += range(lo, hi + 1)
            else:
                out.append(int(item))
        except ValueError:
            raise LensError(f"source positions are whole numbers or ranges separated by commas (e.g. 2,3 or "
                            f"2-4), not {item!r}") from None
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class DLAOptions:
    """Direct logit attribution at ``position`` (None: the last) to logit(target) − logit(foil), or to
    logit(target) alone without a foil; ``target`` None: the model's own top-1 there."""

    target: str | None = None
    foil: str | None = None
    position: int | None = None
    top_k: int = 5  # tokens each head's direct output promotes (and suppresses) most

    def check(self) -> None:
        _text(self.target, "target")
        _text(self.foil, "foil")
        check_position_value(self.position)
        _top_k(self.top_k)

    def key(self) -> dict:
        return {"target": self.target or None, "foil": self.foil or None,
                "position": check_position_value(self.position), "top_k": self.top_k}


@dataclass(frozen=True)
class SublayerOptions:
    """The sub-layer lens: every attention and MLP write decoded on its own; the target's logit in each cell."""

    target: str | None = None
    top_k: int = 3

    def check(self) -> None:
        _text(self.target, "target")
        _top_k(self.top_k)

    def key(self) -> dict:
        return {"target": self.target or None, "top_k": self.top_k}


@dataclass(frozen=True)
class KnockoutOptions:
    """Attention from ``sources`` to the last position blocked in a window of ``window`` layers (None: 9, at most
    the model's depth) around (``align`` "centre") or from (``"start"``) each layer; ``sources`` None: each of the
    last MAX_EACH_TOKEN tokens on its own (any earlier ones as one group)."""

    target: str | None = None
    sources: tuple[int, ...] | None = None
    window: int | None = None
    align: str = "centre"

    def check(self) -> None:
        _text(self.target, "target")
        if self.sources is not None and not all(isinstance(p, int) and not isinstance(p, bool)
                                                for p in self.sources):
            raise LensError(f"source positions are whole numbers, not {self.sources!r}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or self.window < 1):
            raise LensError(f"the window is a whole number of layers from 1, not {self.window!r}")
        if self.align not in ALIGNS:
            raise LensError(f"a window is aligned {' or '.join(ALIGNS)} on its layer, not {self.align!r}")

    def key(self) -> dict:
        return {"target": self.target or None, "sources": None if self.sources is None else list(self.sources),
                "window": self.window, "align": self.align}
