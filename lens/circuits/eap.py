"""Edge attribution patching (EAP; Syed et al. 2023) and the faithfulness of the circuit it keeps, through the engine.

The graph. Writers: the embedding, every head (its write ``z_h · W_O[h]``), every MLP (``mlp_out``).
Readers: each block's attention (all its heads read one input, ``attn_in.l``, the residual stream at its
norm: a per-head input would need the queries, keys and values split per head), each block's MLP
(``mlp_in.l``) and the logits (``resid_post.L``, what the final norm reads). An edge joins a writer to every
reader computed after it. Because blocks are pre-norm and sequential, a reader's input is the sum of the
writes before it (plus biases, the same in every run).

Scores. ``score(u→v) = (a_u,clean − a_u,corrupt) · ∂m/∂(input of v)`` on the corrupted run; the gradient at a
reader's input is the one through that reader only (``attn_in.l`` and ``mlp_in.l`` are tensors of their own,
not the skip connection's).

Circuit runs (path patching of edges). The clean prompt runs with every reader's input replaced by
``input_v − Σ_{u→v left out} (a_u − a_u,corrupt)``, ``a_u`` the writer's value in this very run: an edge left
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


def edge_scores(engine, clean_ids, corrupt_ids, target, foil, progress=None, ig_steps: int = 0):
    """(graph, scores [U, R] float64 with 0 where no edge, m(clean), m(corrupt), corrupted writes [U, T, d])."""
    a = engine.adapter
    g = Graph(a.n_layers, a.n_heads)
    W_O = output_weights(a)
    say = progress or (lambda f, m: None)
    writers = {s: None for s in _writer_sites(a.n_layers)}
    say(0.0, "clean run")
    c = engine.run(clean_ids, read=writers, logits="last")
    m_clean = float(metric_rows(c.logits, target, foil)[0])
    say(0.2, "corrupted run and its backward pass")
    # An identity edit makes each sub-block's input a tensor of its own: its gradient is the sub-block's alone.
    own = {s: (lambda x, call: x.clone()) for s in g.reader_site[:-1]}
    k = engine.run(corrupt_ids, read={**writers, **{s: None for s in g.reader_site}}, write=own,
                   grad_of=metric_fn(target, foil))
    wc, wk = _writes(c.reads, a, W_O), _writes(k.reads, a, W_O)
    grads = torch.stack([k.grads[s][0].float() for s in g.reader_site])  # [R, T, d]
    if ig_steps:
        say(0.25, f"gradients at {ig_steps} points between the corrupted and the clean embeddings")
        grads = _integrated(engine, g, corrupt_ids, wc[0], wk[0], target, foil, ig_steps, own)
    scores = torch.einsum("utd,rtd->ur", (wc - wk).double(), grads.double()).cpu().numpy()
    scores[~g.valid] = 0.0
    return g, scores, m_clean, float(k.metric), wk


def _integrated(engine, g: Graph, corrupt_ids, emb_clean, emb_corrupt, target, foil, steps: int, own) -> torch.Tensor:
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
    out = engine.run([list(corrupt_ids)] * steps, read={s: None for s in g.reader_site},
                     write={**own, "resid_pre.1": interpolate}, grad_of=total)
    return torch.stack([out.grads[s].float().mean(0) for s in g.reader_site])


def ranked_edges(g: Graph, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every edge (writer, reader, score), largest |score| first (ties: the order computed)."""
    u, v = np.nonzero(g.valid)
    s = scores[u, v]
    order = np.argsort(-np.abs(s), kind="stable")
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
        write["resid_pre.1"] = capture(0, False)
        for l in range(1, L + 1):
            write[f"head_out.{l}"] = capture(g.head_index[l][0], True, W_O[l - 1])
            write[f"mlp_out.{l}"] = capture(g.mlp_index[l], False)
        for v, site in enumerate(g.reader_site):
            write[site] = reader(v)
        z = engine.run([list(clean_ids)] * B, write=write, logits="last").logits
        out[start:start + B] = metric_rows(z, target, foil).cpu().numpy()
        say(min(1.0, (start + B) / len(keeps)), f"ran {start + B} of {len(keeps)} circuits")
    return out


def keep_mask(g: Graph, edges: list[tuple[int, int]]) -> np.ndarray:
    keep = np.zeros(g.valid.shape, bool)
    for u, v in edges:
        keep[u, v] = True
    return keep


def circuit_scores(engine, clean_ids, corrupt_ids, target, foil, progress=None, ig_steps: int = 0) -> dict:
    """What every circuit of one pair shares: the graph, the ranked edges, both metrics, the corrupted writes,
    and the faithfulness curve (one path-patched run per edge count of CURVE_EDGES below the edge count, and
    all edges)."""
    from .options import CURVE_EDGES

    def part(lo, hi):
        return None if progress is None else (lambda f, m: progress(lo + (hi - lo) * f, m))
    g, scores, m_clean, m_corrupt, wk = edge_scores(engine, clean_ids, corrupt_ids, target, foil, part(0.0, 0.3),
                                                    ig_steps)
    u, v, s = ranked_edges(g, scores)
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
