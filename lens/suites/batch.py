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
    target is then the model's own top-1).

    A few prompts' rows are decoded by one matmul; then each prompt's R rows of logits z are reduced together
    while they are in the CPU's cache, in a few passes: the max (the top-1, and the softmax's shift), a
    comparison with the target's logit (the rank), one product-sum with the final distribution
    (``Σ p_final·(z − max)``) and one exp-sum (``log_s``, so that ``lse = max + log_s``). Since
    ``Σ p_final = 1``, ``Σ p_final·log p_row = Σ p_final·(z_row − max) − log_s``, and the KL is the final row's
    value of it minus the row's; log-probabilities are ``z − max − log_s``: no log-softmax is kept."""
    h = torch.stack([reads[name][:, 0] for name in rows])  # [R, B, d]
    if maps is not None:
        h = maps(h)  # a fitted lens: each row through its affine map, the last row unchanged
    R, B, d = h.shape
    x = h.to(dtype).transpose(0, 1).reshape(B * R, d)  # prompt by prompt: [B·R, d]
    out = {k: torch.empty(B, R) for k in ("logprob", "kl", "diff", "top1p")}
    out.update({k: torch.empty(B, R, dtype=torch.long) for k in ("rank", "top1")})
    target = torch.empty(B, dtype=torch.long)
    per = max(1, chunk // R)  # prompts per matmul
    prod = above = None
    for b0 in range(0, B, per):
        z_all = readout.logits(x[b0 * R:min(B, b0 + per) * R])  # [n·R, V]
        if prod is None:  # buffers for one prompt's rows, reused
            prod = torch.empty(R, z_all.shape[-1], dtype=z_all.dtype, device=z_all.device)
            above = torch.empty(R, z_all.shape[-1], dtype=torch.bool, device=z_all.device)
        for j in range(z_all.shape[0] // R):
            b = b0 + j
            z = z_all[j * R:(j + 1) * R]  # [R, V]
            m, top1 = z.max(-1)
            t = targets[b] if targets[b] >= 0 else int(top1[-1])  # the given target, else the model's own answer
            z_t = z[:, t].clone()
            torch.gt(z, z_t.unsqueeze(-1), out=above)
            out["rank"][b] = above.sum(-1).cpu() + 1
            diff = z_t - z[:, foils[b]] if foils[b] >= 0 else torch.full_like(z_t, float("nan"))
            z.sub_(m.unsqueeze(-1))  # shifted by each row's max: exp never overflows
            # The final distribution with torch.exp (torch.softmax's fast float32 exp was off by 5e-6, which the
            # KL of a row 100 nats away multiplies); the product-sum by torch's pairwise sum (a matrix-vector
            # product adds its 49k terms one after another and was off by 1e-3 nats).
            p_final = z[-1].exp()
            p_final.div_(p_final.sum())
            cross = torch.mul(z, p_final, out=prod).sum(-1)  # Σ p_final·(z_row − max)
            log_s = z.exp_().sum(-1).log()  # in place: z is not needed any more
            lp_cross = cross - log_s  # Σ p_final · log p_row
            out["kl"][b] = (lp_cross[-1] - lp_cross).clamp_min(0).float().cpu()
            out["logprob"][b] = (z_t - m - log_s).float().cpu()
            out["top1p"][b] = (-log_s).exp().float().cpu()
            out["top1"][b] = top1.cpu()
            out["diff"][b] = diff.float().cpu()
            target[b] = t
    res = {k: v.T.contiguous() for k, v in out.items()}  # [R, B]
    res["prob"] = res["logprob"].exp()
    res["target"] = target
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
