"""Running a model with one activation replaced: the engine of activation patching.

A patch at block l changes nothing before block l, so nothing before it is run again:
one ordinary pass of the corrupted prompt records each block's input and the arguments
the model gave it (masks, rotary position embeddings, ...), and a patched run starts at
block l from the recorded input, calling the blocks themselves with those arguments.
Patched runs that start at the same block go in one batch: one batch element per patched
position (or head). Only the last position's output is read out, so the unembedding costs
one row per run. Every architecture in lens/model/architectures.py works this way: the
blocks are called exactly as the model calls them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .adapters import Adapter
from .trace import attention_implementation


@dataclass
class Recording:
    """One plain pass: every block's input, the final residual stream, and each block's call."""

    token_ids: list[int]
    residual: torch.Tensor  # [L+1, T, d]: row 0 the input of block 1, row l the output of block l
    calls: list[tuple[tuple, dict]]  # per block: the positional and keyword arguments after the hidden state
    last_logits: torch.Tensor  # [V] the model's own logits at the last position
    attn_out: list[torch.Tensor] | None = None  # per block [T, d]: what its attention writes
    mlp_out: list[torch.Tensor] | None = None  # per block [T, d]: what its MLP writes
    head_in: list[torch.Tensor] | None = None  # per block [T, H·head_dim]: the output projection's input

    @property
    def n_tokens(self) -> int:
        return self.residual.shape[1]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def record(model, adapter: Adapter, token_ids: Sequence[int], sublayers: bool = False) -> Recording:
    """Run ``token_ids`` once, keeping what patched runs start from (and, with ``sublayers``,
    what each attention block, MLP and head writes: what a patch of those sites puts in)."""
    L = adapter.n_layers
    T = len(token_ids)
    residual: list[torch.Tensor | None] = [None] * (L + 1)
    calls: list = [None] * L
    attn_out: list = [None] * L
    mlp_out: list = [None] * L
    head_in: list = [None] * L
    handles = []

    def keep(store, i, pre=False):
        def hook(module, args, out=None):
            t = args[0] if pre else _first(out)
            store[i] = t.detach().float().reshape(T, -1).clone()  # OPT's MLP runs on [B·T, d]
        return hook

    def before(i):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if i == 0:
                residual[0] = hidden[0].detach().float().clone()
            rest = args[1:] if args else ()
            kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            calls[i] = (rest, kw)
        return hook

    def after(i):
        def hook(module, args, out):
            residual[i + 1] = _first(out)[0].detach().float().clone()
        return hook

    try:
        for i, block in enumerate(adapter.blocks):
            handles.append(block.register_forward_pre_hook(before(i), with_kwargs=True))
            handles.append(block.register_forward_hook(after(i)))
            if sublayers:
                handles.append(adapter.attn_write[i].register_forward_hook(keep(attn_out, i)))
                handles.append(adapter.mlp_write[i].register_forward_hook(keep(mlp_out, i)))
                if adapter.out_proj:
                    handles.append(adapter.out_proj[i].register_forward_pre_hook(keep(head_in, i, pre=True)))
        device = next(model.parameters()).device
        ids = torch.tensor([list(token_ids)], device=device)
        with attention_implementation(model, "sdpa"):
            out = model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return Recording(token_ids=list(token_ids), residual=torch.stack(residual), calls=calls,
                     last_logits=out.logits[0, -1].detach().float(),
                     attn_out=attn_out if sublayers else None, mlp_out=mlp_out if sublayers else None,
                     head_in=head_in if sublayers and adapter.out_proj else None)


def _batched(value, n: int):
    """A recorded argument for a batch of ``n``: tensors with a batch dimension of 1 expanded."""
    if isinstance(value, torch.Tensor):
        return value.expand(n, *value.shape[1:]) if value.dim() and value.shape[0] == 1 else value
    if isinstance(value, tuple):
        return tuple(_batched(v, n) for v in value)
    if isinstance(value, list):
        return [_batched(v, n) for v in value]
    return value


Patch = Callable[[torch.Tensor], torch.Tensor]  # a batch of module outputs in, the patched batch out


@torch.no_grad()
def run_from(model, adapter: Adapter, rec: Recording, start: int, hidden: torch.Tensor,
             hooks: Sequence[tuple[torch.nn.Module, str, Callable]] = ()) -> torch.Tensor:
    """Blocks ``start``… (0-based) on a batch of block inputs ``hidden`` [n, T, d]; the logits at the
    last position [n, V]. ``hooks``: (module, "pre" or "post", fn) fitted for the run only: "post"
    replaces a module's output by ``fn(output)``, "pre" its first input by ``fn(input)``."""
    n = hidden.shape[0]
    handles = []
    for module, kind, fn in hooks:
        if kind == "post":
            handles.append(module.register_forward_hook(lambda m, a, out, fn=fn: _replace_first(out, fn)))
        else:
            handles.append(module.register_forward_pre_hook(lambda m, args, fn=fn: (fn(args[0]), *args[1:])))
    try:
        with attention_implementation(model, "sdpa"):
            h = hidden.to(rec.residual.dtype)
            for i in range(start, adapter.n_layers):
                rest, kw = rec.calls[i]
                h = _first(adapter.blocks[i](h, *_batched(rest, n), **_batched(kw, n)))
    finally:
        for handle in handles:
            handle.remove()
    return adapter.readout(h[:, -1]).float()


def _replace_first(out, fn):
    if isinstance(out, tuple):
        return (fn(out[0]), *out[1:])
    return fn(out)
