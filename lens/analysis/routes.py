"""Information-flow routes (Ferrando & Voita, 2024), their per-head contributions,
and the drill-down into one node.

Attention block ``l`` at target position ``i``: the whole is
``y = h_{l−1,i} + attn_out_i`` and the parts are the residual ``h_{l−1,i}`` and each
(source ``j``, head ``h``) write ``z_{j,h} = A^h[i,j] · v_j^{g(h)} W_O^h`` where ``v`` are
the value vectors the model computed (``g(h)`` is the head's key/value group under
grouped-query attention) and ``W_O^h`` the head's slice of the output projection.
Σ_{j,h} z_{j,h} = attn_out_i − b_O exactly (RoPE touches only queries and keys).
Importance ``prox(z) = max(‖y‖₁ − ‖y − z‖₁, 0)``, normalised over all parts of the node.
The MLP block likewise with parts {mlp_out, residual}.

Never a [T, T, H, d] tensor: per layer the per-head value-outputs ``VO[j, h] =
v_j W_O^h`` are [T, H, d] once, and a part's distance ``‖y_i − A^h[i,j] VO[j,h]‖₁`` is
computed for chunks of (target, source, head) triples. The route graph is built top
down from the chosen prediction and only the targets reachable so far are computed.

Most of the work is one matmul: ``‖y‖₁ − ‖y − z‖₁ = sgn(y)·z − 2 Σ_k relu(sgn(y_k) z_k −
|y_k|)``, and the overshoot sum can be non-zero only at coordinates where
``|y_k| < A^h[i,j]·|VO[j,h,k]|``: per target a dense pass over its 64 smallest |y_k|
covers every part except the few large ones, which get a pass over all d. Exact.

Memory: the route data keeps every layer's attention, L·H·T² floats (SmolLM2, 128
tokens: 18 MB; 512 tokens: 280 MB), plus L·T·(3·d + KV·head_dim) for the residual
stream, block writes and values; hence ``ROUTE_MAX_TOKENS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..errors import LensError
from ..model.adapters import Adapter
from ..engine.trace import CaptureSpec, Trace
from ..model.tokens import decode_token
from ..options import DEFAULT_THRESHOLD, ROUTE_MAX_TOKENS, check_threshold
from ..results import BLOCKS, AttentionContributions, NodeDetail, RouteGraph
from ..options import check_layer
from .checks import check_position

SMALL_COORDS = 64
_CHUNK_ELEMENTS = 1 << 22  # ~16 MB of float32 per distance chunk


def check_supported(adapter: Adapter) -> None:
    reason = adapter.routes_unavailable()
    if reason is not None:
        raise LensError(f"information-flow routes do not apply to {adapter.model_type}: {reason}")


def check_length(n_tokens: int, n_layers: int, max_tokens: int = ROUTE_MAX_TOKENS) -> None:
    if n_tokens > max_tokens:
        raise LensError(
            f"the route graph keeps every layer's attention ({n_layers} layers × heads × T² floats); "
            f"it is limited to {max_tokens} tokens and this prompt has {n_tokens}"
        )


def route_capture(n_layers: int, layers: Sequence[int] | None = None, neurons: bool = False) -> CaptureSpec:
    """What a trace must keep for routes: the residual stream, the block writes, and the
    attention and values (and with ``neurons`` the MLP activations) of ``layers`` (default: all)."""
    want = tuple(range(n_layers)) if layers is None else tuple(sorted(set(int(l) for l in layers)))
    return CaptureSpec(residual=True, sublayers=True, attentions=want, values=want,
                       neurons=want if neurons else False)


# ---------------------------------------------------------------- the data routes read

@dataclass
class RouteData:
    """A route-ready view of one trace (see ``route_capture``); not cached on disk."""

    model: str
    tokens: list[str]
    token_ids: list[int]
    n_layers: int
    residual: torch.Tensor  # [L+1, T, d]
    attn_out: torch.Tensor  # [L, T, d]
    mlp_out: torch.Tensor  # [L, T, d]
    attentions: dict[int, torch.Tensor]  # block (0-based) -> [H, T, T]
    values: dict[int, torch.Tensor]  # block -> [T, KV, hd]
    neurons: dict[int, torch.Tensor]  # block -> [T, N] down-projection inputs (only where asked)
    output_top1: torch.Tensor  # [T]
    adapter: Adapter = field(repr=False, compare=False)

    @classmethod
    def from_trace(cls, trace: Trace) -> "RouteData":
        adapter = trace.adapter
        check_supported(adapter)
        if trace.residual is None or trace.attn_out is None or not trace.values:
            raise LensError("this trace was not captured for routes (see route_capture)")
        return cls(
            model=trace.model_name, tokens=list(trace.tokens), token_ids=list(trace.token_ids),
            n_layers=trace.n_layers, residual=trace.residual, attn_out=trace.attn_out, mlp_out=trace.mlp_out,
            attentions=trace.attentions, values=trace.values, neurons=trace.neurons,
            output_top1=trace.output_top1, adapter=adapter,
        )

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_heads(self) -> int:
        return self.adapter.n_heads

    def mid(self, l: int) -> torch.Tensor:
        """[T, d] residual after block ``l``'s attention (0-based block)."""
        return self.residual[l] + self.attn_out[l]

    def value_outputs(self, l: int, upto: int | None = None) -> torch.Tensor:
        """[S, H, d]: VO[j, h] = v_j^{g(h)} W_O^h for sources j < ``upto``."""
        v = self.values[l] if upto is None else self.values[l][:upto]
        v = v.repeat_interleave(self.adapter.kv_group, dim=1)  # [S, H, hd]: head h reads KV group h // group
        W, _ = self.adapter.output_projection(l)
        return torch.einsum("shk,hkd->shd", v, W)


# ---------------------------------------------------------------- importances

def _l1(x: torch.Tensor) -> torch.Tensor:
    return x.abs().sum(-1)


def attention_importance(data: RouteData, l: int, targets: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Normalised importances of attention block ``l`` (0-based) for ``targets``, exactly.

    Returns (residual [n], parts [n, S, H], S) where S = max target + 1 (the sources a
    causal decoder can read). Each target's residual plus parts sum to 1.
    """
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    A = data.attentions[l]  # [H, T, T]
    S = int(targets.max()) + 1  # every supported model is a causal decoder: sources j <= i
    VO = data.value_outputs(l, S)  # [S, H, d]
    H, d = VO.shape[1], VO.shape[2]
    n = len(targets)
    h_prev = data.residual[l][targets]  # [n, d]
    y = h_prev + data.attn_out[l][targets]
    ny = _l1(y)
    res = (ny - _l1(y - h_prev)).clamp_min(0)  # = ‖y‖ − ‖attn_out‖
    a = A[:, targets, :S].permute(1, 2, 0)  # [n, S, H]
    # prox(z) = ‖y‖₁ − ‖y − z‖₁ = sgn(y)·z − 2 Σ_k relu(sgn(y_k) z_k − |y_k|)
    sy = torch.where(y >= 0, 1.0, -1.0)  # (not sign(): at y_k = 0 the identity needs ±1)
    ay = y.abs()
    imp = torch.einsum("nd,shd->nsh", sy, VO) * a  # sgn(y)·z for every part: one matmul
    # The overshoot sum: a part z = a·VO can overshoot y only at coordinates where
    # |y_k| < a·max|VO|. Per target take the K smallest |y_k| (threshold delta = the K-th):
    # parts with a·max|VO| <= delta can overshoot only there (a dense [n, K, S, H] pass);
    # the few others get the full pass over d.
    K = min(SMALL_COORDS, d)
    small_v, small_i = ay.topk(K, -1, largest=False)  # [n, K]
    delta = small_v[:, -1]
    big = (a * VO.abs().amax(-1)) > delta.view(-1, 1, 1)  # [n, S, H]
    VOt = VO.permute(2, 0, 1)  # [d, S, H]
    corr = torch.zeros(n, S, H)
    order = targets.argsort()  # chunks of nearby targets read fewer sources
    step = max(1, _CHUNK_ELEMENTS // (K * S * H))
    for c in range(0, n, step):
        idx = order[c:c + step]
        Sc = int(targets[idx].max()) + 1
        z = VOt[small_i[idx], :Sc] * a[idx, :Sc].unsqueeze(1)  # [m, K, Sc, H]
        z.mul_(sy.gather(-1, small_i[idx])[..., None, None]).sub_(small_v[idx][..., None, None]).clamp_min_(0)
        corr[idx, :Sc] = z.sum(1)
    t_idx, s_idx, h_idx = big.nonzero(as_tuple=True)
    step = max(1, _CHUNK_ELEMENTS // d)
    for c in range(0, len(t_idx), step):
        t, s_, h = t_idx[c:c + step], s_idx[c:c + step], h_idx[c:c + step]
        z = a[t, s_, h].unsqueeze(-1) * VO[s_, h]  # [k, d]
        corr[t, s_, h] = (sy[t] * z - ay[t]).clamp_min(0).sum(-1)
    imp.sub_(corr.mul_(2)).clamp_min_(0)
    total = (res + imp.sum((1, 2))).clamp_min(1e-12)
    return res / total, imp / total.view(-1, 1, 1), S


def mlp_importance(data: RouteData, l: int, targets: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (residual [n], mlp [n]) importances of MLP block ``l`` (0-based)."""
    idx = slice(None) if targets is None else torch.as_tensor(list(targets), dtype=torch.long)
    mid = data.mid(l)[idx]
    out = data.mlp_out[l][idx]
    y = mid + out
    ny = _l1(y)
    r = (ny - _l1(out)).clamp_min(0)  # part: the residual, y − part = mlp_out
    m = (ny - _l1(mid)).clamp_min(0)  # part: mlp_out, y − part = the residual
    total = (r + m).clamp_min(1e-12)
    return r / total, m / total


# ---------------------------------------------------------------- results

def attention_contributions(data: RouteData, layer: int, position: int | None) -> AttentionContributions:
    """Attention block ``layer`` (1-based) at target ``position``, before any threshold."""
    layer = check_layer(layer, data.n_layers)
    p = check_position(position, data.n_tokens)
    res, parts, S = attention_importance(data, layer - 1, [p])
    T = data.n_tokens
    heads = np.zeros((data.n_heads, T), np.float32)
    heads[:, :S] = parts[0].T.numpy()
    return AttentionContributions(
        model=data.model, tokens=list(data.tokens), layer=layer, position=p, residual=float(res[0]),
        sources=heads.sum(0), heads=heads, n_kv_heads=data.adapter.n_kv_heads,
    )


def route_graph(data: RouteData, position: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                tokenizer=None) -> RouteGraph:
    threshold = check_threshold(threshold)
    p = check_position(position, data.n_tokens)
    L = data.n_layers
    rows: list[tuple[int, int, int, int, int, float]] = []  # layer, block, kind, src, dst, importance
    reach = {p}  # positions of the stream after block l that are reached
    computed = 0
    for l in range(L, 0, -1):
        tg = sorted(reach)
        r, m = mlp_importance(data, l - 1, tg)
        reach_attn = set()
        for i, ri, mi in zip(tg, r.tolist(), m.tolist()):
            if ri >= threshold:
                rows.append((l, 1, 0, i, i, ri))
            if mi >= threshold:
                rows.append((l, 1, 2, i, i, mi))
            if ri >= threshold or mi >= threshold:
                reach_attn.add(i)
        reach = set()
        if not reach_attn:
            break
        tg = sorted(reach_attn)
        res, parts, S = attention_importance(data, l - 1, tg)
        computed += len(tg)
        src = parts.sum(-1)  # [n, S]
        for n_i, i in enumerate(tg):
            if float(res[n_i]) >= threshold:
                rows.append((l, 0, 0, i, i, float(res[n_i])))
                reach.add(i)
            js = (src[n_i] >= threshold).nonzero().flatten().tolist()
            for j in js:
                rows.append((l, 0, 1, j, i, float(src[n_i, j])))
                reach.add(j)
        if not reach:
            break
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    imp = arr[:, 5].astype(np.float32)
    share = np.zeros_like(imp)
    node = {}
    for e, (l, b, _k, _s, t, w) in enumerate(rows):
        node.setdefault((l, b, t), []).append(e)
    for es in node.values():
        tot = float(sum(imp[e] for e in es))
        for e in es:
            share[e] = imp[e] / tot if tot > 0 else 0.0
    pred = ""
    if tokenizer is not None and len(data.output_top1):
        pred = decode_token(tokenizer, int(data.output_top1[p]))
    return RouteGraph(
        model=data.model, tokens=list(data.tokens), n_layers=L, n_heads=data.n_heads, position=p,
        threshold=threshold, prediction=pred,
        edge_layer=arr[:, 0].astype(np.int32), edge_block=arr[:, 1].astype(np.int8),
        edge_kind=arr[:, 2].astype(np.int8), edge_src=arr[:, 3].astype(np.int32),
        edge_dst=arr[:, 4].astype(np.int32), edge_importance=imp, edge_share=share,
        targets_computed=computed, options={"threshold": threshold},
    )


# ---------------------------------------------------------------- drill-down

@torch.no_grad()
def vocab_projection(adapter: Adapter, writes: torch.Tensor) -> torch.Tensor:
    """[n, V] logits of write directions [n, d] through the unembedding, with the final
    norm linearised to its elementwise scale (LayerNorm also centres)."""
    x = adapter.linearised_final_norm(writes)
    W = adapter.unembed.weight
    return x.to(W.dtype) @ W.T


def _top_tokens(tokenizer, logits: torch.Tensor, k: int) -> tuple[list[list[str]], list[list[float]],
                                                                    list[list[str]], list[list[float]]]:
    up_v, up_i = logits.topk(k, -1)
    dn_v, dn_i = (-logits).topk(k, -1)
    dec = lambda ids: [[decode_token(tokenizer, i) for i in row] for row in ids.tolist()]  # noqa: E731
    return dec(up_i), up_v.tolist(), dec(dn_i), (-dn_v).tolist()


@torch.no_grad()
def node_detail(data: RouteData, tokenizer, layer: int, position: int | None, block: str = "attn",
                top_k: int = 8, n_neurons: int = 10) -> NodeDetail:
    adapter = data.adapter
    adapter.require_lm_head("vocabulary projections do not apply", data.model)
    layer = check_layer(layer, data.n_layers)
    p = check_position(position, data.n_tokens)
    if block not in BLOCKS:
        raise LensError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
    l = layer - 1
    T = data.n_tokens
    H = data.n_heads
    group = adapter.kv_group
    items: list[dict] = []
    if block == "attn":
        if l not in data.values:
            raise LensError(f"no attention data was kept for layer {layer}")
        res, parts, S = attention_importance(data, l, [p])
        hs = np.zeros((H, T), np.float32)
        hs[:, :S] = parts[0].T.numpy()
        VO = data.value_outputs(l, S)  # [S, H, d]
        a = data.attentions[l][:, p, :S]  # [H, S]
        writes = torch.einsum("hs,shd->hd", a, VO)  # each head's write at p
        up, upv, dn, dnv = _top_tokens(tokenizer, vocab_projection(adapter, writes), top_k)
        for h in range(H):
            top_src = np.argsort(-hs[h])[:5]
            items.append({
                "head": h, "kv_group": h // group, "importance": float(hs[h].sum()),
                "write_norm": float(writes[h].norm()),
                "top_sources": [[int(j), float(hs[h, j])] for j in top_src if hs[h, j] > 0],
                "promoted": up[h], "promoted_logits": upv[h], "suppressed": dn[h], "suppressed_logits": dnv[h],
            })
        state = data.mid(l)[p]
        residual_imp, block_imp = float(res[0]), float(parts[0].sum())
        head_imp = hs.sum(1)
        note = (f"{H} heads share {adapter.n_kv_heads} key/value groups" if group > 1 else "")
    else:
        r, m = mlp_importance(data, l, [p])
        residual_imp, block_imp = float(r[0]), float(m[0])
        if l not in data.neurons:
            raise LensError(f"no MLP activations were kept for layer {layer}")
        act = data.neurons[l][p]  # [N]
        Wd = adapter.down_projection(l)  # [N, d]
        mid = data.mid(l)[p]
        y = mid + data.mlp_out[l][p]
        ny = _l1(y)
        neuron_writes = act.unsqueeze(-1) * Wd  # [N, d]
        imp = (ny - _l1(y - neuron_writes)).clamp_min(0)
        k = min(n_neurons, len(imp))
        top = imp.topk(k).indices
        up, upv, dn, dnv = _top_tokens(tokenizer, vocab_projection(adapter, neuron_writes[top]), top_k)
        for n_i, n in enumerate(top.tolist()):
            items.append({
                "neuron": n, "activation": float(act[n]), "importance": float(imp[n] / (ny + 1e-12)),
                "promoted": up[n_i], "promoted_logits": upv[n_i], "suppressed": dn[n_i], "suppressed_logits": dnv[n_i],
            })
        state = y
        head_imp = np.zeros(0, np.float32)
        hs = np.zeros((0, T), np.float32)
        note = ("neuron importance: ‖y‖₁ − ‖y − a_n·w_n‖₁ as a share of ‖y‖₁, y the stream after the MLP; "
                f"{len(act)} neurons in this MLP")
    probs = torch.softmax(adapter.readout(state.unsqueeze(0))[0].float(), -1)
    pv, pi = probs.topk(top_k)
    return NodeDetail(
        model=data.model, tokens=list(data.tokens), layer=layer, position=p, block=block,
        residual_importance=residual_imp, block_importance=block_imp, head_importance=head_imp.astype(np.float32),
        head_sources=hs, items=items, lens_tokens=[decode_token(tokenizer, i) for i in pi.tolist()],
        lens_probs=pv.numpy().astype(np.float32), note=note, options={"top_k": top_k},
    )
