"""Which MLP neurons write a token, and one neuron's page (its vocabulary, its activation, its top contexts).

A neuron's output vector is its row of the down projection: what the MLP adds to the residual stream per unit of
its activation. Its direct effect on the logits goes through the final norm, whose division by the stream's RMS (or
standard deviation) is one number per position; leaving it out, the map is linear: centring (LayerNorm only), the
norm's weight γ, the unembedding (``Adapter.linearised_final_norm``). So ``score = (γ ⊙ W_U[t]) · w_out`` (for a
LayerNorm model ``(γ ⊙ W_U[t]) · (w_out − mean(w_out))``), as in Geva et al. 2022 ("promote and suppress") and
LM-Debugger, for every neuron of every layer.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..engine.base import Read
from ..errors import LensError
from ..model.tokens import token_strings
from ..options import Progress
from .options import CONTEXT_AFTER, CONTEXT_BEFORE, MAX_CONTEXTS
from .results import NeuronContexts, NeuronPage, NeuronScores

READ_BYTES = 128 * 2**20  # what one corpus pass may hold of every layer's neurons (sets the chunks per pass)


def check_weights(adapter) -> None:
    adapter.require_lm_head("neurons are scored against the unembedding")
    if not adapter.down_proj:
        raise LensError(f"{adapter.model_type} has no separate MLP neurons here: {adapter.routes_unavailable()}")


def writes(adapter, layer: int) -> torch.Tensor:
    """[N, d] block ``layer``'s (0-based) neurons' output vectors through the final norm's centring and weight."""
    return adapter.linearised_final_norm(adapter.down_projection(layer))


def _vocab(adapter, vecs: torch.Tensor, tokenizer, k: int):
    """Top and bottom ``k`` tokens (and logits) of each row of ``vecs`` [n, d] (already through γ) by W_U."""
    W = adapter.unembed.weight.detach().float()
    logits = vecs @ W.T
    k = min(k, logits.shape[-1])
    hi, lo = logits.topk(k, -1), logits.topk(k, -1, largest=False)
    top = [token_strings(tokenizer, row) for row in hi.indices.tolist()]
    bottom = [token_strings(tokenizer, row) for row in lo.indices.tolist()]
    return top, hi.values.numpy(), bottom, lo.values.numpy()


def _listed(found, N: int) -> list[dict]:
    return [{"layer": i // N + 1, "neuron": i % N, "score": float(v)}
            for i, v in zip(found.indices.tolist(), found.values.tolist())]


@torch.no_grad()
def neuron_scores(adapter, tokenizer, token_id: int, token: str, top: int, top_k: int, model_name: str,
                  progress: Progress | None = None) -> NeuronScores:
    """Every neuron's score for ``token_id``; the ``top`` highest and lowest with their own top tokens."""
    check_weights(adapter)
    u = adapter.unembed.weight.detach().float()[token_id]
    L = adapter.n_layers
    scores = []
    for l in range(L):
        scores.append(writes(adapter, l) @ u)
        if progress is not None:
            progress((l + 1) / L, f"scoring block {l + 1}'s neurons")
    S = torch.stack(scores)  # [L, N]
    N = S.shape[1]
    top = min(top, S.numel())
    hi, lo = S.flatten().topk(top), S.flatten().topk(top, largest=False)
    picks = torch.cat([hi.indices, lo.indices])
    vecs = torch.stack([writes(adapter, int(i) // N)[int(i) % N] for i in picks.tolist()])
    tt, tv, bt, bv = _vocab(adapter, vecs, tokenizer, top_k)
    note = ("LayerNorm: each output vector is centred before γ, as the final norm centres the stream"
            if isinstance(adapter.final_norm, torch.nn.LayerNorm) else "")
    return NeuronScores(
        model=model_name, token=token, token_id=int(token_id), n_layers=L, n_neurons=N,
        neurons=_listed(hi, N), suppressors=_listed(lo, N),
        layer_max=S.max(1).values.numpy(), layer_min=S.min(1).values.numpy(),
        top_tokens=tt, top_values=tv, bottom_tokens=bt, bottom_values=bv, note=note)


@torch.no_grad()
def neuron_contexts(engine, chunks: Sequence[Sequence[int]], corpus: str, digest: str, model_name: str,
                    k: int = MAX_CONTEXTS, progress: Progress | None = None) -> NeuronContexts:
    """Every neuron's ``k`` highest and ``k`` lowest activations over ``chunks`` (consecutive slices of one token stream), in one
    pass reading every block's neurons; a running top-k keeps memory at [L, N, k] whatever the corpus's size."""
    a = engine.adapter
    L = a.n_layers
    kept = {True: None, False: None}  # highest, lowest: (values, where) [L, N, k]
    offsets = np.cumsum([0] + [len(c) for c in chunks])
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))  # equal lengths batch without padding
    done = 0
    i = 0
    per = max(1, READ_BYTES // (4 * L * max(len(c) for c in chunks) * a.down_projection(0).shape[0]))
    while i < len(order):
        group = [order[i]]
        while len(group) < per and i + len(group) < len(order) and \
                len(chunks[order[i + len(group)]]) == len(chunks[group[0]]):
            group.append(order[i + len(group)])
        i += len(group)
        S = len(chunks[group[0]])
        out = engine.run([list(chunks[g]) for g in group], read={f"mlp_act.{l + 1}": None for l in range(L)},
                         logits="none")
        acts = torch.stack([out.reads[f"mlp_act.{l + 1}"].float().reshape(len(group) * S, -1) for l in range(L)])
        pos = torch.cat([torch.arange(S) + int(offsets[g]) for g in group])  # [B·S] stream positions
        kk = min(k, acts.shape[1])
        for high in (True, False):
            v, idx = acts.topk(kk, 1, largest=high)  # [L, kk, N]
            v, w = v.transpose(1, 2), pos[idx].transpose(1, 2)  # [L, N, kk]
            if kept[high] is not None:  # merge with what was kept: still the k highest (lowest) so far
                v, w = torch.cat([kept[high][0], v], 2), torch.cat([kept[high][1], w], 2)
                keep = v.topk(min(k, v.shape[2]), 2, largest=high).indices
                v, w = v.gather(2, keep), w.gather(2, keep)
            kept[high] = (v, w)
        done += len(group)
        if progress is not None:
            progress(done / len(chunks), f"reading every neuron over the corpus: chunk {done} of {len(chunks)}")
    return NeuronContexts(model=model_name, corpus=corpus, corpus_digest=digest, n_tokens=int(offsets[-1]),
                          values=kept[True][0].numpy().astype(np.float32), where=kept[True][1].numpy().astype(np.int64),
                          low_values=kept[False][0].numpy().astype(np.float32),
                          low_where=kept[False][1].numpy().astype(np.int64))


@torch.no_grad()
def activation_on(engine, ids: Sequence[int], layer: int, neuron: int) -> np.ndarray:
    """[T] neuron ``neuron`` of block ``layer`` (1-based) at every position of ``ids``."""
    site = f"mlp_act.{layer}"
    out = engine.run([list(ids)], read={site: Read()}, logits="none")
    return out.reads[site][0, :, neuron].float().numpy()


@torch.no_grad()
def neuron_page(engine, tokenizer, ids: Sequence[int], layer: int, neuron: int, top_k: int, n_contexts: int,
                contexts: NeuronContexts, stream: Sequence[int], model_name: str) -> NeuronPage:
    a = engine.adapter
    check_weights(a)
    vec = writes(a, layer - 1)[neuron][None]
    tt, tv, bt, bv = _vocab(a, vec, tokenizer, top_k)

    def around(where) -> tuple[list, list[int]]:
        shown, peaks = [], []
        for p in where[layer - 1, neuron, :n_contexts].tolist():
            lo, hi = max(0, p - CONTEXT_BEFORE), min(len(stream), p + CONTEXT_AFTER + 1)
            shown.append(token_strings(tokenizer, list(stream[lo:hi])))
            peaks.append(p - lo)
        return shown, peaks

    shown, peaks = around(contexts.where)
    low, low_peaks = around(contexts.low_where)
    return NeuronPage(
        model=model_name, layer=layer, neuron=neuron, top_tokens=tt[0], top_values=tv[0], bottom_tokens=bt[0],
        bottom_values=bv[0], prompt_tokens=token_strings(tokenizer, list(ids)),
        activation=activation_on(engine, ids, layer, neuron), contexts=shown, context_peak=peaks,
        context_values=np.asarray(contexts.values[layer - 1, neuron, :n_contexts], dtype=np.float32),
        low_contexts=low, low_context_peak=low_peaks,
        low_context_values=np.asarray(contexts.low_values[layer - 1, neuron, :n_contexts], dtype=np.float32),
        corpus=contexts.corpus, corpus_tokens=contexts.n_tokens)
