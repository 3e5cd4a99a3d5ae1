"""The sub-layer lens (Geva et al. 2022, "promote and suppress"): each block's attention write and MLP write
decoded on their own, as the final norm and the unembedding read them at the end.

A write is put through the final norm's linear part (LayerNorm's centring, its weight) times the scale the final
norm gives the last residual stream at that position (frozen at the run's value), then the unembedding, without
biases: the direct logits it adds to the model's own output there. Its top tokens do not depend on that scale
(one positive number per position); the target's logit is, at the last position, the write's DLA part.
"""
from __future__ import annotations

import numpy as np
import torch

from ..engine.base import Read
from ..model.adapters import Adapter
from ..model.tokens import decode_token
from .dla import FrozenReadout, check_additive
from .options import SUBLAYER_POSITIONS
from .results import SublayerLensResult


def sublayer_reads(n_layers: int, positions: list[int], final_norm: bool) -> dict[str, Read]:
    read = {f"resid_post.{n_layers}": Read(positions=positions), "logits": Read(positions=[positions[-1]])}
    if final_norm:
        read["final_norm"] = Read(positions=positions)
    for l in range(1, n_layers + 1):
        read[f"attn_out.{l}"] = Read(positions=positions)
        read[f"mlp_out.{l}"] = Read(positions=positions)
    return read


def _decode(z: torch.Tensor, k: int, tokenizer, largest: bool) -> tuple[list, np.ndarray]:
    v, i = z.topk(k, dim=-1, largest=largest)  # [P, k]
    return [[decode_token(tokenizer, int(t)) for t in row] for row in i.tolist()], v.float().numpy()


@torch.no_grad()
def sublayer_lens(engine, ids: list[int], tokenizer, tokens: list[str], target_id: int | None, top_k: int = 3,
                  model_name: str = "") -> SublayerLensResult:
    """Every attention and MLP write of ``ids``'s run at its last positions (at most SUBLAYER_POSITIONS), decoded on
    its own; ``target_id`` None: the model's top-1 at the last position."""
    a: Adapter = engine.adapter
    check_additive(a, "the sub-layer lens")
    L, T = a.n_layers, len(ids)
    positions = list(range(max(0, T - SUBLAYER_POSITIONS), T))
    out = engine.run(ids, read=sublayer_reads(L, positions, a.final_norm is not None), logits="none")
    r = {k: v[0] for k, v in out.reads.items()}
    if target_id is None:
        target_id = int(r["logits"][0].argmax())
    ro = FrozenReadout(a, r[f"resid_post.{L}"], r.get("final_norm"))
    P, k = len(positions), top_k
    at = torch.arange(P)
    got = {}
    for block in ("attn", "mlp"):
        target = np.zeros((L, P))
        top_t, bot_t = [], []
        top_v, bot_v = np.zeros((L, P, k), np.float32), np.zeros((L, P, k), np.float32)
        for l in range(1, L + 1):
            x = r[f"{block}_out.{l}"]
            z = ro.logits(x, at)  # [P, V], float32: ranked
            target[l - 1] = ro.logits(x, at, [target_id])[:, 0].numpy()  # float64
            t, top_v[l - 1] = _decode(z, k, tokenizer, True)
            b, bot_v[l - 1] = _decode(z, k, tokenizer, False)
            top_t.append(t)
            bot_t.append(b)
        got[block] = (target, top_t, top_v, bot_t, bot_v)
    note = (f"the last {P} of the prompt's {T} tokens" if P < T else "")
    return SublayerLensResult(
        model=model_name, tokens=list(tokens), positions=positions, layers=[str(l) for l in range(1, L + 1)],
        target=decode_token(tokenizer, target_id), target_id=int(target_id),
        attn_target=got["attn"][0], mlp_target=got["mlp"][0],
        attn_top_tokens=got["attn"][1], attn_top_values=got["attn"][2], attn_bottom_tokens=got["attn"][3],
        attn_bottom_values=got["attn"][4], mlp_top_tokens=got["mlp"][1], mlp_top_values=got["mlp"][2],
        mlp_bottom_tokens=got["mlp"][3], mlp_bottom_values=got["mlp"][4], note=note)
