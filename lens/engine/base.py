"""What every engine offers: one ``run`` that reads, writes and differentiates named sites.

An engine runs one model. Tools never add hooks of their own: they name sites
(lens/engine/sites.py) and say what to do there:

- ``read={site: positions}``: keep the activation (float32; ``positions`` a slice, a list,
  or None for all; a ``Read`` can also name a buffer to copy into);
- ``write={site: edit}``: replace it by ``edit(activation, call)`` (an ``Edit``; ``call`` says
  which site it is and, for ``block.l``, gives the block's input and other blocks to run);
- ``grad_of=metric``: ``metric(logits)`` → a scalar, and the gradient of it with respect to
  every site read comes back in ``RunOutput.grads``;
- ``reduce=fn``: ``fn(reads, readout)`` turned into small tensors where the model runs (on a
  remote engine only those come back; see ``Readout``).

An engine declares in ``Capabilities`` what it can do; the backend refuses the rest with
a message before any work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence, Union

import torch

from .sites import Site

Positions = Union[slice, Sequence[int], None]


@dataclass(frozen=True)
class Read:
    """How to keep a site's activation: at ``positions`` only; copied into ``into`` when given
    (a caller that fills one big tensor site by site needs no stacked copy afterwards), through
    ``map`` (torch operations only: a remote engine applies it where the model runs)."""

    positions: Positions = None
    into: torch.Tensor | None = None
    map: Callable[[torch.Tensor], torch.Tensor] | None = None  # applied as it is read (e.g. a head mean)


def head_mean(weights: torch.Tensor) -> torch.Tensor:
    """``attn_pattern.l`` averaged over heads, [B, H, T, T] -> [B, T, T]: as ``Read(map=head_mean)``, the local
    engine computes it a block of query rows at a time (no [H, T, T] matrix is ever held; the numbers are the
    eager attention's); any other engine applies it to the whole pattern."""
    return weights.mean(1)


def head_mean_lower(weights: torch.Tensor) -> torch.Tensor:
    """``head_mean`` of a causal model's pattern, kept as its lower triangle, [B, H, T, T] -> [B, T(T+1)/2]: row i's
    keys 0..i, row after row (above the diagonal a causal model's weights are 0: half the memory). As
    ``Read(map=head_mean_lower)`` the local engine computes it a block of query rows at a time, and refuses a pattern
    with any weight above the diagonal; any other engine applies it to the whole pattern."""
    T = weights.shape[-1]
    i, j = torch.tril_indices(T, T, device=weights.device)
    return weights.mean(1)[:, i, j]


HEAD_MEANS = (head_mean, head_mean_lower)


@dataclass
class SiteCall:
    """What an edit gets besides the activation: the site, and for ``block.l`` the block's input
    and a way to run another block on it with the arguments the model gave this one."""

    site: Site
    input: torch.Tensor | None = None
    run_block: Callable[[int], torch.Tensor] | None = None  # 1-based layer -> that block's output here
    # The position of the activation's first row: 0 in a whole pass; during generation on a KV cache, where one new
    # token at a time is run, its position in the text (an edit at chosen positions needs it).
    start: int = 0


Edit = Callable[[torch.Tensor, SiteCall], torch.Tensor]
Metric = Callable[[torch.Tensor], torch.Tensor]  # logits (as kept) -> a scalar to differentiate


@dataclass(frozen=True)
class Readout:
    """The read-out modules, as callables valid where the model runs (real modules here, an
    engine's proxies elsewhere): what a ``reduce`` function may call besides torch operations."""

    final_norm: Callable | None
    project_out: Callable | None
    unembed: Callable
    softcap: float | None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.final_norm(hidden) if self.final_norm is not None else hidden
        x = self.project_out(x) if self.project_out is not None else x
        z = self.unembed(x).float()
        return (z / self.softcap).tanh() * self.softcap if self.softcap else z


Reduce = Callable[[Mapping[str, torch.Tensor], Readout], dict]


@dataclass
class RunOutput:
    reads: dict[str, torch.Tensor] = field(default_factory=dict)  # site -> activation (batch first)
    logits: torch.Tensor | None = None  # [B, V] at the last position, or [B, T, V] (logits="all")
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # site -> d metric / d activation
    metric: float | None = None
    reduced: dict | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; the backend refuses what it cannot, with ``where`` in the message."""

    where: str  # "on this machine", "through nnsight", "on NDIF"
    weights_here: bool = True  # views that read weights beside the pass (routes, fitted lenses, ...)
    writes: bool = True  # edits at sites (patching, ablation, steering)
    gradients: bool = True  # grad_of
    resumes: bool = True  # partial runs from a recording (fast patching)
    generates: bool = True  # continue a prompt token by token
    reduces_lens: bool = False  # the logit lens is best reduced where the model runs (remote engines)
    # Results are cached under the weights' fingerprint plus this: "" for the hook engine; another engine's numbers
    # may differ from the hooks' by float32 rounding, so a page run through it shows its own, never theirs.
    results_key: str = ""


class Engine(Protocol):
    """Runs one model; every read, write or gradient of an activation goes through ``run``."""

    adapter: object
    capabilities: Capabilities
    lock: object  # held while a run's hooks are on the model (the backend reads it to say it is busy)

    def run(self, ids: Sequence[int] | Sequence[Sequence[int]], read: Mapping[str, Read | Positions] | None = None,
            write: Mapping[str, Edit] | None = None, grad_of: Metric | None = None, logits: str = "last",
            reduce: Reduce | None = None, progress=None) -> RunOutput: ...

    def vocab_size(self) -> int: ...
