"""How big an attention-flow problem is, and which layer rows a prompt can afford. Imports nothing heavy.

Flow solves one max-flow problem per input token and layer row on a graph of about
L·T²/2 edges; its cost grows as T³·L². The page, the CLI and the backend plan with
the same numbers, so what the page promises is what the backend accepts.
"""
from __future__ import annotations

from dataclasses import dataclass

# Max-flow work budget, in units of (sources × edges of the graph searched), summed over
# the layers asked for: ~5 s of networkx on one core. With 30 layers the final layer's
# row alone allows ~29 tokens and every layer's row ~12; with 6 layers (MiniLM) ~26.
FLOW_WORK_LIMIT = 400_000


def flow_work(n_sources: int, layers: list[int], causal: bool = True) -> int:
    """Rough max-flow work for one output position: sources × edges searched, over ``layers`` (1-based)."""
    edges_per_layer = n_sources * (n_sources + 1) // 2 if causal else n_sources * n_sources
    return sum(n_sources * l * edges_per_layer for l in layers)


def flow_limit(layers: list[int], causal: bool = True) -> int:
    """The most tokens (up to the chosen position) attention flow accepts for these layers."""
    t = 1
    while flow_work(t + 1, layers, causal) <= FLOW_WORK_LIMIT:
        t += 1
    return t


@dataclass(frozen=True)
class FlowPlan:
    """What attention flow can do for one output position of one prompt."""

    sources: int  # tokens that can carry flow to the position (up to it in a decoder)
    limit_all: int  # the most sources for every layer's row
    limit_last: int  # the most sources for the last layer's row alone
    n_layers: int

    @property
    def feasible(self) -> bool:
        return self.sources <= self.limit_last

    @property
    def layers(self) -> list[int] | None:
        """The rows to solve: None (every layer) when affordable, else just the last."""
        return None if self.sources <= self.limit_all else [self.n_layers]


def plan_flow(n_layers: int, n_tokens: int, position: int, causal: bool = True) -> FlowPlan:
    every = list(range(1, n_layers + 1))
    return FlowPlan(sources=position + 1 if causal else n_tokens, limit_all=flow_limit(every, causal),
                    limit_last=flow_limit([n_layers], causal), n_layers=n_layers)
