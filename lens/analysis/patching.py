"""Activation patching (causal tracing), the maths: the metric, the plan of runs and the reading of the grid.

Metric: the logit difference ``m = logit(target) − logit(foil)`` at the last position, or the
target's log-probability when no foil is given. A patched run's score is
``(m(patched) − m(corrupt)) / (m(clean) − m(corrupt))``: 0 changes nothing, 1 restores the
clean answer fully. Sites (PATCH_SITES in lens/options.py):

- ``resid``: one residual-stream vector, row r (0: the input of block 1, r: the output of
  block r, as the lens rows) at position p;
- ``attn`` / ``mlp``: what block l's attention or MLP writes at position p;
- ``head``: what head h of block l writes, at every position.

The runs themselves are asked of the engine by lens/interventions/patching.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import LensError
from ..model.adapters import Adapter

MIN_METRIC_GAP = 1e-6  # |m(clean) − m(corrupt)| below this: nothing to restore


def metric(logits: torch.Tensor, target: int, foil: int | None) -> torch.Tensor:
    """[n] the metric of each row of last-position logits [n, V]."""
    logits = logits.double()
    if foil is None:
        return torch.log_softmax(logits, -1)[:, target]
    return logits[:, target] - logits[:, foil]


def columns_metric(z: torch.Tensor, foil: int | None, target: int) -> torch.Tensor:
    """The metric from logits kept only at the columns it needs: all of them for a log-probability
    (``[..., V]``), else ``[..., 2]`` (target, foil)."""
    if foil is None:
        shape = z.shape[:-1]
        return metric(z.reshape(-1, z.shape[-1]), target, None).reshape(shape)
    z = z.double()
    return z[..., 0] - z[..., 1]


def check_pair(clean_ids: Sequence[int], corrupt_ids: Sequence[int], clean_tokens: list[str],
               corrupt_tokens: list[str]) -> None:
    if len(clean_ids) != len(corrupt_ids):
        raise LensError(
            f"the clean prompt has {len(clean_ids)} tokens and the corrupted one {len(corrupt_ids)}: patching needs "
            f"the same count, position by position (clean: {clean_tokens}; corrupted: {corrupt_tokens})")


def last_metric(adapter: Adapter, residual: torch.Tensor, target: int, foil: int | None) -> float:
    """The metric read from a final residual stream [L+1, T, d], the way every patched run reads it."""
    return float(metric(adapter.readout(residual[-1, -1:]).float(), target, foil)[0])


def resid_plan(clean: torch.Tensor, corrupt: torch.Tensor) -> list[tuple[list[int], torch.Tensor] | None]:
    """Per residual row r < L: the positions whose clean vector differs from the corrupted one and those
    vectors (a patch that puts in the vector already there needs no run), or None."""
    plan = []
    for r in range(clean.shape[0] - 1):
        ps = [p for p in range(clean.shape[1]) if not torch.equal(clean[r][p], corrupt[r][p])]
        plan.append((ps, clean[r][ps]) if ps else None)
    return plan


def finish_resid_grid(rows: np.ndarray, m_clean: float, m_corrupt: float) -> np.ndarray:
    """[L+1, T]: ``rows`` [L, T] of patched runs and the last row, which feeds only the read-out: a patch
    there changes the last position's answer only."""
    L, T = rows.shape
    grid = np.empty((L + 1, T))
    grid[:L] = rows
    grid[L] = m_corrupt
    grid[L, T - 1] = m_clean
    return grid


def normalised(grid: np.ndarray, m_clean: float, m_corrupt: float) -> np.ndarray:
    gap = m_clean - m_corrupt
    if abs(gap) < MIN_METRIC_GAP:
        raise LensError("the clean and the corrupted prompt give the same metric: there is nothing to restore; "
                        "pick a corrupted prompt (or a foil) that changes the answer")
    return ((grid - m_corrupt) / gap).astype(np.float32)


@torch.no_grad()
def lens_metric(adapter: Adapter, residual: torch.Tensor, target: int, foil: int | None) -> np.ndarray:
    """[L+1] the metric as the logit lens reads it from each row [L+1, T, d] at the last position."""
    rows = residual[:, -1]
    if foil is None:
        return metric(adapter.readout(rows).float(), target, None).cpu().numpy()
    z = adapter.readout(rows, [target, foil]).double()
    return (z[:, 0] - z[:, 1]).cpu().numpy()
