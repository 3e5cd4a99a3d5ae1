"""Attribution patching (AtP): every cell of a patching grid estimated from one clean run, one corrupted run and
one backward pass, all through the engine.

A cell patches the activation ``a`` (a residual vector, an attention or MLP write at one position, or a head's
write at every position) from the clean run into the corrupted one; AtP estimates the change of the metric
``m`` as ``(a_clean − a_corrupt) · ∂m/∂a``, the gradient taken on the corrupted run. The grid keeps the rows and
columns of lens/interventions/patching.py and is normalised the same way, by ``m(clean) − m(corrupt)``.

QK fix (attn and head sites; Kramár et al. 2024 recompute the softmax where a patch changes queries or keys).
A head's write is ``z = A·V`` (its pattern A times its values V), so the clean write splits exactly:
``z_c − z_k = (A_c − A_k)·V_k + A_c·(V_c − V_k)``. The pattern term is patched for real (the head's write set to
``A_c·V_k``: the softmax of the clean queries and keys, nothing linearised); only the value term is estimated
from the gradient. It costs one batched run per layer, as real patching does.

GradDrop (Kramár et al. 2024, against cancellation: a node whose direct and indirect effects cancel in the
gradient). L more backward passes, one batch: in pass ℓ the gradient does not flow back through block ℓ's
writes (its attention and MLP outputs are detached, the skip connection still carries it). A cell's estimate
is the mean over the passes ℓ other than its own block of |AtP_ℓ|: a size, not a sign, so it is compared with
the size of real patching's effect.
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.patching import metric as metric_rows
from ..engine.sites import resid_rows
from ..errors import LensError

SITES = {"attn": "attn_out", "mlp": "mlp_out", "head": "head_out"}


def metric_fn(target: int, foil: int | None):
    """m of last-position logits [1, V] as a differentiable scalar: logit(target) − logit(foil), or log p(target)."""
    def m(z: torch.Tensor) -> torch.Tensor:
        z = z[0].double()
        return torch.log_softmax(z, -1)[target] if foil is None else z[target] - z[foil]
    return m


def grid_sites(site: str, n_layers: int) -> list[str]:
    """The site of each row of the grid (resid: row 0 the embeddings, row r the output of block r)."""
    return resid_rows(n_layers) if site == "resid" else [f"{SITES[site]}.{l}" for l in range(1, n_layers + 1)]


def atp_products(clean: dict, corrupt: dict, grads: dict, sites: list[str], site: str, n_heads: int) -> np.ndarray:
    """[rows, columns] (a_clean − a_corrupt) · ∂m/∂a per cell: summed over the width at each position, or over
    each head's slice and every position (head)."""
    rows = []
    for s in sites:
        prod = (clean[s][0].double() - corrupt[s][0].double()) * grads[s][0].double()  # [T, D]
        if site == "head":
            rows.append(prod.reshape(prod.shape[0], n_heads, -1).sum((0, 2)))
        else:
            rows.append(prod.sum(-1))
    return torch.stack(rows).cpu().numpy()


def _row_blocks(site: str, n_layers: int) -> list[int]:
    """The block each grid row belongs to (resid: row 0 the embeddings, none)."""
    return list(range(0 if site == "resid" else 1, n_layers + 1))


def grad_drop_grads(engine, corrupt_ids: list[int], sites: list[str], target: int, foil: int | None) -> dict:
    """site -> [L, T, D]: row ℓ−1 the gradient of m at ``site`` on the corrupted run when the gradient does not
    flow back through block ℓ's writes (all L passes as one batch of independent runs)."""
    L = engine.adapter.n_layers

    def detach_row(i: int):
        def edit(x, call):
            return torch.cat([x[:i], x[i:i + 1].detach(), x[i + 1:]])
        return edit

    def total(z):  # each run's metric; the runs are independent, so the sum's gradient is each run's own
        z = z.double()
        return (torch.log_softmax(z, -1)[:, target] if foil is None else z[:, target] - z[:, foil]).sum()
    write = {f"{kind}.{l}": detach_row(l - 1) for l in range(1, L + 1) for kind in ("attn_out", "mlp_out")}
    out = engine.run([list(corrupt_ids)] * L, read={s: None for s in sites}, write=write, grad_of=total)
    return out.grads


def grad_drop_mean(per_pass: np.ndarray, blocks: list[int]) -> np.ndarray:
    """[rows, columns]: each row's mean |estimate| over the passes (axis 0, pass ℓ−1 drops block ℓ) other than
    its own block's."""
    L = per_pass.shape[0]
    out = np.empty(per_pass.shape[1:])
    for r, b in enumerate(blocks):
        others = [l for l in range(L) if l != b - 1]
        out[r] = np.abs(per_pass[others, r]).mean(0)
    return out


def atp_grid(engine, clean_ids: list[int], corrupt_ids: list[int], target: int, foil: int | None, site: str,
             qk_fix: bool = False, progress=None, grad_drop: bool = False) -> tuple[np.ndarray, float, float]:
    """The AtP estimate of every cell's change of the metric ([rows, columns] float64), m(clean), m(corrupt);
    with ``grad_drop`` its size (module docstring)."""
    a = engine.adapter
    L = a.n_layers
    say = progress or (lambda f, msg: None)
    sites = grid_sites(site, L)
    m = metric_fn(target, foil)
    say(0.0, "clean run")
    c = engine.run(clean_ids, read={s: None for s in sites}, logits="last")
    m_clean = float(metric_rows(c.logits, target, foil)[0])
    say(0.3, "corrupted run and its backward pass")
    k = engine.run(corrupt_ids, read={s: None for s in sites}, grad_of=m)
    m_corrupt = float(k.metric)
    est = atp_products(c.reads, k.reads, k.grads, sites, site, a.n_heads)
    if grad_drop and not qk_fix:
        say(0.5, f"{L} backward passes, each without one block's gradient")
        g = grad_drop_grads(engine, corrupt_ids, sites, target, foil)
        per_pass = np.stack([atp_products(c.reads, k.reads, {s: g[s][i:i + 1] for s in sites}, sites, site, a.n_heads)
                             for i in range(L)])
        est = grad_drop_mean(per_pass, _row_blocks(site, L))
    if qk_fix:
        est = qk_fixed(engine, clean_ids, corrupt_ids, target, foil, site, m_corrupt, say, grad_drop)
    say(1.0, "estimated every cell")
    return est, m_clean, m_corrupt


def _values_per_head(values: torch.Tensor, group: int) -> torch.Tensor:
    """[T, KV, hd] value vectors -> [H, T, hd], each query head with its key/value head (grouped-query attention)."""
    return values.permute(1, 0, 2).repeat_interleave(group, dim=0)


def split_head_writes(pattern_c: torch.Tensor, values_c: torch.Tensor, values_k: torch.Tensor,
                      group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([T, H, hd] A_c·V_k, [T, H, hd] A_c·(V_c − V_k)) from a layer's clean pattern [H, T, T] and both runs' values."""
    vc, vk = _values_per_head(values_c, group), _values_per_head(values_k, group)
    return (torch.einsum("hqk,hkd->qhd", pattern_c, vk), torch.einsum("hqk,hkd->qhd", pattern_c, vc - vk))


def qk_fixed(engine, clean_ids, corrupt_ids, target, foil, site, m_corrupt, say, grad_drop: bool = False) -> np.ndarray:
    """The QK-fixed estimate (module docstring) for ``site`` attn or head: [L, T] or [L, H]; with ``grad_drop``
    the mean over the passes of |the pattern term + the value term estimated from that pass's gradient|."""
    a = engine.adapter
    L, H, hd, T = a.n_layers, a.n_heads, a.head_dim, len(corrupt_ids)
    if not a.out_proj:
        raise LensError(f"the QK fix splits each head's write and {a.model_type} has no head sites: "
                        f"{a.routes_unavailable()}")
    need = {f"attn_pattern.{l}": None for l in range(1, L + 1)} | {f"value.{l}": None for l in range(1, L + 1)}
    heads = [f"head_out.{l}" for l in range(1, L + 1)]
    say(0.4, "both runs' attention patterns and values")
    c = engine.run(clean_ids, read=need, logits="none")
    k = engine.run(corrupt_ids, read={**need, **{s: None for s in heads}}, grad_of=metric_fn(target, foil))
    rows = np.empty((L, H if site == "head" else T))
    record = engine.record(corrupt_ids) if engine.capabilities.resumes else None
    dropped = grad_drop_grads(engine, corrupt_ids, heads, target, foil) if grad_drop else None
    for l in range(1, L + 1):
        pat_part, val_part = split_head_writes(c.reads[f"attn_pattern.{l}"][0], c.reads[f"value.{l}"][0],
                                               k.reads[f"value.{l}"][0], a.kv_group)
        grads = (k.grads[f"head_out.{l}"] if dropped is None else dropped[f"head_out.{l}"]).reshape(-1, T, H, hd)
        lin = val_part.double()[None] * grads.double()  # [passes, T, H, hd]: the value term, linear
        lin = (lin.sum((1, 3)) if site == "head" else lin.sum((2, 3))).cpu().numpy()  # [passes, columns]
        n = H if site == "head" else T
        edit = _pattern_edit(pat_part.reshape(T, H * hd), site, hd)
        write = {f"head_out.{l}": edit}
        z = (engine.resume(record, n, write) if record is not None
             else engine.run([list(corrupt_ids)] * n, write=write).logits)
        exact = metric_rows(z, target, foil).cpu().numpy() - m_corrupt
        if dropped is None:
            rows[l - 1] = exact + lin[0]
        else:
            rows[l - 1] = np.abs(exact[None] + np.delete(lin, l - 1, axis=0)).mean(0)
        say(0.4 + 0.6 * l / L, f"recomputed the softmax of block {l} of {L}")
    return rows


def _pattern_edit(pattern_write: torch.Tensor, site: str, hd: int):
    """On ``head_out``: batch element i gets the pattern term's write A_c·V_k (head: head i at every position;
    attn: every head at position i), the rest as the corrupted run wrote it."""
    def edit(x: torch.Tensor, call) -> torch.Tensor:
        x = x.clone()
        for i in range(x.shape[0]):
            if site == "head":
                x[i, :, i * hd:(i + 1) * hd] = pattern_write[:, i * hd:(i + 1) * hd].to(x.dtype)
            else:
                x[i, i] = pattern_write[i].to(x.dtype)
        return x
    return edit


def disagreements(estimate: np.ndarray, actual: np.ndarray, layers: list[str], columns: list[str],
                  n: int) -> list[dict]:
    """The ``n`` cells where the normalised estimate and the real patching differ most."""
    gap = np.abs(estimate.astype(np.float64) - actual.astype(np.float64)).ravel()
    order = np.argsort(-gap, kind="stable")[:n]
    C = estimate.shape[1]
    return [{"layer": layers[i // C], "column": columns[i % C], "estimate": float(estimate.flat[i]),
             "actual": float(actual.flat[i]), "gap": float(gap[i])} for i in order]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def attribution_result(engine, model: str, tokenizer, clean_ids, corrupt_ids, target: int, foil: int | None,
                       options, actual=None, progress=None):
    """The AttributionResult of ``options`` (lens/circuits/options.py); ``actual``: the real PatchResult."""
    from ..analysis.patching import normalised
    from ..model.tokens import token_strings
    from .options import DISAGREE
    from .results import AttributionResult

    a = engine.adapter
    L, T = a.n_layers, len(corrupt_ids)
    raw, m_clean, m_corrupt = atp_grid(engine, clean_ids, corrupt_ids, target, foil, options.site, options.qk_fix,
                                       progress, options.grad_drop)
    est = normalised(raw + m_corrupt, m_clean, m_corrupt)
    if options.grad_drop:  # a size: compared with the size of real patching's share
        est = np.abs(est)
    layers = (["emb"] if options.site == "resid" else []) + [str(i) for i in range(1, L + 1)]
    cols = [f"head {h}" for h in range(a.n_heads)] if options.site == "head" else [str(p) for p in range(T)]
    result = AttributionResult(
        model=model, site=options.site, tokens=token_strings(tokenizer, clean_ids),
        corrupt_tokens=token_strings(tokenizer, corrupt_ids), layers=layers, columns=cols, target=options.target,
        foil=options.foil, metric_name="logit difference" if foil is not None else "log-probability",
        metric_clean=m_clean, metric_corrupt=m_corrupt, qk_fix=options.qk_fix, estimate=est,
        estimate_raw=raw.astype(np.float64), grad_drop=options.grad_drop)
    if actual is not None:
        result.verified = True
        result.actual = np.asarray(actual.patch, np.float32)
        against = np.abs(result.actual) if options.grad_drop else result.actual
        result.correlation = pearson(est, against)
        result.disagreements = disagreements(est, against, layers, cols, DISAGREE)
    return result
