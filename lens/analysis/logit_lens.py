"""Logit lens: what each layer would predict at each position.

For every row (embeddings, then after each block) and position we decode
``norm_f(h)`` with the unembedding and keep only reductions of the softmax:
top-k, entropy, KL to the final layer, and the rank/probability of a target
token. The ``[rows, T, V]`` logits are never held: positions are processed in
chunks, and every statistic of a chunk comes from a handful of passes over its
logits (the top-1 value doubles as the max for a stable softmax; the KL needs
one dot product with the final layer's distribution).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch

from ..errors import LensError
from ..jobs import checkpoint
from ..model.tokens import decode_token
from ..engine.trace import Trace
from ..options import LensOptions
from ..results import LogitLensResult
from .early_exit import saturation_rows

if TYPE_CHECKING:
    from ..fitted.affine import AffineLens

ROWS_PER_CHUNK = 512  # rows of logits decoded by one matmul: ~100 MB for a 49k vocabulary
MAX_CHUNK_FLOATS = 512 * 49152  # larger vocabularies get fewer rows per chunk
BLOCK_ROWS = 16  # rows reduced together: their logits (3 MB at 49k) stay in the CPU cache between passes
GROUP = 64  # top-k searches the k groups of GROUP logits with the largest maxima
LOG2E = 1.4426950408889634


def _rows_per_chunk(vocab: int) -> int:
    """Rows per matmul: large enough to run near the CPU's peak, small enough to cost little memory."""
    return max(1, min(ROWS_PER_CHUNK, MAX_CHUNK_FLOATS // vocab))


_scratch_lock = threading.Lock()
_scratch_buf: list[torch.Tensor] = []


# A lens of more chunks than this does not keep its buffer afterwards: it takes seconds, beside which the buffer's
# first-write cost (below) is nothing, and the 100 MB are then free while a long prompt's other views run.
KEEP_SCRATCH_CHUNKS = 16


@contextmanager
def _scratch(numel: int, dtype: torch.dtype, device: torch.device, keep: bool = True) -> Iterator[torch.Tensor]:
    """A flat CPU buffer kept between calls (at most one chunk's logits, ~100 MB), unless ``keep`` is False.

    The first write to fresh memory costs the kernel a page fault per 4 kB: ~0.05 s
    per 100 MB here, a tenth of a short prompt's lens. One call at a time uses the
    kept buffer; a concurrent call (another browser session) gets one of its own.
    """
    if device.type != "cpu" or not _scratch_lock.acquire(blocking=False):
        yield torch.empty(numel, dtype=dtype, device=device)
        return
    try:
        if not _scratch_buf or _scratch_buf[0].numel() < numel or _scratch_buf[0].dtype != dtype:
            _scratch_buf[:] = [torch.empty(numel, dtype=dtype)]
        yield _scratch_buf[0][:numel]
    finally:
        if not keep:
            _scratch_buf.clear()
        _scratch_lock.release()


def _topk(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``z.topk(k, -1)``, in one pass over ``z`` instead of torch's ~6.

    Every one of the k largest logits lies in one of the k groups of GROUP
    consecutive logits whose maxima are largest (each group's maximum is a logit
    at least as large as its members), so top-k runs on those k·GROUP candidates.
    Ties may pick other indices of the same value, as torch.topk's may.
    """
    *lead, V = z.shape
    n_groups = V // GROUP
    if k * GROUP * 4 > V:  # small vocabularies: nothing to gain
        return z.topk(k, dim=-1)
    flat = z.reshape(-1, V)
    head = flat[:, : n_groups * GROUP].view(-1, n_groups, GROUP)
    _, groups = head.amax(-1).topk(k, dim=-1)  # [N, k]
    idx = (groups.unsqueeze(-1) * GROUP + torch.arange(GROUP, device=z.device)).view(-1, k * GROUP)
    if n_groups * GROUP < V:  # the tail that fills no group is always a candidate
        tail = torch.arange(n_groups * GROUP, V, device=z.device).expand(idx.shape[0], -1)
        idx = torch.cat([idx, tail], dim=-1)
    vals, j = flat.gather(-1, idx).topk(k, dim=-1)
    return vals.view(*lead, k), idx.gather(-1, j).view(*lead, k)


def resolve_target(tokenizer, target: str | None) -> tuple[int | None, str]:
    """Token id of a typed target (its first token) and a note if it had to be cut."""
    if target is None or target == "":
        return None, ""
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if not ids:
        raise LensError(f"the target {target!r} has no tokens")
    note = ""
    if len(ids) > 1:
        first = decode_token(tokenizer, ids[0])
        note = f"the target {target!r} is {len(ids)} tokens; tracking its first token {first!r}"
    if not target[:1].isspace():
        spaced = tokenizer(" " + target, add_special_tokens=False)["input_ids"]
        if len(spaced) == 1 and spaced[0] != ids[0]:
            # Most tokenizers spell a word after a space as another token: " Paris" is not "Paris".
            note = (note + "; " if note else "") + (
                f"{target!r} without a leading space is the word glued to what comes before; after a space it "
                f"is the one token {' ' + target!r}: type that to follow the word")
    return int(ids[0]), note


def decode_table(tokenizer, ids: np.ndarray) -> dict[int, str]:
    return {int(i): decode_token(tokenizer, int(i)) for i in np.unique(ids)}


@torch.no_grad()
def logit_lens(trace: Trace, tokenizer, options: LensOptions = LensOptions(),
               progress: Callable[[float, str], None] | None = None,
               fitted: "AffineLens | None" = None) -> LogitLensResult:
    """Full layer × position logit lens of ``trace`` (which must hold the residual stream).

    ``fitted``: a linear-shortcut or tuned lens (lens/fitted/) whose per-row maps are applied
    before the read-out; None: the plain logit lens. ``progress(fraction, message)`` is
    called after each chunk of positions.
    """
    if trace.residual is None:
        raise LensError("this trace holds no residual stream; capture it to run the lens")
    adapter = trace.adapter
    if adapter is None:
        raise LensError(f"{trace.model_name}: this trace keeps no model to read predictions with")
    adapter.require_lm_head("the logit lens does not apply", trace.model_name)
    T = trace.n_tokens
    start, stop = options.positions or (0, T)
    if not (0 <= start < stop <= T):
        raise LensError(f"position window {start}..{stop} is outside the prompt's {T} tokens")
    k = int(options.top_k)
    V = adapter.unembed.weight.shape[0]
    if not 1 <= k <= min(100, V):
        raise LensError(f"top-k must be between 1 and {min(100, V)}, not {k}")
    target_id, note = resolve_target(tokenizer, options.target)

    R = trace.n_layers + 1
    P = stop - start
    top_ids = np.empty((R, P, k), np.int64)
    top_probs = np.empty((R, P, k), np.float32)
    entropy = np.empty((R, P), np.float32)
    kl = np.empty((R, P), np.float32)
    t_rank = np.empty((R, P), np.int64)
    t_prob = np.empty((R, P), np.float32)
    t_ids = np.empty(P, np.int64)
    next_loss = np.full((R, P), np.nan, np.float32)
    alt_ids = _alternatives(trace, adapter, stop - 1, int(options.alternatives), fitted)
    n_alt = len(alt_ids)
    a_rank = np.empty((n_alt, R, P), np.int64)
    a_prob = np.empty((n_alt, R, P), np.float32)

    W = adapter.unembed.weight
    b = adapter.unembed.bias
    step = max(1, _rows_per_chunk(V) // R)  # positions per chunk
    ids_all = torch.tensor(trace.token_ids)
    # One logits buffer for every chunk, and a small one for the block-wise reductions,
    # which stay in the CPU's cache.
    zrows = R * min(step, P)
    chunks = -(-P // step)
    with _scratch((zrows + BLOCK_ROWS) * V, W.dtype, W.device, keep=chunks <= KEEP_SCRATCH_CHUNKS) as flat:
        zbuf = flat[: zrows * V].view(zrows, V)
        fbuf = flat[zrows * V:].view(BLOCK_ROWS, V)
        for c0 in range(start, stop, step):
            if c0 > start:
                checkpoint()  # a long prompt's lens stops between chunks for an asker who left (or gives way)
            c1 = min(stop, c0 + step)
            n = c1 - c0
            h = trace.residual[:, c0:c1, :].to(W.device, W.dtype)  # [R, n, d]
            x = adapter.normed(h if fitted is None else fitted.apply(h))
            z = zbuf[: R * n]
            torch.mm(x.reshape(R * n, -1), W.T, out=z)
            z = z.view(R, n, V)
            if b is not None:
                z += b
            if adapter.softcap:
                z.div_(adapter.softcap).tanh_().mul_(adapter.softcap)
            topv, topi = _topk(z, k)  # topv[..., 0] is the max: the softmax shift
            m = topv[..., :1]
            if target_id is None:
                tgt = topi[-1, :, 0]  # the final layer's own top-1
            else:
                tgt = torch.full((n,), target_id, dtype=torch.long, device=z.device)
            z_t = z.gather(-1, tgt.view(1, n, 1).expand(R, n, 1))
            z_a = z.gather(-1, alt_ids.view(1, 1, n_alt).expand(R, n, n_alt))  # [R, n, n_alt]
            rank_a = torch.empty(n_alt, R, n, dtype=torch.long)
            nxt = ids_all[c0 + 1:c1 + 1].to(z.device)  # the next token, where there is one
            z_next = z[:, : len(nxt), :].gather(-1, nxt.view(1, -1, 1).expand(R, -1, 1))

            # The final layer's distribution first: the KL of every row needs it.
            p_final = torch.sub(z[-1], m[-1])  # [n, V]
            p_final.exp_()
            p_final.div_(p_final.sum(-1, keepdim=True))
            rank = torch.empty(R, n, dtype=torch.long)
            s = torch.empty(R, n, dtype=W.dtype)
            ez = torch.empty(R, n, dtype=W.dtype)
            pz = torch.empty(R, n, dtype=W.dtype)
            for r in range(R):
                for p0 in range(0, n, BLOCK_ROWS):
                    p1 = min(n, p0 + BLOCK_ROWS)
                    zb, fb = z[r, p0:p1], fbuf[: p1 - p0]
                    torch.gt(zb, z_t[r, p0:p1], out=fb)  # 1.0 where a token beats the target
                    rank[r, p0:p1] = fb.sum(-1).long() + 1
                    for j in range(n_alt):  # (before the shift below: it changes zb in place)
                        torch.gt(zb, z_a[r, p0:p1, j:j + 1], out=fb)
                        rank_a[j, r, p0:p1] = fb.sum(-1).long() + 1
                    zb.sub_(m[r, p0:p1])  # logits - max: exp never overflows
                    torch.mul(zb, LOG2E, out=fb).exp2_()  # exp(x) as 2^(x·log2 e): twice as fast here
                    torch.sum(fb, -1, out=s[r, p0:p1])
                    torch.sum(fb.mul_(zb), -1, out=ez[r, p0:p1])  # Σ e (z - max)
                    torch.mul(p_final[p0:p1], zb, out=fb)
                    torch.sum(fb, -1, out=pz[r, p0:p1])  # Σ p_final (z - max)
            log_s = torch.log(s)
            ent = log_s - ez / s
            cross = pz - log_s  # Σ p_final log p_row
            kl_chunk = (-ent[-1]).unsqueeze(0) - cross
            del p_final

            sl = slice(c0 - start, c1 - start)
            top_ids[:, sl] = topi.cpu().numpy()
            top_probs[:, sl] = torch.exp(topv - m).div_(s.unsqueeze(-1)).cpu().numpy()
            entropy[:, sl] = ent.cpu().numpy()
            kl[:, sl] = kl_chunk.clamp_min(0).cpu().numpy()
            t_ids[sl] = tgt.cpu().numpy()
            t_rank[:, sl] = rank.cpu().numpy()
            t_prob[:, sl] = torch.exp(z_t[..., 0] - m[..., 0]).div_(s).cpu().numpy()
            if n_alt:
                a_rank[:, :, sl] = rank_a.cpu().numpy()
                a_prob[:, :, sl] = torch.exp(z_a - m).div_(s.unsqueeze(-1)).permute(2, 0, 1).cpu().numpy()
            if len(nxt):
                lp = z_next[..., 0] - m[:, : len(nxt), 0] - log_s[:, : len(nxt)]
                next_loss[:, c0 - start: c0 - start + len(nxt)] = (-lp).cpu().numpy()
            if progress is not None:
                progress((c1 - start) / P, f"decoded positions {start}–{c1 - 1} of {T}")

    alt = alt_ids.cpu().numpy().astype(np.int64)
    table = decode_table(tokenizer, np.concatenate([top_ids.ravel(), t_ids, alt]))
    top_tokens = [[[table[int(i)] for i in cell] for cell in row] for row in top_ids]
    out_top1 = trace.output_top1[start:stop].tolist()
    return LogitLensResult(
        model=trace.model_name,
        n_layers=trace.n_layers,
        tokens=list(trace.tokens),
        token_ids=list(trace.token_ids),
        layers=trace.layer_labels,
        positions=list(range(start, stop)),
        top_ids=top_ids,
        top_tokens=top_tokens,
        top_probs=top_probs,
        entropy=entropy,
        kl_to_final=kl,
        target_ids=t_ids,
        target_tokens=[table[int(i)] for i in t_ids],
        target_rank=t_rank,
        target_prob=t_prob,
        next_token_loss=next_loss,
        final_prediction=[decode_token(tokenizer, i) for i in out_top1],
        exit_layer=saturation_rows(top_ids[:, :, 0], np.asarray(out_top1, np.int64)),
        lens=fitted.kind if fitted is not None else "logit",
        target_note=note,
        options=options.key(),
        alternative_ids=alt,
        alternative_tokens=[table[int(i)] for i in alt],
        alternative_rank=a_rank,
        alternative_prob=a_prob,
    )


def _alternatives(trace: Trace, adapter, position: int, n: int, fitted) -> torch.Tensor:
    """The final layer's top-``n`` token ids at ``position`` (the targets a page may switch to), as the lens reads
    that row: one row's read-out, before the chunks (each chunk's ranks need them)."""
    W, b = adapter.unembed.weight, adapter.unembed.bias
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=W.device)
    h = trace.residual[:, position:position + 1, :].to(W.device, W.dtype)  # every row: a fitted lens maps by row
    x = adapter.normed((h if fitted is None else fitted.apply(h))[-1:])
    z = x.reshape(1, -1) @ W.T
    if b is not None:
        z = z + b
    if adapter.softcap:
        z = torch.tanh(z / adapter.softcap) * adapter.softcap
    return z[0].topk(min(n, z.shape[-1])).indices

