"""Causal tracing with noise (Meng et al. 2022, ROME): no second prompt. The subject's token embeddings get
Gaussian noise, and one activation of the clean run is put back, cell by cell; how much of the clean answer
that restores, averaged over the noise samples, says where the model carries what it knows of the subject.

Every run goes through the engine: the noise is a write at ``resid_pre.1`` (the embeddings), the restored
activation a write at the patched site, many cells and samples per batch.
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.patching import metric
from ..engine.sites import resid_rows

WRITES = {"attn": "attn_out", "mlp": "mlp_out"}
MAX_BATCH_TOKENS = 8192  # copies × tokens in one resumed pass


def noise_for(embeddings: torch.Tensor, subject: list[int], samples: int, seed: int, scale: float) -> tuple:
    """[samples, len(subject), d] seeded Gaussian noise with standard deviation ``scale`` × the standard
    deviation of every entry of the prompt's embeddings [T, d]; and that standard deviation."""
    std = float(embeddings.float().std())
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(samples, len(subject), embeddings.shape[-1], generator=g) * (scale * std)
    return noise, std


def _noised(noise: torch.Tensor, subject: list[int], samples_of: torch.Tensor, keep: torch.Tensor | None = None,
            clean: torch.Tensor | None = None):
    """The edit at ``resid_pre.1``: batch row b gets noise sample ``samples_of[b]`` on the subject's tokens;
    with ``keep``, row b's position ``keep[b]`` gets its clean embedding back (the residual row 0 restored)."""
    def edit(x: torch.Tensor, call) -> torch.Tensor:
        y = x.clone()
        y[:, subject] = y[:, subject] + noise[samples_of].to(y.dtype)
        if keep is not None:
            rows = torch.arange(y.shape[0])
            y[rows, keep] = clean[keep].to(y.dtype)
        return y
    return edit


def _restore(clean: torch.Tensor, positions: torch.Tensor):
    """Batch row b gets the clean activation at ``positions[b]``."""
    def edit(x: torch.Tensor, call) -> torch.Tensor:
        y = x.clone()
        rows = torch.arange(y.shape[0])
        y[rows, positions] = clean[positions].to(y.dtype)
        return y
    return edit


def noise_trace(engine, ids: list[int], subject: list[int], target: int, foil: int | None, site: str = "resid",
                samples: int = 10, seed: int = 0, scale: float = 3.0, progress=None) -> dict:
    """Per row (the lens's rows for ``resid``, blocks for ``attn``/``mlp``) and position, the mean over the
    noise samples of the metric with that activation restored; the clean metric, the noised one, the noise's
    standard deviation. Rows of ``resid``: the input of block 1 (the embeddings) … the output of the last."""
    say = progress or (lambda f, m: None)
    a = engine.adapter
    L, T = a.n_layers, len(ids)
    names = resid_rows(L) if site == "resid" else [f"{WRITES[site]}.{l}" for l in range(1, L + 1)]
    clean = engine.run(ids, read={n: None for n in set(names) | {"resid_pre.1"}}, logits="last")
    m_clean = float(metric(clean.logits, target, foil)[0])
    emb = clean.reads["resid_pre.1"][0]
    noise, std = noise_for(emb[subject], subject, samples, seed, scale)
    s_all = torch.arange(samples)
    noised = engine.run([ids] * samples, write={"resid_pre.1": _noised(noise, subject, s_all)}, logits="last")
    m_noised = float(metric(noised.logits, target, foil).mean())

    # A restored cell before the first noised token changes nothing (the model is causal): its runs are
    # skipped and it gets the noised metric. The rest: each position with each sample.
    first = min(subject)
    raw = np.full((len(names), T), m_noised)
    if engine.capabilities.resumes:  # each sample's noised run recorded once; a restore starts at its block
        recordings = [engine.record(ids, write={"resid_pre.1": _noised(noise[s:s + 1], subject, torch.zeros(
            1, dtype=torch.long))}) for s in range(samples)]
    # Where a restore is written: row r of the residual stream as the input of block r + 1, so that a resumed
    # run starts there (the same vector as the output of block r).
    at = [f"resid_pre.{r + 1}" for r in range(L)] if site == "resid" else names
    for r in range(L):  # resid: its last row (L) is read off below, not run
        source = clean.reads[names[r]][0]
        # Row 0 of the residual stream holds the embeddings: only a noised token's restore changes anything.
        positions = [p for p in range(T) if p >= first and (site != "resid" or r > 0 or p in subject)]
        if positions:
            pos = torch.tensor(positions)
            if engine.capabilities.resumes:  # several samples' restores a pass, sample s's rows from its recording
                n, values = len(positions), []
                per = max(1, MAX_BATCH_TOKENS // (n * T))
                for s in range(0, samples, per):
                    recs = recordings[s:s + per]
                    z = engine.resume(recs, len(recs) * n, {at[r]: _restore(source, pos.repeat(len(recs)))})
                    values.append(metric(z, target, foil).view(len(recs), n))
                values = torch.cat(values)
            else:
                values = torch.empty(samples, len(positions), dtype=torch.float64)
                for s in range(samples):
                    smp = torch.full((len(positions),), s)
                    write = ({"resid_pre.1": _noised(noise, subject, smp, keep=pos, clean=source)}
                             if site == "resid" and r == 0 else
                             {"resid_pre.1": _noised(noise, subject, smp), at[r]: _restore(source, pos)})
                    z = engine.run([ids] * len(positions), write=write, logits="last").logits
                    values[s] = metric(z, target, foil)
            raw[r, positions] = values.mean(0).numpy()
        say((r + 1) / L, f"restoring row {r} of {len(names) - 1}" if site == "resid" else
            f"restoring block {r + 1} of {L}")
    if site == "resid":  # the last row feeds only the read-out: restoring it changes the last position only
        raw[L] = m_noised
        raw[L, T - 1] = m_clean
    return {"raw": raw, "m_clean": m_clean, "m_noised": m_noised, "noise_std": std}
