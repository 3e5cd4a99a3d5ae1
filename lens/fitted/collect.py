"""The residual stream of a batch of equal-length token chunks, every lens row, in one forward pass."""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from ..model.adapters import Adapter
from ..model.trace import _first_tensor, _keeps_some_logits, attention_implementation


@torch.no_grad()
def residual_rows(model, adapter: Adapter, chunks: Sequence[Sequence[int]], lock=None) -> torch.Tensor:
    """[L+1, B·S, d] float32: row 0 the embedding output, row l the stream after block l (before the
    final norm), for B chunks of S tokens each, flattened position by position."""
    L = adapter.n_layers
    rows: list[torch.Tensor | None] = [None] * (L + 1)

    def keep(index: int):
        def hook(module, args, out):
            t = _first_tensor(out)
            rows[index] = t.detach().float().reshape(-1, t.shape[-1])
        return hook

    def keep_input(module, args, kwargs):
        t = args[0] if args else kwargs["hidden_states"]
        rows[0] = t.detach().float().reshape(-1, t.shape[-1])

    with lock if lock is not None else contextlib.nullcontext():
        _run(model, adapter, chunks, keep, keep_input)
    return torch.stack([r.cpu() for r in rows])


def _run(model, adapter, chunks, keep, keep_input) -> None:
    handles = [adapter.blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True)]
    handles += [b.register_forward_hook(keep(i + 1)) for i, b in enumerate(adapter.blocks)]
    try:
        device = next(model.parameters()).device
        ids = torch.tensor([list(c) for c in chunks], device=device)
        extra = {"logits_to_keep": 1} if _keeps_some_logits(model) else {}
        with attention_implementation(model, "sdpa"):
            model(input_ids=ids, use_cache=False, **extra)
    finally:
        for h in handles:
            h.remove()


def batches(chunks: Sequence[list[int]], batch: int):
    """Chunks grouped by length (only the last chunk may be shorter), ``batch`` at a time."""
    by_len: dict[int, list[list[int]]] = {}
    for c in chunks:
        by_len.setdefault(len(c), []).append(c)
    for group in by_len.values():
        for i in range(0, len(group), batch):
            yield group[i:i + batch]
