"""The patching grid: one run per patched cell, asked of the engine (the maths: lens/analysis/patching.py).

Where the engine can resume a recorded run, each patched run starts at the block patched and
residual patches run packed (lens/engine/packed.py); elsewhere every patched run is a whole
pass of the corrupted prompt with the same edits: the plain path, which tests hold the fast
one against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..analysis.patching import columns_metric, finish_resid_grid, last_metric, metric, resid_plan
from ..engine.base import Read
from ..engine.sites import resid_rows
from .edits import set_diagonal, set_head_per_element

WRITES = {"attn": "attn_out", "mlp": "mlp_out", "head": "head_out"}


@dataclass
class PatchRun:
    """One prompt's pass, as the grid reads it: its residual stream and the writes a site patches."""

    ids: list[int]
    residual: torch.Tensor  # [L+1, T, d]
    writes: dict[str, torch.Tensor]  # site -> [T, ...]
    recording: object = None  # the engine's Recording where it can resume one


def run_for_patching(engine, ids: list[int], site: str | None) -> PatchRun:
    """A pass of ``ids`` keeping what patching needs (with ``site``: the writes it patches)."""
    L = engine.adapter.n_layers
    want = [f"{WRITES[site]}.{l}" for l in range(1, L + 1)] if site in WRITES else []
    if engine.capabilities.resumes:
        rec = engine.record(ids, read={s: None for s in want})
        return PatchRun(list(ids), rec.residual, dict(rec.reads), rec)
    residual = torch.empty(L + 1, len(ids), engine.adapter.d_model)
    read = {s: Read(into=residual[r]) for r, s in enumerate(resid_rows(L))}
    read.update({s: None for s in want})
    out = engine.run(ids, read=read, logits="none")
    return PatchRun(list(ids), residual, {s: out.reads[s][0] for s in want})


def _runs(engine, corrupt: PatchRun, batch: int, write: dict, columns=None) -> torch.Tensor:
    """[batch, V] last-position logits of ``batch`` corrupted runs with ``write`` (only ``columns``)."""
    if corrupt.recording is not None:
        return engine.resume(corrupt.recording, batch, write, columns=columns)
    z = engine.run([corrupt.ids] * batch, write=write, logits="last").logits
    return z if columns is None else z[:, columns]


def patch_grid(engine, clean: PatchRun, corrupt: PatchRun, target: int, foil: int | None, site: str = "resid",
               progress=None) -> tuple[np.ndarray, float, float]:
    """The raw metric of every patched run ([rows, T] or [L, H] for heads), m(clean), m(corrupt)."""
    from ..engine.packed import packed_resid_logits, packs

    a = engine.adapter
    L, T = a.n_layers, len(corrupt.ids)
    say = progress or (lambda f, m: None)
    m_clean = last_metric(a, clean.residual, target, foil)
    m_corrupt = last_metric(a, corrupt.residual, target, foil)
    columns = None if foil is None else [target, foil]
    if site == "resid":
        if corrupt.recording is not None and packs(corrupt.recording):
            z = packed_resid_logits(engine, corrupt.recording, resid_plan(clean.residual, corrupt.residual), columns)
            rows = columns_metric(z, foil, target).cpu().numpy()
            say(1.0, "patched every row")
        else:
            rows = np.empty((L, T))
            for r in range(L):
                write = {f"resid_pre.{r + 1}": set_diagonal(clean.residual[r])}
                rows[r] = metric(_runs(engine, corrupt, T, write), target, foil).cpu().numpy()
                say((r + 1) / (L + 1), f"patching row {r} of {L}")
        return finish_resid_grid(rows, m_clean, m_corrupt), m_clean, m_corrupt
    grid = np.empty((L, a.n_heads if site == "head" else T))
    for l in range(1, L + 1):
        name = f"{WRITES[site]}.{l}"
        if site == "head":
            write, n = {name: set_head_per_element(clean.writes[name], a.head_dim)}, a.n_heads
        else:
            write, n = {name: set_diagonal(clean.writes[name])}, T
        grid[l - 1] = metric(_runs(engine, corrupt, n, write), target, foil).cpu().numpy()
        say(l / L, f"patching the heads of block {l} of {L}" if site == "head" else f"patching block {l} of {L}")
    return grid, m_clean, m_corrupt
