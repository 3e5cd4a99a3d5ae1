"""Edge attribution patching (EAP; Syed et al. 2023) and the faithfulness of the circuit it keeps, through the engine.

The graph. Writers: the embedding, every head (its write ``z_h · W_O[h]``), every MLP (``mlp_out``).
Readers: every head's query and every key/value head's keys and values (models with separate q, k, v
projections: each reads an input of its own, the residual stream at the attention's norm; other models: each
block's attention as one reader, ``attn_in.l``), each block's MLP (``mlp_in.l``) and the logits
(``resid_post.L``, what the final norm reads). An edge joins a writer to every
reader computed after it. Because blocks are pre-norm and sequential, a reader's input is the sum of the
writes before it (plus biases, the same in every run).

Scores. ``score(u→v) = (a_u,clean − a_u,corrupt) · ∂m/∂(input of v)`` on the corrupted run; the gradient at a
reader's input is the one through that reader only (``attn_in.l`` and ``mlp_in.l`` are tensors of their own,
not the skip connection's). A per-head reader's gradient is its projection's (``q_proj.l`` …) taken back
through its rows of the projection and through the norm at the attention's input.

Circuit runs (path patching of edges). The clean prompt runs with every reader's input replaced by
``input_v − Σ_{u→v left out} (a_u − a_u,corrupt)``, ``a_u`` the writer's value in this very run (a per-head
reader: its slice of the projection recomputed from that input through the norm): an edge left
out carries the corrupted run's value, an edge kept the circuit's own. Every edge kept: the clean run;
none: the corrupted run (each writer then sees the corrupted input and writes its corrupted value).
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.patching import metric as metric_rows
from ..errors import LensError
from .atp import metric_fn
from .graph import Graph

MEMORY = 256 * 2 ** 20  # bytes of writers' differences one batch of circuit runs may hold


def check_circuits(adapter) -> None:
    if not adapter.out_proj:
        raise LensError(f"circuits need each head's write and {adapter.model_type} has no head sites: "
                        f"{adapter.routes_unavailable()}")
    if adapter.spec.parallel_residual or adapter.spec.attn_write or adapter.post_ln or not all(adapter.mlp_norm):
        raise LensError(f"{adapter.model_type}'s blocks do not add attention then MLP to one residual stream, "
                        "which the circuit's edges assume")


def _writer_sites(L: int) -> list[str]:
    return ["resid_pre.1"] + [s for l in range(1, L + 1) for s in (f"head_out.{l}", f"mlp_out.{l}")]


def _writes(reads: dict, adapter, W_O: list[torch.Tensor]) -> torch.Tensor:
    """[U, T, d] every writer's write from a run's reads (batch element 0)."""
    L, H = adapter.n_layers, adapter.n_heads
    out = [reads["resid_pre.1"][0]]
    for l in range(1, L + 1):
        z = reads[f"head_out.{l}"][0]
        out += list(_heads(z, W_O[l - 1], H))
        out.append(reads[f"mlp_out.{l}"][0])
    return torch.stack([o.float() for o in out])


def _heads(z: torch.Tensor, W: torch.Tensor, H: int) -> torch.Tensor:
    """[..., H, T, d] each head's write ``z_h · W_O[h]`` from ``head_out`` [..., T, H·hd]."""
    zh = z.float().reshape(*z.shape[:-1], H, -1)
    return torch.einsum("...thk,hkd->...htd", zh, W)


def output_weights(adapter) -> list[torch.Tensor]:
    return [adapter.output_projection(i)[0] for i in range(adapter.n_layers)]


def graph_of(adapter) -> Graph:
    """Per-head query, key and value readers where the model has separate projections; else one reader per
    attention block (``Graph.of`` says the same from a ModelInfo)."""
    a = adapter
    return Graph(a.n_layers, a.n_heads, a.n_kv_heads if a.query_proj else None)


_PARTS = {"q": "q_proj", "k": "k_proj", "v": "v_proj"}


def _qkv_reads(g: Graph) -> list[str]:
    return [f"{_PARTS[p]}.{l}" for l in range(1, g.L + 1) for p in "qkv"] if g.per_head else []


def _projection(adapter, part: str, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W as [out, in], bias) of block ``layer``'s (1-based) query, key or value projection."""
    from ..model.adapters import linear_in_out

    mod = {"q": adapter.query_proj, "k": adapter.key_proj, "v": adapter.separate_value_proj}[part][layer - 1]
    W, b = linear_in_out(mod)
    return W.detach().float().T, (None if b is None else b.detach().float())


def _slice(adapter, part: str, index: int) -> slice:
    hd = adapter.head_dim
    return slice(index * hd, (index + 1) * hd)


def _head_input_gradients(adapter, g: Graph, layer: int, x: torch.Tensor, grads: dict) -> torch.Tensor:
    """[S, n, T, d]: for each of block ``layer``'s per-head readers, the gradient at the attention's input ``x``
    [S, T, d] through that reader alone: its projection's gradient (``grads``: site -> [S, T, out]) taken back
    through its rows of the projection, then through the norm at ``x``."""
    norm = adapter.attn_norm[layer - 1]
    through = []
    for v in g.attn_readers[layer]:
        part, index = g.reader_part[v]
        W, _ = _projection(adapter, part, layer)
        cols = _slice(adapter, part, index)
        gq = grads[f"{_PARTS[part]}.{layer}"].float()[..., cols]  # [S, T, hd]
        through.append(gq @ W[cols].to(gq.device))  # [S, T, d]: the gradient at the norm's output
    g_n = torch.stack(through, 1)  # [S, n, T, d]
    with torch.enable_grad():
        xs = x.detach().float()[:, None].expand(g_n.shape).clone().requires_grad_()
        n = norm.forward(xs.to(x.dtype)).float()  # .forward: the norm's own maths, no engine hook
        (gx,) = torch.autograd.grad(n, xs, g_n)
    return gx


def _reader_gradients(adapter, g: Graph, reads: dict, grads: dict) -> torch.Tensor:
    """[S, R, T, d] every reader's gradient at its input, from a run that read the readers' sites (and, per
    head, each block's attention input and its q, k, v projections) with gradients."""
    out: list[torch.Tensor | None] = [None] * len(g.readers)
    for v, site in enumerate(g.reader_site):
        if g.reader_part[v] is None:
            out[v] = grads[site].float()
    if g.per_head:
        for l in range(1, g.L + 1):
            gx = _head_input_gradients(adapter, g, l, reads[f"attn_in.{l}"], grads)
            for j, v in enumerate(g.attn_readers[l]):
                out[v] = gx[:, j]
    return torch.stack(out, 1)


def edge_scores(engine, clean_ids, corrupt_ids, target, foil, progress=None, ig_steps: int = 0):
    """(graph, scores [U, R] float64 with 0 where no edge, m(clean), m(corrupt), corrupted writes [U, T, d])."""
    a = engine.adapter
    g = graph_of(a)
    W_O = output_weights(a)
    say = progress or (lambda f, m: None)
    writers = {s: None for s in _writer_sites(a.n_layers)}
    say(0.0, "clean run")
    c = engine.run(clean_ids, read=writers, logits="last")
    m_clean = float(metric_rows(c.logits, target, foil)[0])
    say(0.2, "corrupted run and its backward pass")
    own, reads = _gradient_sites(g)
    k = engine.run(corrupt_ids, read={**writers, **reads}, write=own, grad_of=metric_fn(target, foil))
    wc, wk = _writes(c.reads, a, W_O), _writes(k.reads, a, W_O)
    grads = _reader_gradients(a, g, {s: x for s, x in k.reads.items()}, k.grads)[0]  # [R, T, d]
    if ig_steps:
        say(0.25, f"gradients at {ig_steps} points between the corrupted and the clean embeddings")
        grads = _integrated(engine, g, corrupt_ids, wc[0], wk[0], target, foil, ig_steps)
    scores = torch.einsum("utd,rtd->ur", (wc - wk).double(), grads.double()).cpu().numpy()
    scores[~g.valid] = 0.0
    return g, scores, m_clean, float(k.metric), wk


def _gradient_sites(g: Graph) -> tuple[dict, dict]:
    """(writes, reads) of a run whose backward pass gives every reader's gradient: an identity edit makes each
    sub-block's input a tensor of its own, so its gradient is that sub-block's alone."""
    coarse = sorted({site for v, site in enumerate(g.reader_site[:-1]) if g.reader_part[v] is None})
    own = {s: (lambda x, call: x.clone()) for s in coarse}
    reads = {s: None for s in coarse + [g.reader_site[-1]] + _qkv_reads(g)}
    if g.per_head:
        reads.update({f"attn_in.{l}": None for l in range(1, g.L + 1)})
    return own, reads


def _integrated(engine, g: Graph, corrupt_ids, emb_clean, emb_corrupt, target, foil, steps: int) -> torch.Tensor:
    """EAP-IG (Hanna et al. 2024): each reader's gradient averaged over ``steps`` runs whose embeddings lie evenly
    between the corrupted and the clean ones (midpoints), one batch; [R, T, d]."""
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps

    def interpolate(x, call):
        e = emb_corrupt.to(x.device) + alphas.to(x.device)[:, None, None] * (emb_clean - emb_corrupt).to(x.device)
        return e.to(x.dtype).requires_grad_()  # a new leaf: the gradients start from it

    def total(z):  # the runs are independent: the gradient of the sum is each run's own
        z = z.double()
        if foil is None:
            return torch.log_softmax(z, -1)[:, target].sum()
        return (z[:, target] - z[:, foil]).sum()
    own, reads = _gradient_sites(g)
    out = engine.run([list(corrupt_ids)] * steps, read=reads, write={**own, "resid_pre.1": interpolate},
                     grad_of=total)
    return _reader_gradients(engine.adapter, g, out.reads, out.grads).mean(0)


def ranked_edges(g: Graph, scores: np.ndarray, rank: str = "size") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every edge (writer, reader, score) in the order a circuit grown from the logits takes them
    (``Graph.greedy_order``): ``rank`` "size" by |score|, "help" by score. Grown, not the top n overall: the
    top edges overall often join nothing to the logits and are pruned away."""
    u, v = np.nonzero(g.valid)
    s = scores[u, v]
    order = g.greedy_order(np.abs(s) if rank == "size" else s)
    return u[order], v[order], s[order]


def circuit_metrics(engine, g: Graph, clean_ids, corrupt_writes: torch.Tensor, keeps: list[np.ndarray],
                    target, foil, progress=None) -> np.ndarray:
    """The metric of each circuit (``keeps``: [U, R] bool, the edges kept), from path-patched runs of the clean
    prompt (module docstring), a batch at a time."""
    a = engine.adapter
    L, H = a.n_layers, a.n_heads
    U, T, d = corrupt_writes.shape
    W_O = [w.to(corrupt_writes.device) for w in output_weights(a)]
    per_run = U * T * d * 4
    batch = max(1, min(len(keeps), MEMORY // max(1, per_run)))
    out = np.empty(len(keeps))
    say = progress or (lambda f, m: None)
    for start in range(0, len(keeps), batch):
        chunk = keeps[start:start + batch]
        B = len(chunk)
        drop = torch.as_tensor(~np.stack(chunk), dtype=torch.float32, device=corrupt_writes.device)  # [B, U, R]
        delta = torch.zeros(B, U, T, d, device=corrupt_writes.device)  # a_u − a_u,corrupt in this run
        write: dict = {}

        def capture(first: int, heads: bool, W=None):
            def edit(x, call):
                now = _heads(x, W, H) if heads else x.float()[:, None]  # [B, n, T, d]
                n = now.shape[1]
                delta[:, first:first + n] = now - corrupt_writes[first:first + n]
                return x
            return edit

        def reader(v: int):
            n = int(g.before[v])

            def edit(x, call):
                left_out = torch.einsum("bu,butd->btd", drop[:, :n, v], delta[:, :n])
                return x - left_out.to(x.dtype)
            return edit
        attn_inputs: dict[int, torch.Tensor] = {}

        def keep_input(l: int):
            def edit(x, call):
                attn_inputs[l] = x
                return x
            return edit

        def projection(l: int, part: str):
            """Each per-head reader's slice of the projection, recomputed from its own input: the attention's
            input less what the reader's left-out edges carry, through the norm and the reader's rows."""
            vs = [v for v in g.attn_readers[l] if g.reader_part[v][0] == part]
            n = int(g.before[vs[0]])
            W, bias = _projection(a, part, l)
            norm = a.attn_norm[l - 1]

            def edit(x, call):
                left_out = torch.einsum("bun,butd->bntd", drop[:, :n, vs], delta[:, :n])  # [B, n, T, d]
                ins = attn_inputs[l].float()[:, None] - left_out
                normed = norm.forward(ins.to(x.dtype)).float()  # .forward: no engine hook
                y = x.clone()
                for j, v in enumerate(vs):
                    cols = _slice(a, part, g.reader_part[v][1])
                    y[..., cols] = (normed[:, j] @ W[cols].T.to(normed.device)
                                    + (0 if bias is None else bias[cols].to(normed.device))).to(x.dtype)
                return y
            return edit
        write["resid_pre.1"] = capture(0, False)
        for l in range(1, L + 1):
            write[f"head_out.{l}"] = capture(g.head_index[l][0], True, W_O[l - 1])
            write[f"mlp_out.{l}"] = capture(g.mlp_index[l], False)
        for v, site in enumerate(g.reader_site):
            if g.reader_part[v] is None:
                write[site] = reader(v)
        if g.per_head:
            for l in range(1, L + 1):
                write[f"attn_in.{l}"] = keep_input(l)
                for part in "qkv":
                    write[f"{_PARTS[part]}.{l}"] = projection(l, part)
        z = engine.run([list(clean_ids)] * B, write=write, logits="last").logits
        out[start:start + B] = metric_rows(z, target, foil).cpu().numpy()
        say(min(1.0, (start + B) / len(keeps)), f"ran {start + B} of {len(keeps)} circuits")
    return out


def keep_mask(g: Graph, edges: list[tuple[int, int]]) -> np.ndarray:
    keep = np.zeros(g.valid.shape, bool)
    for u, v in edges:
        keep[u, v] = True
    return keep


def circuit_scores(engine, clean_ids, corrupt_ids, target, foil, progress=None, ig_steps: int = 0,
                   rank: str = "size") -> dict:
    """What every circuit of one pair shares: the graph, the ranked edges, both metrics, the corrupted writes,
    and the faithfulness curve (one path-patched run per edge count of CURVE_EDGES below the edge count, and
    all edges)."""
    from .options import CURVE_EDGES

    def part(lo, hi):
        return None if progress is None else (lambda f, m: progress(lo + (hi - lo) * f, m))
    g, scores, m_clean, m_corrupt, wk = edge_scores(engine, clean_ids, corrupt_ids, target, foil, part(0.0, 0.3),
                                                    ig_steps)
    u, v, s = ranked_edges(g, scores, rank)
    E = len(s)
    ns = sorted({n for n in CURVE_EDGES if n < E} | {E})
    keeps = [keep_mask(g, g.prune(list(zip(u[:n], v[:n])))) for n in ns]
    ms = circuit_metrics(engine, g, clean_ids, wk, keeps, target, foil, part(0.3, 1.0))
    return {"graph": g, "from": u, "to": v, "score": s, "m_clean": m_clean, "m_corrupt": m_corrupt, "writes": wk,
            "curve_edges": np.array(ns), "curve_metric": ms}


def faithfulness(m, m_clean: float, m_corrupt: float):
    from ..analysis.patching import MIN_METRIC_GAP

    gap = m_clean - m_corrupt
    if abs(gap) < MIN_METRIC_GAP:
        raise LensError("the clean and the corrupted prompt give the same metric: there is nothing to restore; "
                        "pick a corrupted prompt (or a foil) that changes the answer")
    return (np.asarray(m, np.float64) - m_corrupt) / gap


def circuit_result(engine, model: str, tokenizer, scored: dict, clean_ids, corrupt_ids, target, foil, options,
                   progress=None):
    """The CircuitResult of ``options.edges`` edges from what ``circuit_scores`` gave."""
    from ..model.tokens import token_strings
    from .results import CircuitResult

    g, u, v, s = scored["graph"], scored["from"], scored["to"], scored["score"]
    m_clean, m_corrupt = scored["m_clean"], scored["m_corrupt"]
    ns, ms = scored["curve_edges"], scored["curve_metric"]
    curve = faithfulness(ms, m_clean, m_corrupt)
    n = min(options.edges, len(s))
    kept = g.prune(list(zip(u[:n], v[:n])))
    if n in set(ns.tolist()):
        m_n = float(ms[list(ns).index(n)])
    else:
        m_n = float(circuit_metrics(engine, g, clean_ids, scored["writes"], [keep_mask(g, kept)], target, foil)[0])
    rank = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(u, v))}
    kept = sorted(kept, key=lambda e: rank[(int(e[0]), int(e[1]))])
    over = [int(k) for k, f in zip(ns, curve) if f >= 0.8]
    return CircuitResult(
        model=model, tokens=token_strings(tokenizer, clean_ids), corrupt_tokens=token_strings(tokenizer, corrupt_ids),
        target=options.target, foil=options.foil,
        metric_name="logit difference" if foil is not None else "log-probability",
        metric_clean=m_clean, metric_corrupt=m_corrupt, writers=list(g.writers), readers=list(g.readers),
        edge_from=u.astype(np.int64), edge_to=v.astype(np.int64), edge_score=s.astype(np.float64), edges=n,
        kept=[[int(a), int(b), float(scores_at(s, rank, a, b))] for a, b in kept], metric_circuit=m_n,
        faithfulness=float(faithfulness(m_n, m_clean, m_corrupt)), curve_edges=ns.astype(np.int64),
        curve_metric=np.asarray(ms, np.float64), curve_faithfulness=np.asarray(curve, np.float64),
        edges_80=over[0] if over else None)


def scores_at(s: np.ndarray, rank: dict, a: int, b: int) -> float:
    return float(s[rank[(int(a), int(b))]])
