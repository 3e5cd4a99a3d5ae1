"""Two models on one prompt: the logit lens of each, and how far apart their distributions are at every
cell (a fine-tuned checkpoint beside its base, say). Both must share the tokenizer and the depth."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import LensError
from ..model.tokens import decode_token
from ..engine.trace import Trace
from ..results import ModelComparison


@torch.no_grad()
def compare_models(a: Trace, b: Trace, tokenizer, chunk: int = 64) -> ModelComparison:
    if a.token_ids != b.token_ids:
        raise LensError(f"{a.model_name} and {b.model_name} tokenize the prompt differently ({len(a.token_ids)} and "
                        f"{len(b.token_ids)} tokens): compare models that share a tokenizer")
    if a.n_layers != b.n_layers:
        raise LensError(f"{a.model_name} has {a.n_layers} layers and {b.model_name} {b.n_layers}: the cell-by-cell "
                        "comparison needs the same depth")
    Va, Vb = a.adapter.unembed.weight.shape[0], b.adapter.unembed.weight.shape[0]
    if Va != Vb:
        raise LensError(f"the vocabularies differ ({Va:,} and {Vb:,} tokens)")
    R, T = a.n_layers + 1, a.n_tokens
    prob_a, prob_b, kl = (np.empty((R, T), np.float32) for _ in range(3))
    id_a, id_b = np.empty((R, T), np.int64), np.empty((R, T), np.int64)
    for c0 in range(0, T, chunk):
        c1 = min(T, c0 + chunk)
        la = torch.log_softmax(a.adapter.readout(a.residual[:, c0:c1]).double(), -1)
        lb = torch.log_softmax(b.adapter.readout(b.residual[:, c0:c1]).double(), -1)
        pa = la.exp()
        kl[:, c0:c1] = (pa * (la - lb)).sum(-1).clamp_min(0).numpy()
        pa_max, ia = pa.max(-1)
        pb_max, ib = lb.exp().max(-1)
        prob_a[:, c0:c1], prob_b[:, c0:c1] = pa_max.numpy(), pb_max.numpy()
        id_a[:, c0:c1], id_b[:, c0:c1] = ia.numpy(), ib.numpy()
    names: dict[int, str] = {int(i): decode_token(tokenizer, int(i)) for i in np.unique(np.concatenate([id_a, id_b]))}
    return ModelComparison(
        model_a=a.model_name, model_b=b.model_name, tokens=list(a.tokens), layers=list(a.layer_labels),
        top1_a=[[names[int(i)] for i in row] for row in id_a], top1_b=[[names[int(i)] for i in row] for row in id_b],
        prob_a=prob_a, prob_b=prob_b, kl=kl, agree=id_a == id_b)
