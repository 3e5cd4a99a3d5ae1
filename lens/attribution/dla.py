"""Direct logit attribution: each head's, attention block's, MLP's and the embeddings' direct part of the answer.

The final norm divides the last residual stream by its RMS (or standard deviation); with that scale frozen at the
run's value, norm and unembedding are linear, so the logits are a sum of what each part of the residual stream
puts through them, plus the biases: exactly, for RMSNorm and LayerNorm (whose centring is linear) alike. The scale
is read from the run (the final norm's own output against its linear part), not recomputed from a formula.
"""
from __future__ import annotations

import numpy as np
import torch

from ..engine.base import Read
from ..errors import LensError
from ..model.adapters import Adapter, linear_in_out
from ..model.tokens import decode_token
from .results import DLAResult


def check_additive(adapter: Adapter, what: str) -> None:
    """Refuse models whose blocks do not add their writes to one residual stream, or that predict nothing."""
    adapter.require_lm_head(f"{what} does not apply")
    if adapter.post_ln:
        raise LensError(f"{adapter.model_type} normalises after each sub-block (post-LN): its attention and MLP "
                        f"outputs are not additive writes to a residual stream, so {what} does not apply")


def heads_separable(adapter: Adapter) -> str:
    """"" where each head's write is its slice of the output projection's input times its block of W_O; else why not."""
    if not adapter.out_proj:
        return f"{adapter.model_type} has no separate head outputs here: {adapter.routes_unavailable()}"
    if adapter.spec.attn_write:
        return (f"{adapter.model_type} normalises the attention output before adding it, so the heads' writes do not "
                "add up to what reaches the residual stream")
    return ""


class FrozenReadout:
    """The final norm with its scale frozen at each position's value, then the unembedding: a linear map."""

    def __init__(self, adapter: Adapter, final: torch.Tensor, normed: torch.Tensor | None):
        """``final`` [P, d]: the last residual stream; ``normed`` [P, d]: the final norm's output there (None
        without a final norm)."""
        self.adapter = adapter
        norm = adapter.final_norm
        b = getattr(norm, "bias", None) if norm is not None else None
        self.norm_bias = None if b is None else b.detach().double()
        if norm is None:
            self.scale = torch.ones(final.shape[0], dtype=torch.float64)
        else:
            lin = self.linear(final)
            y = normed.double() - (0 if self.norm_bias is None else self.norm_bias)
            self.scale = (y * lin).sum(-1) / (lin * lin).sum(-1).clamp_min(1e-30)
            # The norm is scale × its linear part (+ bias), or this reading of it is wrong: say so, never guess.
            err = ((self.scale[:, None] * lin - y).norm(dim=-1) / y.norm(dim=-1).clamp_min(1e-30)).max()
            if float(err) > 1e-3:
                raise LensError(f"{adapter.model_type}'s final norm is not a scale times its weight here "
                                f"(off by {float(err):.1e}): its logits do not split into parts")
        W, bias = adapter.unembed.weight.detach(), adapter.unembed.bias
        self.unembed = W  # as the model keeps it: a float64 copy of a whole vocabulary is slow to make and to use
        self.unembed_bias = None if bias is None else bias.detach().double()
        self.project = None
        if adapter.project_out is not None:
            Wp, bp = linear_in_out(adapter.project_out)
            self.project = (Wp.detach().double(), None if bp is None else bp.detach().double())

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm's linear part (LayerNorm's centring, the weight), float64."""
        return self.adapter.linearised_final_norm(x.float()).double() if self.adapter.final_norm is not None \
            else x.double()

    def directions(self, parts: torch.Tensor, at: torch.Tensor | int) -> torch.Tensor:
        """[n, d'] what ``parts`` [n, d] written at positions ``at`` (row indices of the scale) put into the
        unembedding's input."""
        x = self.scale[at].reshape(-1, 1) * self.linear(parts)
        return x @ self.project[0] if self.project is not None else x

    def logits(self, parts: torch.Tensor, at, ids: list[int] | None = None) -> torch.Tensor:
        """[n, len(ids)] the direct logits of ``parts`` for the tokens ``ids`` (float64: they are summed), no bias;
        without ``ids``, [n, V] over the whole vocabulary (float32: they are ranked)."""
        x = self.directions(parts, at)
        if ids is None:
            return x.to(self.unembed.dtype) @ self.unembed.T
        return x @ self.unembed[ids].double().T

    def bias_logits(self, ids: list[int]) -> torch.Tensor:
        """[len(ids)] what the biases alone put into the logits (the final norm's, the projection's, the
        unembedding's)."""
        d = self.unembed.shape[1]
        x = torch.zeros(d if self.project is None else self.project[0].shape[0], dtype=torch.float64)
        if self.norm_bias is not None:
            x = x + self.norm_bias
        if self.project is not None:
            x = x @ self.project[0] + (0 if self.project[1] is None else self.project[1])
        z = self.unembed[ids].double() @ x
        return z + (0 if self.unembed_bias is None else self.unembed_bias[ids])


def metric_weights(target_id: int, foil_id: int | None) -> tuple[list[int], torch.Tensor]:
    """The token columns the metric reads and their weights (+1 target, −1 foil)."""
    if foil_id is None:
        return [target_id], torch.tensor([1.0], dtype=torch.float64)
    return [target_id, foil_id], torch.tensor([1.0, -1.0], dtype=torch.float64)


def dla_reads(n_layers: int, position: int, heads: bool, final_norm: bool = True) -> dict[str, Read]:
    """What one run keeps for DLA at ``position``: every write there, the last residual stream, the final norm's
    output, the logits and each head's attention row."""
    at = [position]
    read = {"resid_pre.1": Read(positions=at), f"resid_post.{n_layers}": Read(positions=at),
            "logits": Read(positions=at)}
    if final_norm:
        read["final_norm"] = Read(positions=at)
    for l in range(1, n_layers + 1):
        read[f"attn_out.{l}"] = Read(positions=at)
        read[f"mlp_out.{l}"] = Read(positions=at)
        read[f"attn_pattern.{l}"] = Read(map=lambda w, p=position: w[:, :, p, :])  # [B, H, T]: its row only
        if heads:
            read[f"head_out.{l}"] = Read(positions=at)
    return read


def _top(z: torch.Tensor, k: int, tokenizer, largest: bool) -> tuple[list, np.ndarray]:
    v, i = z.topk(min(k, z.shape[-1]), dim=-1, largest=largest)
    return ([[decode_token(tokenizer, int(t)) for t in row] for row in i.tolist()],
            v.float().numpy())


@torch.no_grad()
def dla(engine, ids: list[int], tokenizer, tokens: list[str], position: int, target_id: int | None,
        foil_id: int | None, top_k: int = 5, model_name: str = "") -> DLAResult:
    """One run of ``ids`` (eager attention, for the heads' patterns) and every part of the metric at ``position``
    (0-based). ``target_id`` None: the model's top-1 there."""
    a: Adapter = engine.adapter
    check_additive(a, "direct logit attribution")
    L = a.n_layers
    why_not_heads = heads_separable(a)
    out = engine.run(ids, read=dla_reads(L, position, not why_not_heads, a.final_norm is not None), logits="none")
    r = {k: v[0] for k, v in out.reads.items()}  # batch of one dropped
    model_logits = r["logits"][0]
    if target_id is None:
        target_id = int(model_logits.argmax())
    final = r[f"resid_post.{L}"]  # [1, d]
    ro = FrozenReadout(a, final, r.get("final_norm"))  # the final norm's output as the model computed it
    cols, w = metric_weights(target_id, foil_id)

    def part(x: torch.Tensor) -> torch.Tensor:  # [n, d] -> [n] their parts of the metric
        return ro.logits(x, 0, cols) @ w

    embed = float(part(r["resid_pre.1"]))
    attn = np.array([float(part(r[f"attn_out.{l}"])) for l in range(1, L + 1)])
    mlp = np.array([float(part(r[f"mlp_out.{l}"])) for l in range(1, L + 1)])
    bias = float(ro.bias_logits(cols) @ w)
    H = a.n_heads
    heads = np.zeros((L, 0))
    attn_bias = np.zeros(L)
    k = top_k
    top_t, bot_t = [], []
    top_v, bot_v = np.zeros((L, 0, k), np.float32), np.zeros((L, 0, k), np.float32)
    if not why_not_heads:
        heads, top_v, bot_v = np.zeros((L, H)), np.zeros((L, H, k), np.float32), np.zeros((L, H, k), np.float32)
        for l in range(1, L + 1):
            W_O, b_O = a.output_projection(l - 1)  # [H, hd, d], [d]
            z = r[f"head_out.{l}"][0].reshape(H, a.head_dim).double()
            writes = torch.einsum("hk,hkd->hd", z, W_O.double())  # [H, d] each head's write to the stream
            heads[l - 1] = (ro.logits(writes, 0, cols) @ w).numpy()
            if b_O is not None:
                attn_bias[l - 1] = float(part(b_O[None].double()))
            full = ro.logits(writes, 0)  # [H, V] each head's direct logits over the vocabulary
            t, top_v[l - 1] = _top(full, k, tokenizer, True)
            b, bot_v[l - 1] = _top(full, k, tokenizer, False)
            top_t.append(t)
            bot_t.append(b)
    notes = []
    if why_not_heads:
        notes.append(f"no head-by-head split: {why_not_heads}")
    if a.softcap:
        # tanh(z / c) · c is not a sum of parts: the parts add up to the logits before it.
        logits_used = ro.logits(final, 0, cols) + ro.bias_logits(cols)
        logit_diff = float(logits_used[0] @ w)
        notes.append(f"the model soft-caps its logits at {a.softcap:g}: the parts add up to the logits before "
                     "the cap")
    else:
        logit_diff = float(model_logits[cols].double() @ w)
    total = embed + float(attn.sum()) + float(mlp.sum()) + bias
    target = decode_token(tokenizer, target_id)
    foil = None if foil_id is None else decode_token(tokenizer, foil_id)
    T = len(ids)
    head_attention = np.stack([r[f"attn_pattern.{l}"].numpy() for l in range(1, L + 1)]).astype(np.float32) \
        if L else np.zeros((0, H, T), np.float32)
    return DLAResult(
        model=model_name, tokens=list(tokens), position=int(position), target=target, foil=foil,
        target_id=int(target_id), foil_id=None if foil_id is None else int(foil_id),
        metric_name="logit(target)" if foil_id is None else "logit(target) − logit(foil)",
        layers=[str(l) for l in range(1, L + 1)], heads=heads, attn=attn, attn_bias=attn_bias, mlp=mlp,
        embed=embed, bias=bias, total=total, logit_diff=logit_diff, scale=float(ro.scale[0]),
        head_attention=head_attention, head_top_tokens=top_t, head_top_values=top_v,
        head_bottom_tokens=bot_t, head_bottom_values=bot_v, note="; ".join(notes))
