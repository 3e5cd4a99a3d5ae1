"""What an attribution or circuit request may ask for; each options class checks itself (``check``) and names
itself in the cache key (``key``). Imports nothing heavy."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LensError
from ..options import PATCH_SITES

MAX_CIRCUIT_TOKENS = 64  # path patching keeps every node's write per masked run: (nodes × T × d) floats each
DISAGREE = 8  # cells listed where the estimate and real patching disagree most


def _check_tokens(target, foil) -> None:
    if not isinstance(target, str) or target == "":
        raise LensError("give a target token, e.g. ' Paris' (with its leading space)")
    if foil == "":
        raise LensError("the foil is empty: give a token, e.g. ' Rome', or leave it out")


@dataclass(frozen=True)
class AttributeOptions:
    """Attribution patching of the grid ``patch`` computes at ``site``.

    ``qk_fix`` (attn, head): each head's write splits exactly into its pattern's change and its values'
    change, ``(A_c − A_k)·V_k + A_c·(V_c − V_k)``; the first is patched for real (one run per layer, the
    softmax recomputed, not linearised), the second estimated from the gradient. ``verify``: real patching
    beside it, their correlation and the cells where they disagree most. ``grad_drop`` (GradDrop, AtP*): the size
    of each cell's effect, averaged over backward passes that each skip one block's writes, against cancellation."""

    target: str
    foil: str | None = None
    site: str = "resid"
    qk_fix: bool = False
    verify: bool = False
    grad_drop: bool = False

    def check(self) -> None:
        _check_tokens(self.target, self.foil)
        if self.site not in PATCH_SITES:
            raise LensError(f"unknown patching site {self.site!r}; choose {', '.join(PATCH_SITES)}")
        if self.qk_fix and self.site not in ("attn", "head"):
            raise LensError(f"the QK fix applies to attention (--site attn or head), not to {self.site}: "
                            "a residual or MLP write reaches no softmax of its own")

    def key(self) -> dict:
        return asdict(self)


# The edge counts the faithfulness curve is measured at (those up to the number of edges, and all of them).
CURVE_EDGES = (1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120, 200, 300, 500, 800, 1200, 2000, 3000, 5000, 8000, 12000)
DEFAULT_EDGES = 30
MAX_IG = 32
# How edges are ranked: "help" puts the edges that raise the metric most first (what restores the answer);
# "size" the largest |score| first, either sign (edge attribution patching's own ranking).
RANKS = ("help", "size")


@dataclass(frozen=True)
class CircuitOptions:
    """Edge attribution patching over the embedding, every head, every MLP and the logits; the circuit keeps the
    ``edges`` first edges by ``rank`` (RANKS), then drops what no longer reaches the logits or the input."""

    target: str
    foil: str | None = None
    edges: int = DEFAULT_EDGES
    ig_steps: int = 0  # EAP-IG: gradients averaged over this many embeddings between corrupted and clean (0: EAP)
    rank: str = "help"

    def check(self) -> None:
        _check_tokens(self.target, self.foil)
        if isinstance(self.edges, bool) or not isinstance(self.edges, int) or self.edges < 0:
            raise LensError(f"the number of edges must be a whole number from 0 up, not {self.edges!r}")
        if isinstance(self.ig_steps, bool) or not isinstance(self.ig_steps, int) or not 0 <= self.ig_steps <= MAX_IG:
            raise LensError(f"integrated-gradient steps must be a whole number from 0 (plain EAP) to {MAX_IG}, "
                            f"not {self.ig_steps!r}")
        if self.rank not in RANKS:
            raise LensError(f"unknown ranking {self.rank!r}: choose help (edges that raise the metric first) or "
                            "size (largest |score| first)")

    def key(self) -> dict:
        return asdict(self)
