"""The logit lens reduced where the model runs: each row's logits become top-k, entropy, KL, the target's
rank and probability and the next token's loss before anything travels, so a remote engine sends back
``[rows, T, k]``, never ``[rows, T, vocab]``.

``reduction(...)`` is the function an engine applies to its reads (torch operations and the read-out
modules only: on NDIF it runs where LayerLens is not installed); ``lens_result(...)`` turns what it
returns into the same LogitLensResult as ``logit_lens``.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ..errors import LensError
from ..model.tokens import decode_token, token_strings
from ..options import LensOptions
from ..results import LogitLensResult
from .early_exit import saturation_rows
from .logit_lens import decode_table


def _reduce(reads, readout, rows, k, target_id, next_ids, alternatives=0):
    """Per row (last first: every row's KL needs the final distribution) the reductions of its logits."""
    out = {"ids": [], "probs": [], "ent": [], "kl": [], "rank": [], "tprob": [], "loss": [], "arank": [],
           "aprob": []}
    nxt = torch.tensor(next_ids)
    lp_final = None
    tgt = None
    alt = None
    for name in rows[::-1]:
        z = readout.logits(reads[name][0])
        lp = z.log_softmax(-1)
        if lp_final is None:
            lp_final = lp
            tgt = lp.argmax(-1) if target_id is None else torch.full((lp.shape[0],), target_id)
            out["target"] = tgt
            alt = lp[-1].topk(min(alternatives, lp.shape[-1])).indices  # the last position's top-n
            out["alternatives"] = alt
        tv, ti = lp.topk(k, -1)
        zt = z.gather(-1, tgt[:, None])
        out["ids"].append(ti)
        out["probs"].append(tv.exp())
        out["ent"].append(-(lp.exp() * lp).sum(-1))
        out["kl"].append((lp_final.exp() * (lp_final - lp)).sum(-1))
        out["rank"].append((z > zt).sum(-1) + 1)
        out["tprob"].append(lp.gather(-1, tgt[:, None])[:, 0].exp())
        out["loss"].append(-lp.gather(-1, nxt[:, None])[:, 0])
        za = z[:, alt]  # [T, n]
        out["arank"].append(torch.stack([(z > za[:, j:j + 1]).sum(-1) + 1 for j in range(za.shape[1])], -1)
                            if za.shape[1] else torch.zeros(z.shape[0], 0, dtype=torch.long))
        out["aprob"].append(lp[:, alt].exp())
    out["top1"] = reads["logits"][0].argmax(-1)
    return out


def window(ids: list[int], options: LensOptions, vocab: int) -> tuple[int, int]:
    """The checked [start, stop) window of ``options`` on a prompt of ``ids``."""
    T = len(ids)
    start, stop = options.positions or (0, T)
    if not (0 <= start < stop <= T):
        raise LensError(f"position window {start}..{stop} is outside the prompt's {T} tokens")
    if not 1 <= int(options.top_k) <= min(100, vocab):
        raise LensError(f"top-k must be between 1 and {min(100, vocab)}, not {options.top_k}")
    return start, stop


def reduction(rows: list[str], ids: list[int], start: int, stop: int, k: int, target_id: int | None,
              alternatives: int = 0):
    """The reduce function for rows ``rows`` (site names, row 0 first) at positions start…stop − 1."""
    nxt = list(ids[start + 1:stop + 1])
    return partial(_reduce, rows=rows, k=int(k), target_id=target_id,
                   next_ids=nxt + [0] * (stop - start - len(nxt)), alternatives=int(alternatives))


def lens_result(reduced: dict, model: str, tokenizer, ids: list[int], start: int, stop: int, n_layers: int,
                options: LensOptions, note: str) -> LogitLensResult:
    def rows(name):
        return torch.stack(list(reduced[name])[::-1]).cpu().numpy()  # computed from the last row down
    top_ids = rows("ids").astype(np.int64)
    next_loss = rows("loss").astype(np.float32)
    next_loss[:, len(ids[start + 1:stop + 1]):] = np.nan
    t_ids = reduced["target"].cpu().numpy().astype(np.int64)
    alt = reduced["alternatives"].cpu().numpy().astype(np.int64)
    table = decode_table(tokenizer, np.concatenate([top_ids.ravel(), t_ids, alt]))
    a_rank = rows("arank").astype(np.int64).transpose(2, 0, 1)  # [rows, T, n] → [n, rows, T]
    a_prob = rows("aprob").astype(np.float32).transpose(2, 0, 1)
    out_top1 = reduced["top1"].cpu().numpy().astype(np.int64)
    return LogitLensResult(
        model=model, n_layers=n_layers, tokens=token_strings(tokenizer, list(ids)), token_ids=list(ids),
        layers=["emb"] + [str(i) for i in range(1, n_layers + 1)], positions=list(range(start, stop)),
        top_ids=top_ids, top_tokens=[[[table[int(i)] for i in cell] for cell in row] for row in top_ids],
        top_probs=rows("probs").astype(np.float32), entropy=rows("ent").astype(np.float32),
        kl_to_final=np.maximum(rows("kl"), 0).astype(np.float32), target_ids=t_ids,
        target_tokens=[table[int(i)] for i in t_ids], target_rank=rows("rank").astype(np.int64),
        target_prob=rows("tprob").astype(np.float32), next_token_loss=next_loss,
        final_prediction=[decode_token(tokenizer, int(i)) for i in out_top1],
        exit_layer=saturation_rows(top_ids[:, :, 0], out_top1), lens="logit", target_note=note,
        options=options.key(), alternative_ids=alt, alternative_tokens=[table[int(i)] for i in alt],
        alternative_rank=np.ascontiguousarray(a_rank), alternative_prob=np.ascontiguousarray(a_prob))

