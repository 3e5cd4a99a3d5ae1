"""Which residual-stream vectors a projection or a geometry metric looks at.

A *point* is one token of one text; it has a vector at every row of the lens
(row 0 = embeddings, row l = after block l). Several texts (a corpus) are
traced separately and their points pooled. By default the first token of each
text is left out (its norm dwarfs the rest: the attention sink), and so are the
tokenizer's special tokens ([CLS], [SEP], BOS, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from ..errors import LensError
from ..engine.trace import Trace


@dataclass
class PointSet:
    X: torch.Tensor  # [R, N, d] float32, the raw residual stream of every kept point
    tokens: list[str]  # [N] decoded token of each point
    token_ids: list[int]
    text_index: list[int]  # [N] which text the point comes from
    positions: list[int]  # [N] its position inside that text
    n_texts: int
    layers: list[str]
    model: str
    n_layers: int
    first_norms: torch.Tensor  # [R, n_texts] norm of each text's first token (kept or not)


def select_points(traces: Sequence[Trace], *, skip_first: bool = True, skip_special: bool = True,
                  special_ids: Iterable[int] = ()) -> PointSet:
    """Pool the kept tokens of ``traces`` (each must hold the residual stream)."""
    if not traces:
        raise LensError("no text to look at: give a prompt or at least one sentence")
    special = set(int(i) for i in special_ids) if skip_special else set()
    blocks, tokens, ids, text_index, positions, firsts = [], [], [], [], [], []
    for k, tr in enumerate(traces):
        if tr.residual is None:
            raise LensError("this trace holds no residual stream")
        keep = [p for p, tid in enumerate(tr.token_ids)
                if not (skip_first and p == 0) and int(tid) not in special]
        firsts.append(tr.residual[:, 0, :].norm(dim=-1))
        if not keep:
            continue
        blocks.append(tr.residual[:, keep, :])
        tokens += [tr.tokens[p] for p in keep]
        ids += [int(tr.token_ids[p]) for p in keep]
        text_index += [k] * len(keep)
        positions += keep
    n = len(tokens)
    if n < 2:
        left_out = [w for w, on in (("the first token", skip_first), ("special tokens", skip_special)) if on]
        what = "prompt" if len(traces) == 1 else "texts"
        raise LensError(
            f"the {what} leave{'s' if what == 'prompt' else ''} {n} token{'s' if n != 1 else ''} to look at"
            + (f" after leaving out {' and '.join(left_out)}" if left_out else "")
            + "; at least 2 are needed: type a longer prompt"
            + (" or include the first token" if skip_first else "")
        )
    first = traces[0]
    return PointSet(
        X=torch.cat(blocks, dim=1).float(), tokens=tokens, token_ids=ids, text_index=text_index,
        positions=positions, n_texts=len(traces), layers=first.layer_labels, model=first.model_name,
        n_layers=first.n_layers, first_norms=torch.stack(firsts, dim=1),
    )
