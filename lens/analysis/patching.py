"""Activation patching (causal tracing): which activations of a clean prompt restore its answer
when put into a corrupted prompt's run.

Metric: the logit difference ``m = logit(target) − logit(foil)`` at the last position, or the
target's log-probability when no foil is given. A patched run's score is
``(m(patched) − m(corrupt)) / (m(clean) − m(corrupt))``: 0 changes nothing, 1 restores the
clean answer fully. Sites:

- ``resid``: one residual-stream vector, row r (0: the input of block 1, r: the output of
  block r, as the lens rows) at position p;
- ``attn`` / ``mlp``: what block l's attention or MLP writes at position p;
- ``head``: what head h of block l writes, at every position (its slice of the input of the
  attention's output projection).

The runs themselves are lens/model/intervene.py's: each starts at the block patched.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import LensError
from ..model.adapters import Adapter
from ..model.intervene import Recording, packed_residual_logits, packs, record, run_from

from ..options import PATCH_SITES as SITES
MIN_METRIC_GAP = 1e-6  # |m(clean) − m(corrupt)| below this: nothing to restore


def metric(logits: torch.Tensor, target: int, foil: int | None) -> torch.Tensor:
    """[n] the metric of each row of last-position logits [n, V]."""
    logits = logits.double()
    if foil is None:
        return torch.log_softmax(logits, -1)[:, target]
    return logits[:, target] - logits[:, foil]


def check_pair(clean_ids: Sequence[int], corrupt_ids: Sequence[int], clean_tokens: list[str],
               corrupt_tokens: list[str]) -> None:
    if len(clean_ids) != len(corrupt_ids):
        raise LensError(
            f"the clean prompt has {len(clean_ids)} tokens and the corrupted one {len(corrupt_ids)}: patching needs "
            f"the same count, position by position (clean: {clean_tokens}; corrupted: {corrupt_tokens})")


def check_site(site: str, adapter: Adapter) -> str:
    if site not in SITES:
        raise LensError(f"unknown patching site {site!r}; choose {', '.join(SITES)}")
    if not adapter.has_lm_head or not adapter.is_causal:
        raise LensError(f"{adapter.model_type} is not a causal language model: patching its answer does not apply")
    if site in ("attn", "mlp") and adapter.post_ln:
        raise LensError(f"{adapter.model_type} normalises after each sub-block: its attention and MLP outputs "
                        "are not separate writes to patch; patch the residual stream")
    if site == "head" and not adapter.out_proj:
        raise LensError(f"heads of {adapter.model_type} cannot be patched separately: {adapter.routes_unavailable()}")
    return site


def _last_metric(adapter: Adapter, rec: Recording, target: int, foil: int | None) -> float:
    """The metric read from the recorded final residual stream, the way every patched run reads it."""
    return float(metric(adapter.readout(rec.residual[-1, -1:]).float(), target, foil)[0])


def _rows_batch(rec: Recording, row: int) -> torch.Tensor:
    T = rec.n_tokens
    return rec.residual[row].unsqueeze(0).expand(T, -1, -1).clone()  # one copy per patched position


def _patch_each_position(clean: torch.Tensor):
    """fn for a batch [T, T, d] (or OPT's [T·T, d]): element p gets ``clean[p]`` at position p."""
    T = clean.shape[0]

    def fn(out: torch.Tensor) -> torch.Tensor:
        x = out.reshape(T, T, -1).clone()
        idx = torch.arange(T)
        x[idx, idx] = clean.to(x.dtype)
        return x.reshape(out.shape)
    return fn


@torch.no_grad()
def patch_grid(model, adapter: Adapter, clean: Recording, corrupt: Recording, target: int, foil: int | None,
               site: str = "resid", progress=None) -> tuple[np.ndarray, float, float]:
    """The raw metric of every patched run ([rows, T] or [L, H] for heads), m(clean), m(corrupt)."""
    L, T = adapter.n_layers, corrupt.n_tokens
    say = progress or (lambda f, m: None)
    m_clean, m_corrupt = _last_metric(adapter, clean, target, foil), _last_metric(adapter, corrupt, target, foil)
    if site == "resid" and packs(corrupt):
        grid = np.empty((L + 1, T))
        if foil is None:  # the log-probability needs every logit
            z = packed_residual_logits(model, adapter, clean, corrupt)
            grid[:L] = metric(z.reshape(L * T, -1), target, foil).reshape(L, T).cpu().numpy()
        else:
            z = packed_residual_logits(model, adapter, clean, corrupt, [target, foil]).double()
            grid[:L] = (z[..., 0] - z[..., 1]).cpu().numpy()
        grid[L] = m_corrupt
        grid[L, T - 1] = m_clean
        say(1.0, "patched every row")
        return grid, m_clean, m_corrupt
    if site == "resid":
        grid = np.empty((L + 1, T))
        for r in range(L):
            h = _rows_batch(corrupt, r)
            idx = torch.arange(T)
            h[idx, idx] = clean.residual[r]
            grid[r] = metric(run_from(model, adapter, corrupt, r, h), target, foil).cpu().numpy()
            say((r + 1) / (L + 1), f"patching row {r} of {L}")
        # The last row feeds only the read-out: a patch there changes the last position's answer only.
        grid[L] = m_corrupt
        grid[L, T - 1] = m_clean
        return grid, m_clean, m_corrupt
    if site in ("attn", "mlp"):
        writes, modules = (clean.attn_out, adapter.attn_write) if site == "attn" else (clean.mlp_out, adapter.mlp_write)
        grid = np.empty((L, T))
        for l in range(L):
            hook = (modules[l], "post", _patch_each_position(writes[l]))
            grid[l] = metric(run_from(model, adapter, corrupt, l, _rows_batch(corrupt, l), [hook]),
                             target, foil).cpu().numpy()
            say((l + 1) / L, f"patching block {l + 1} of {L}")
        return grid, m_clean, m_corrupt
    H, hd = adapter.n_heads, adapter.head_dim
    grid = np.empty((L, H))
    for l in range(L):
        source = clean.head_in[l]  # [T, H·hd]

        def fn(x: torch.Tensor, source=source) -> torch.Tensor:  # batch element h gets head h's slice
            x = x.clone()
            for h in range(H):
                x[h, :, h * hd:(h + 1) * hd] = source[:, h * hd:(h + 1) * hd].to(x.dtype)
            return x
        h0 = corrupt.residual[l].unsqueeze(0).expand(H, -1, -1).clone()
        grid[l] = metric(run_from(model, adapter, corrupt, l, h0, [(adapter.out_proj[l], "pre", fn)]),
                         target, foil).cpu().numpy()
        say((l + 1) / L, f"patching the heads of block {l + 1} of {L}")
    return grid, m_clean, m_corrupt


def normalised(grid: np.ndarray, m_clean: float, m_corrupt: float) -> np.ndarray:
    gap = m_clean - m_corrupt
    if abs(gap) < MIN_METRIC_GAP:
        raise LensError("the clean and the corrupted prompt give the same metric: there is nothing to restore; "
                        "pick a corrupted prompt (or a foil) that changes the answer")
    return ((grid - m_corrupt) / gap).astype(np.float32)


def record_pair(model, adapter: Adapter, clean_ids, corrupt_ids, site: str) -> tuple[Recording, Recording]:
    sub = site != "resid"
    return record(model, adapter, clean_ids, sublayers=sub), record(model, adapter, corrupt_ids, sublayers=False)


@torch.no_grad()
def lens_metric(adapter: Adapter, rec: Recording, target: int, foil: int | None) -> np.ndarray:
    """[L+1] the metric as the logit lens reads it from each row at the last position."""
    rows = rec.residual[:, -1]
    if foil is None:
        return metric(adapter.readout(rows).float(), target, None).cpu().numpy()
    z = adapter.readout(rows, [target, foil]).double()
    return (z[:, 0] - z[:, 1]).cpu().numpy()
