"""What attention heads do, read from their weights alone: OV copying through the vocabulary, and composition.

Every matrix acts on row vectors (``x @ W``). A head reads the normed stream: the input norm's weight γ (and, for
LayerNorm, the centring ``P = I − 11ᵀ/d``) is folded into its query, key and value matrices, ``Ŵ = P·diag(γ)·W``;
the norm's division is one number per position and leaves directions alone. Biases and rotary positions are left
out (``W_QK`` is the score between a query and a key at the same rotary angle). With grouped-query attention each
query head uses its group's key and value matrices (repeated per group).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import LensError
from ..model.adapters import linear_in_out
from ..model.tokens import token_strings
from ..options import Progress
from .results import HeadWeights


def _child(block: nn.Module, path: str) -> nn.Module | None:
    obj = block
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _fold_input_norm(adapter, layer: int, W: torch.Tensor) -> torch.Tensor:
    """``P·diag(γ)·W`` for the head's input norm of block ``layer`` (0-based); W [d, m]."""
    norm = adapter.attn_norm[layer]
    w = getattr(norm, "weight", None) if norm is not None else None
    if w is not None:
        W = (adapter.spec.norm_offset + w.detach().float())[:, None] * W
    if isinstance(norm, nn.LayerNorm):
        W = W - W.mean(0, keepdim=True)  # P·W: P is symmetric, centring each column
    return W


def qkv(adapter, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block ``layer``'s (0-based) W_Q, W_K, W_V per query head, each [H, d, head_dim], input norm folded in
    (key and value repeated per group under grouped-query attention)."""
    H, KV, hd = adapter.n_heads, adapter.n_kv_heads, adapter.head_dim
    if not adapter.value_proj:
        raise LensError(f"{adapter.model_type}: the heads' weights are not read here: {adapter.routes_unavailable()}")
    block, spec = adapter.blocks[layer], adapter.spec
    if spec.value_fused:  # one projection: [q (H·hd) | k (KV·hd) | v (KV·hd)]
        W, _ = linear_in_out(adapter.value_proj[layer])
        W = W.detach().float()
        q, k, v = W[:, :H * hd], W[:, H * hd:(H + KV) * hd], W[:, (H + KV) * hd:(H + 2 * KV) * hd]
    else:  # the query and key projections sit beside the value projection, named alike
        mods = []
        for name in ("q", "k"):
            path = spec.value_proj.rsplit(".", 1)
            mod = _child(block, ".".join(path[:-1] + [name + path[-1][1:]]))
            if mod is None:
                raise LensError(f"{adapter.model_type}: no {name} projection beside `{spec.value_proj}`")
            mods.append(linear_in_out(mod)[0].detach().float())
        q, k = mods
        v = linear_in_out(adapter.value_proj[layer])[0].detach().float()
    q, k, v = (_fold_input_norm(adapter, layer, m) for m in (q, k, v))
    d = q.shape[0]
    per = lambda m, n: m.reshape(d, n, hd).permute(1, 0, 2)  # [n, d, hd]
    group = adapter.kv_group
    return (per(q, H), per(k, KV).repeat_interleave(group, 0), per(v, KV).repeat_interleave(group, 0))


def _r(m: torch.Tensor) -> torch.Tensor:
    """R of m = Q·R (m [n, d, hd] → [n, hd, hd]): ‖X·mᵀ‖ = ‖X·Rᵀ‖ for any X, since Q's columns are orthonormal."""
    return torch.linalg.qr(m, mode="r").R


def composition_scores(adapter, kind: str, progress: Progress | None = None) -> np.ndarray:
    """[L·H, L·H] composition of head A (row) into head B (column) of a later layer, Elhage et al. 2021:
    ``‖W_OV^A·W_QK^B‖/(‖W_OV^A‖‖W_QK^B‖)`` (Q), ``‖W_OV^A·W_QK^Bᵀ‖/…`` (K), ``‖W_OV^A·W_OV^B‖/(‖W_OV^A‖‖W_OV^B‖)``
    (V), Frobenius norms, with ``W_OV = W_V·W_O`` and ``W_QK = W_Q·W_Kᵀ`` (both d × d).

    Each d × d product is low-rank: with ``W_V = Q_V·R_V``, ``‖W_V·W_O·X‖ = ‖R_V·W_O·X‖``, and likewise on the
    reading side, so every pair's norm is that of one head_dim × head_dim block of one matrix product."""
    L, H = adapter.n_layers, adapter.n_heads
    left, right = [], []  # [H, hd, d] writers, [H, d, hd] readers
    for l in range(L):
        q, k, v = qkv(adapter, l)
        O, _ = adapter.output_projection(l)  # [H, hd, d]
        left.append(_r(v) @ O)  # W_V·W_O = Q_V·(R_V·W_O)
        if kind == "q":  # x·W_Q·W_Kᵀ: ‖X·W_Q·W_Kᵀ‖ = ‖X·W_Q·R_Kᵀ‖
            right.append(q @ _r(k).transpose(1, 2))
        elif kind == "k":  # the key side reads A: ‖W_OV^A·(W_Q·W_Kᵀ)ᵀ‖ = ‖W_OV^A·W_K·R_Qᵀ‖
            right.append(k @ _r(q).transpose(1, 2))
        else:  # x·W_V·W_O: ‖X·W_V·W_O‖ = ‖X·W_V·R_Oᵀ‖ with W_Oᵀ = Q_O·R_O
            right.append(v @ _r(O.transpose(1, 2)).transpose(1, 2))
        if progress is not None:
            progress(0.2 * (l + 1) / L, f"reading block {l + 1}'s heads")
    hd = left[0].shape[1]
    A = torch.cat(left)  # [L·H, hd, d]
    B = torch.cat(right)  # [L·H, d, hd]
    a_norm = A.flatten(1).norm(dim=1)
    b_norm = B.transpose(1, 2).flatten(1).norm(dim=1)
    out = torch.zeros(L * H, L * H)
    Bflat = B.permute(1, 0, 2).reshape(B.shape[1], -1)  # [d, L·H·hd]
    for l in range(L - 1):
        rows = A[l * H:(l + 1) * H].reshape(H * hd, -1)  # [H·hd, d]
        prod = rows @ Bflat[:, (l + 1) * H * hd:]  # [H·hd, later·hd]
        later = prod.shape[1] // hd
        block = prod.reshape(H, hd, later, hd).pow(2).sum((1, 3)).sqrt()  # [H, later]
        out[l * H:(l + 1) * H, (l + 1) * H:] = block / (a_norm[l * H:(l + 1) * H, None] * b_norm[None, (l + 1) * H:])
        if progress is not None:
            progress(0.2 + 0.8 * (l + 1) / (L - 1), f"composition of block {l + 1}'s heads into later heads")
    return out.numpy()


def layer_means(scores: np.ndarray, L: int, H: int) -> np.ndarray:
    """[L, L]: the mean score over the head pairs of each pair of layers (zero where B is not later)."""
    return scores.reshape(L, H, L, H).mean((1, 3))


def frequent_tokens(stream: Sequence[int], n: int) -> list[int]:
    """The ``n`` most frequent token ids of ``stream`` (ties: the earlier id), most frequent first."""
    counts = Counter(int(t) for t in stream)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def embeddings(model: nn.Module) -> torch.Tensor:
    emb = model.get_input_embeddings()
    if emb is None:
        raise LensError("the model has no input embeddings to read")
    return emb.weight.detach().float()


@torch.no_grad()
def copying(adapter, E: torch.Tensor, subset: Sequence[int], k: int):
    """Per head, over the subset S: M[s, s'] = OV logit of s' given input s; the z-score of each diagonal entry
    within its row. Returns (mean z [L, H], z [L, H, |S|])."""
    S = torch.tensor(list(subset))
    X = E[S]  # [S, d]
    G = adapter.linearised_final_norm(adapter.unembed.weight.detach().float()[S]).T  # [d, S]: γ_f ⊙ W_U[s']
    L, H = adapter.n_layers, adapter.n_heads
    z = torch.empty(L, H, len(S))
    for l in range(L):
        _, _, v = qkv(adapter, l)
        O, _ = adapter.output_projection(l)
        a = torch.einsum("sd,hde->hse", X, v)  # [H, S, hd]
        b = O @ G  # [H, hd, S]
        M = a @ b  # [H, S, S]
        diag = M.diagonal(dim1=1, dim2=2)
        z[l] = (diag - M.mean(2)) / M.std(2).clamp_min(1e-12)
    return z.mean(2).numpy(), z


@torch.no_grad()
def head_weights(loaded, stream: Sequence[int], kind: str, top_k: int, vocab: int, scores: np.ndarray,
                 progress: Progress | None = None) -> HeadWeights:
    a, tok = loaded.adapter, loaded.tokenizer
    a.require_lm_head("a head's OV circuit is read through the unembedding")
    subset = frequent_tokens(stream, vocab)
    if progress is not None:
        progress(0.0, "each head's OV circuit over the vocabulary subset")
    mean_z, z = copying(a, embeddings(loaded.model), subset, top_k)
    k = min(top_k, len(subset))
    hi, lo = z.topk(k, -1), z.topk(k, -1, largest=False)
    ids = torch.tensor(subset)
    names = lambda idx: [[token_strings(tok, ids[row].tolist()) for row in layer] for layer in idx.tolist()]
    L, H = a.n_layers, a.n_heads
    return HeadWeights(
        model=loaded.name, n_layers=L, n_heads=H, n_kv_heads=a.n_kv_heads,
        labels=[f"L{l + 1}H{h}" for l in range(L) for h in range(H)], vocab=len(subset),
        copy_score=mean_z, copy_tokens=names(hi.indices), copy_values=hi.values.numpy(),
        suppress_tokens=names(lo.indices), suppress_values=lo.values.numpy(),
        composition=kind, scores=scores.astype(np.float32), layer_scores=layer_means(scores, L, H).astype(np.float32),
        note="input norms' weights folded in; biases and rotary positions left out")
