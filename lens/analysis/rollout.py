"""Attention rollout and attention flow (Abnar & Zuidema, 2020).

Both read only the head-averaged attention of every layer, ``Ā_l`` ([T, T]),
which a trace keeps with ``CaptureSpec(attentions=True, attention_mean=True)`` (``Trace.head_means``;
a causal model's as lower triangles: 30 layers × 2048 tokens, 250 MB instead of 500 MB).

- Rollout: add the residual and renormalise the rows, ``Â_l = (Ā_l + I) / rowsum``;
  ``R_1 = Â_1`` and ``R_l = Â_l R_{l−1}``. Row ``i`` of ``R_l`` says how much of
  position ``i`` after block ``l`` comes from each input token. Only that row is
  needed: ``e_i Â_l Â_{l−1} … Â_1`` is a chain of vector–matrix products
  (L²·T² work for every layer's row, no T×T×T matmuls).
- Flow: a graph with a node per (layer, position) and an edge (l, i) → (l−1, j) of
  capacity ``Â_l[i, j]``; the value of input ``j`` is the max-flow from (l, i) to
  (0, j), and each row is normalised to sum to 1. That is T max-flow problems per
  layer on a graph of about L·T²/2 edges, so it is limited to short prompts
  (lens/analysis/flow_plan.py).
"""
from __future__ import annotations

import numpy as np
import torch

from ..engine.head_means import HeadMeans
from ..errors import LensError
from ..results import FlowResult, RolloutResult
from .checks import check_position
from .flow_plan import FLOW_WORK_LIMIT, flow_limit, flow_work


def mean_attention_stack(attentions: dict[int, torch.Tensor], n_layers: int) -> torch.Tensor:
    """[L, T, T] from whole attention patterns ([H, T, T] per layer, averaged here, or [T, T] already)."""
    if len(attentions) != n_layers:
        raise LensError("this trace holds no attention weights for every layer; capture them to run rollout")
    T = attentions[0].shape[-1]
    stack = torch.empty(n_layers, T, T, dtype=torch.float32, device=attentions[0].device)
    for l in range(n_layers):
        a = attentions[l]
        if a.dim() == 3:
            torch.mean(a, 0, out=stack[l])
        else:
            stack[l].copy_(a)
    return stack


def layer_means(trace) -> HeadMeans:
    """Every layer's head-averaged attention of ``trace``: the head means it kept (``attention_mean``), else the
    mean of its whole patterns."""
    hm = trace.head_means
    if hm is not None and hm.n_layers == trace.n_layers:
        return hm
    return HeadMeans.of_stack(mean_attention_stack(trace.attentions, trace.n_layers))


def _as_means(mean_attn: HeadMeans | torch.Tensor) -> HeadMeans:
    return mean_attn if isinstance(mean_attn, HeadMeans) else HeadMeans.of_stack(mean_attn)


def with_residual(mean_attn: torch.Tensor) -> torch.Tensor:
    """``Â = (Ā + I) / rowsum`` for each layer of an [L, T, T] stack (one new stack, built in place)."""
    a = mean_attn.clone()
    a.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return a.div_(a.sum(-1, keepdim=True))


def rollout_rows(mean_attn: HeadMeans | torch.Tensor, position: int, residual: bool = True) -> torch.Tensor:
    """Row ``position`` of every R_l, [L, T], without forming any R_l or any normalised copy.

    ``row_l = e_i Â_l Â_{l−1} … Â_1``: a chain of vector–matrix products per layer. With
    ``Â = D⁻¹(Ā + I)`` and ``d`` the row sums of ``Ā + I``, ``v Â = (v/d) Ā + v/d``: only the
    row sums are needed beside the attention itself. The chains run together from the
    top layer down: at layer m, every row of a layer above m is multiplied by ``Â_m`` in one
    matrix product, then row m starts, so each layer's map is read once (not once per row;
    a packed map is unpacked once, into one reused [T, T] buffer).
    """
    hm = _as_means(mean_attn)
    L, T, _ = hm.shape
    eye = 1.0 if residual else 0.0
    rows = torch.empty(L, T, dtype=hm.data.dtype)
    buf = torch.zeros(T, T, dtype=hm.data.dtype) if hm.lower else None
    for m in range(L - 1, -1, -1):
        A = hm.layer(m, out=buf)
        d = A.sum(-1) + eye  # [T]
        if m < L - 1:
            w = rows[m + 1:] / d
            torch.addmm(w, w, A, beta=eye, out=rows[m + 1:])
        v = A[position].clone()
        v[position] += eye
        rows[m] = v / d[position]
    return rows


def rollout(mean_attn: HeadMeans | torch.Tensor, tokens: list[str], position: int | None = None,
            model: str = "", residual: bool = True) -> RolloutResult:
    hm = _as_means(mean_attn)
    L, T, _ = hm.shape
    p = check_position(position, T)
    rows = rollout_rows(hm, p, residual)
    return RolloutResult(
        model=model, tokens=list(tokens), position=p, layers=[str(l) for l in range(1, L + 1)],
        rollout=rows.float().numpy(), attention=hm.rows([p])[:, 0].float().numpy(),
        options={"residual": residual},
    )


def attention_flow(mean_attn: HeadMeans | torch.Tensor, tokens: list[str], position: int | None = None,
                   model: str = "", layers: list[int] | None = None, residual: bool = True,
                   causal: bool | None = None, work_limit: int | None = FLOW_WORK_LIMIT) -> FlowResult:
    """Normalised max-flow from (l, position) to every input token, one row for each l in
    ``layers`` (1-based; default every layer), in increasing order. Uses networkx."""
    import networkx as nx
    from networkx.algorithms.flow import shortest_augmenting_path
    from networkx.algorithms.flow.utils import build_residual_network

    hm = _as_means(mean_attn)
    L, T, _ = hm.shape
    p = check_position(position, T)
    wanted = sorted(set(range(1, L + 1) if layers is None else (int(l) for l in layers)))
    if not wanted or not all(1 <= l <= L for l in wanted):
        raise LensError(f"flow layers must be between 1 and {L}, not {layers}")
    full = hm.full()  # flow is limited to short prompts: the whole stack is small
    A = (with_residual(full) if residual else full).double().cpu().numpy()
    if causal is None:  # no weight above the diagonal: a decoder
        causal = bool(np.all(np.triu(A, 1) <= 1e-12))
    S = p + 1 if causal else T  # only these positions can carry flow to position p
    if work_limit is not None and flow_work(S, wanted, causal) > work_limit:
        which = "every layer's row" if len(wanted) == L else f"{len(wanted)} layer row(s)"
        raise LensError(
            f"attention flow solves {S} max-flow problems per layer row; for {which} of this "
            f"{L}-layer model it is limited to {flow_limit(wanted, causal)} tokens (up to the chosen position) "
            f"and this is {S}. Use rollout, fewer layers, or a shorter prompt or an earlier position"
        )
    flow = np.zeros((len(wanted), T))
    G = nx.DiGraph()
    built = 0
    for row, l in enumerate(wanted):
        while built < l:  # add the edges of layers built+1 .. l
            built += 1
            a = A[built - 1]
            for i in range(S):
                for j in range(S):
                    if a[i, j] > 0:
                        G.add_edge((built, i), (built - 1, j), capacity=float(a[i, j]))
        R = build_residual_network(G, "capacity")
        for j in range(S):
            if G.has_node((0, j)):
                out = shortest_augmenting_path(G, (l, p), (0, j), residual=R, value_only=True)
                flow[row, j] = out.graph["flow_value"]
    sums = flow.sum(-1, keepdims=True)
    norm = np.divide(flow, sums, out=np.full_like(flow, np.nan), where=sums > 0)  # NaN: nothing flows
    return FlowResult(
        model=model, tokens=list(tokens), position=p, layers=[str(l) for l in wanted],
        flow=norm.astype(np.float32), raw_flow=flow.astype(np.float32),
        options={"residual": residual, "layers": wanted},
    )
