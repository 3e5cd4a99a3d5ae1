"""Attention knockout (Geva et al. 2023, "Dissecting recall of factual associations"): the last position may not
read a group of tokens, in every head, in a window of layers; how much of the target's probability is left.

An edge is blocked in the attention mask (site ``attn_mask.l``), before the softmax, so the position's attention is
shared among the tokens it may still read, as in the paper. Each window is one element of a batch: a group's windows
at every layer run together.
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.checks import check_position
from ..engine.base import SiteCall
from ..errors import LensError
from ..model.tokens import decode_token, visible
from .options import DEFAULT_WINDOW, MAX_EACH_TOKEN
from .results import KnockoutResult

BATCH = 32  # windows per forward pass


def window_of(layer: int, window: int, align: str, n_layers: int) -> tuple[int, int]:
    """The first and last block (1-based) of the window at ``layer``, cut to the model's blocks."""
    if align == "start":
        return layer, min(n_layers, layer + window - 1)
    return max(1, layer - (window - 1) // 2), min(n_layers, layer + window // 2)


def groups(tokens: list[str], sources: tuple[int, ...] | None) -> list[tuple[str, list[int]]]:
    """The rows: each token on its own (no sources given), or the sources, the last token and the other tokens."""
    T = len(tokens)
    last = T - 1
    if sources is None:  # the last MAX_EACH_TOKEN tokens one by one, any earlier ones together
        first = max(0, T - MAX_EACH_TOKEN)
        earlier = [(f"tokens 0–{first - 1}", list(range(first)))] if first else []
        return earlier + [(f"{p}·{visible(tokens[p])}", [p]) for p in range(first, T)]
    chosen = sorted({check_position(p, T) for p in sources})
    label = "sources " + " ".join(f"{p}·{visible(tokens[p])}" for p in chosen)
    out = [(label if len(label) <= 40 else label[:39] + "…", chosen)]
    if chosen != [last]:
        out.append((f"last token {last}·{visible(tokens[last])}", [last]))
    other = [p for p in range(last) if p not in chosen]
    if other:
        out.append(("other tokens", other))
    return out


def block_edges(blocked: list[list[int]], query: int):
    """An ``attn_mask`` edit: batch element b may not read the positions ``blocked[b]`` from ``query``."""
    def edit(allowed: torch.Tensor, call: SiteCall) -> torch.Tensor:
        m = allowed.expand(len(blocked), *allowed.shape[1:]).clone()
        for b, keys in enumerate(blocked):
            if keys:
                m[b, :, query, keys] = False
        return m
    return edit


def knocked_probs(engine, ids: list[int], runs: list[tuple[list[int], tuple[int, int]]], target_id: int,
                  progress=None, recording=None) -> np.ndarray:
    """The target's probability at the last position for each (positions blocked, (first, last) block) run. With a
    ``recording`` of the plain run (an engine that resumes), each batch starts at the first block it edits."""
    L, query = engine.adapter.n_layers, len(ids) - 1
    out = np.empty(len(runs))
    order = sorted(range(len(runs)), key=lambda i: runs[i][1][0] if runs[i][0] else L + 1)  # by first block edited
    for start in range(0, len(order), BATCH):
        chunk = [runs[i] for i in order[start:start + BATCH]]
        write = {}
        for l in range(1, L + 1):
            blocked = [keys if lo <= l <= hi else [] for keys, (lo, hi) in chunk]
            if any(blocked):  # a block where no run blocks anything runs as it is
                write[f"attn_mask.{l}"] = block_edges(blocked, query)
        if recording is not None:
            z = (engine.resume(recording, len(chunk), write) if write
                 else recording.last_logits[None].expand(len(chunk), -1))
        else:
            z = engine.run([ids] * len(chunk), write=write, logits="last").logits
        out[order[start:start + BATCH]] = torch.softmax(z.double(), -1)[:, target_id].cpu().numpy()
        if progress is not None:
            done = min(len(runs), start + BATCH)
            progress(done / len(runs), f"knocked out {done} of {len(runs)} windows")
    return out


@torch.no_grad()
def knockout(engine, ids: list[int], tokenizer, tokens: list[str], target_id: int | None,
             sources: tuple[int, ...] | None, window: int | None, align: str = "centre", model_name: str = "",
             progress=None) -> KnockoutResult:
    a = engine.adapter
    a.require_lm_head("attention knockout does not apply")
    if not a.is_causal:
        raise LensError(f"{a.model_type} is not a causal language model: knocking out what its last position reads "
                        "does not apply")
    T, L = len(ids), a.n_layers
    if T < 2:
        raise LensError("attention knockout needs a prompt of at least two tokens")
    rows = groups(tokens, sources)
    k = min(window or DEFAULT_WINDOW, L)
    spans = [window_of(l, k, align, L) for l in range(1, L + 1)]
    recording = engine.record(ids) if engine.capabilities.resumes else None
    base = recording.last_logits if recording is not None else engine.run(ids, logits="last").logits[0]
    if target_id is None:
        target_id = int(base.argmax())
    p0 = float(torch.softmax(base.double(), -1)[target_id])
    runs = [(keys, span) for _, keys in rows for span in spans]
    prob = knocked_probs(engine, ids, runs, target_id, progress, recording).reshape(len(rows), L)
    return KnockoutResult(
        model=model_name, tokens=list(tokens), target=decode_token(tokenizer, target_id), target_id=int(target_id),
        layers=[str(l) for l in range(1, L + 1)], windows=[list(s) for s in spans], window=k, align=align,
        rows=[label for label, _ in rows], row_positions=[keys for _, keys in rows],
        sources=None if sources is None else sorted({check_position(p, T) for p in sources}), base_prob=p0,
        prob=prob, change=(prob - p0) / max(p0, 1e-30))
