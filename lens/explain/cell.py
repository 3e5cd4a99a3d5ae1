"""One logit-lens cell with its work shown: residual vector → final norm → logits → softmax → probability.

The residual vector is read at the cell's site (``resid_pre.1`` for the embeddings row, ``resid_post.r`` for row
r), as the lens reads it; the rest is the lens's read-out written out step by step. The logits of the whole
vocabulary are one float32 matmul (as in the lens); the shown tokens' dot products are redone in float64.
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.checks import check_position
from ..engine.sites import resid
from ..errors import LensError
from .common import apply_norm, as64, largest, norm_params, shown
from .options import CellOptions
from .results import CellExplanation


def _log_softmax(z: np.ndarray) -> tuple[np.ndarray, float]:
    m = float(z.max())
    lse = m + float(np.log(np.exp(z - m).sum()))
    return z - lse, lse


def explain_cell(engine, tokenizer, model_name: str, ids: list[int], tokens: list[str],
                 options: CellOptions) -> CellExplanation:
    a = engine.adapter
    L = a.n_layers
    options.check(L)
    a.require_lm_head("the logit lens does not apply", model_name)
    if a.project_out is not None:
        raise LensError(f"{a.model_type} projects its hidden states down before the unembedding: its lens cell's "
                        "steps are not shown")
    p = check_position(options.position, len(ids))
    row = options.layer
    site = resid(row)
    final = resid(L)
    read = {site: [p], final: [p]}
    last = p == len(ids) - 1
    if row == L and not last:  # the model's own final hidden state here (its logits at every position: T × V floats)
        read["final_norm"] = [p]
    out = engine.run(ids, read=read, logits="last" if row == L and last else "none")
    h = as64(out.reads[site][0, 0])
    kind, scale, bias, eps = norm_params(a.final_norm, h.shape[0], a.spec.norm_offset)
    x, mean, var, rms = apply_norm(h, kind, scale, bias, eps)
    xf, *_ = apply_norm(as64(out.reads[final][0, 0]), kind, scale, bias, eps)

    W = a.unembed.weight.detach()
    b = a.unembed.bias
    cap = a.softcap

    def logits(v: np.ndarray) -> np.ndarray:  # the whole vocabulary, float32 as in the lens
        z = as64(torch.from_numpy(v).to(W.device, W.dtype) @ W.T)
        if b is not None:
            z = z + as64(b)
        return np.tanh(z / cap) * cap if cap else z

    z, zf = logits(x), logits(xf)
    logp, lse = _log_softmax(z)
    logpf, _ = _log_softmax(zf)
    prob, pf = np.exp(logp), np.exp(logpf)
    entropy = float(-(prob * logp).sum())
    kl = max(0.0, float((pf * (logpf - logp)).sum()))
    top_ids = [int(i) for i in np.argsort(-z, kind="stable")[: options.top]]
    top = []
    for i in top_ids:
        w_row = as64(W[i])
        dot = float(x @ w_row)  # float64: the shown product of the shown numbers
        bi = 0.0 if b is None else float(as64(b[i]))
        logit = float(np.tanh((dot + bi) / cap) * cap) if cap else dot + bi
        top.append({"token": shown(tokenizer, i), "id": i, "dot": dot, "unembed_bias": bi, "logit": logit,
                    "prob": float(np.exp(logit - lse)), "row_norm": float(np.linalg.norm(w_row))})
    model_top = []
    if row == L:
        if last:
            own = as64(out.logits[0])
        else:  # the unembedding of the model's own final-norm output, as its lm_head computes it
            with torch.no_grad():
                own = as64(a.unembed(out.reads["final_norm"][0, 0].to(W.dtype)))
            own = np.tanh(own / cap) * cap if cap else own
        model_top = [{"token": t["token"], "id": t["id"], "logit": float(own[t["id"]])} for t in top]
    dims = largest(h, options.dims)
    return CellExplanation(
        model=model_name, tokens=list(tokens), layer=row, layer_label="emb" if row == 0 else str(row), n_layers=L,
        position=p, token=tokens[p], site=site, d_model=int(h.shape[0]), norm=float(np.linalg.norm(h)),
        dims=dims, values=[float(h[i]) for i in dims], norm_kind=kind, mean=mean, var=var, eps=eps, rms=rms,
        weight=[float(scale[i]) for i in dims], bias=[float(bias[i]) for i in dims], normed=[float(x[i]) for i in dims],
        normed_norm=float(np.linalg.norm(x)), top=top, max_logit=float(z.max()), logsumexp=lse,
        vocab_size=int(z.shape[0]), entropy=entropy, kl_to_final=kl, softcap=float(cap) if cap else None,
        is_final=row == L, model_top=model_top)
