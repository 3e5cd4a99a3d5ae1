"""The residual stream of a batch of equal-length token chunks, every lens row, in one engine run."""
from __future__ import annotations

from typing import Sequence

import torch

from ..engine.base import Read
from ..engine.sites import resid_rows


def residual_rows(engine, chunks: Sequence[Sequence[int]]) -> torch.Tensor:
    """[L+1, B·S, d] float32: row 0 the embedding output, row l the stream after block l (before the
    final norm), for B chunks of S tokens each, flattened position by position."""
    a = engine.adapter
    L = a.n_layers
    rows = torch.empty(L + 1, len(chunks) * len(chunks[0]), a.d_model)
    engine.run([list(c) for c in chunks], read={s: Read(into=rows[r]) for r, s in enumerate(resid_rows(L))},
               logits="none")
    return rows


def batches(chunks: Sequence[list[int]], batch: int):
    """Chunks grouped by length (only the last chunk may be shorter), ``batch`` at a time."""
    by_len: dict[int, list[list[int]]] = {}
    for c in chunks:
        by_len.setdefault(len(c), []).append(c)
    for group in by_len.values():
        for i in range(0, len(group), batch):
            yield group[i:i + batch]
