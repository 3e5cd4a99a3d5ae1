"""The lens of many prompts at one position each, many prompts per forward pass.

Prompts are grouped by token count and read position: a group of equal-length prompts is one batch with
no padding, no attention mask and the positions every architecture gives a lone prompt, so each prompt's
numbers are the ones it gives alone (tests/test_suites.py checks this against ``Backend.logit_lens`` on
tiny models of several architectures and on the bundled model). Each batch is one ``engine.run`` that reads
every lens row's residual stream at the one position, and reduces it where the model runs (``reduce``: on a
remote engine only ``[rows, batch]`` numbers come back): per row and prompt the target's probability,
log-probability and rank, the KL divergence from the final distribution, the top-1 token and its
probability, and logit(target) − logit(foil) where a foil is given.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch

from ..engine.sites import resid_rows
from ..options import Progress

MAX_BATCH = 64  # prompts per forward pass
MAX_BATCH_TOKENS = 4096  # tokens per forward pass (prompts × length)
LOGIT_ROWS = 256  # rows of logits reduced at once: [256, vocab] floats (50 MB at 49k)


def _reduce(reads, readout, rows: list[str], targets: list[int], foils: list[int], maps, dtype, chunk: int):
    """[R, B] reductions of the rows' vectors at the read position (torch operations and the read-out only:
    a remote engine runs this where the model is). ``targets``/``foils``: -1 where none is given (the
    target is then the model's own top-1)."""
    h = torch.stack([reads[name][:, 0] for name in rows])  # [R, B, d]
    if maps is not None:
        h = maps(h)  # a fitted lens: each row through its affine map, the last row unchanged
    h = h.to(dtype)
    R, B, d = h.shape
    z_final = readout.logits(h[-1])  # [B, V]: the model's own output
    lp_final = z_final.log_softmax(-1)
    p_final = lp_final.exp()
    given = torch.tensor(targets, device=z_final.device)
    tgt = torch.where(given >= 0, given, lp_final.argmax(-1))
    foil = torch.tensor(foils, device=z_final.device)
    has_foil = foil >= 0
    foil = foil.clamp_min(0)
    out = {k: torch.empty(R * B, dtype=torch.float32) for k in ("prob", "logprob", "kl", "diff", "top1p")}
    out["rank"] = torch.empty(R * B, dtype=torch.long)
    out["top1"] = torch.empty(R * B, dtype=torch.long)
    flat = h.reshape(R * B, d)
    for c0 in range(0, R * B, chunk):
        c1 = min(R * B, c0 + chunk)
        b = torch.arange(c0, c1, device=z_final.device) % B  # the prompt of each flat row (row-major [R, B])
        z = readout.logits(flat[c0:c1])  # [n, V]
        lp = z.log_softmax(-1)
        t = tgt[b, None]
        z_t = z.gather(-1, t)
        out["rank"][c0:c1] = ((z > z_t).sum(-1) + 1).cpu()
        out["logprob"][c0:c1] = lp.gather(-1, t)[:, 0].float().cpu()
        out["kl"][c0:c1] = (p_final[b] * (lp_final[b] - lp)).sum(-1).clamp_min(0).float().cpu()
        top_lp, top_i = lp.max(-1)
        out["top1"][c0:c1] = top_i.cpu()
        out["top1p"][c0:c1] = top_lp.exp().float().cpu()
        diff = (z_t[:, 0] - z.gather(-1, foil[b, None])[:, 0]).float()
        out["diff"][c0:c1] = torch.where(has_foil[b], diff, torch.full_like(diff, float("nan"))).cpu()
    out["prob"] = out["logprob"].exp()
    res = {k: v.view(R, B) for k, v in out.items()}
    res["target"] = tgt.cpu()
    return res


def groups(lengths: Sequence[int], positions: Sequence[int], max_batch: int = MAX_BATCH,
           max_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Batches of prompt indices: equal token count and read position in each, at most ``max_batch`` prompts
    and about ``max_tokens`` tokens (a long prompt still gets a batch of its own)."""
    by_key: dict[tuple[int, int], list[int]] = {}
    for i, (n, p) in enumerate(zip(lengths, positions)):
        by_key.setdefault((int(n), int(p)), []).append(i)
    batches = []
    for (n, _), members in sorted(by_key.items()):
        size = max(1, min(max_batch, max_tokens // max(1, n)))
        batches += [members[k:k + size] for k in range(0, len(members), size)]
    return batches


def lens_at_positions(engine, prompts: Sequence[Sequence[int]], positions: Sequence[int],
                      targets: Sequence[int | None], foils: Sequence[int | None], maps: Callable | None = None,
                      progress: Progress | None = None, max_batch: int = MAX_BATCH,
                      max_tokens: int = MAX_BATCH_TOKENS) -> dict[str, np.ndarray]:
    """Per prompt (token ids), the lens of every row at ``positions[i]`` (0-based, in range): arrays [N, R]
    ``target_prob``, ``target_logprob``, ``target_rank``, ``kl_to_final``, ``logit_diff`` (NaN without a
    foil), ``top1_ids``, ``top1_prob``, and [N] ``target_ids`` (the given target, else the model's top-1).
    ``maps``: a fitted lens's ``apply`` ([R, n, d] → [R, n, d]), None for the logit lens."""
    a = engine.adapter
    rows = resid_rows(a.n_layers)
    R, N = len(rows), len(prompts)
    out = {k: np.empty((N, R), np.float32) for k in ("target_prob", "target_logprob", "kl_to_final", "logit_diff",
                                                     "top1_prob")}
    out.update({k: np.empty((N, R), np.int64) for k in ("target_rank", "top1_ids")})
    out["target_ids"] = np.empty(N, np.int64)
    names = {"prob": "target_prob", "logprob": "target_logprob", "kl": "kl_to_final", "diff": "logit_diff",
             "top1p": "top1_prob", "rank": "target_rank", "top1": "top1_ids"}
    dtype = a.unembed.weight.dtype
    chunk = max(1, LOGIT_ROWS * 49152 // max(1, engine.vocab_size()))
    done = 0
    for batch in groups([len(p) for p in prompts], positions, max_batch, max_tokens):
        pos = int(positions[batch[0]])
        reduce = partial(_reduce, rows=rows, targets=[-1 if targets[i] is None else int(targets[i]) for i in batch],
                         foils=[-1 if foils[i] is None else int(foils[i]) for i in batch], maps=maps, dtype=dtype,
                         chunk=chunk)
        run = engine.run([list(prompts[i]) for i in batch], read={s: [pos] for s in rows}, logits="none",
                         reduce=reduce)
        got = run.reduced
        for k, name in names.items():
            out[name][batch] = got[k].T.numpy()
        out["target_ids"][batch] = got["target"].numpy()
        done += len(batch)
        if progress is not None:
            progress(done / N, f"read {done} of {N} prompts")
    return out
