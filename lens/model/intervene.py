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
    keys_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per block: its attention's keys, values
    cache_names: list[list[str]] | None = None  # per block: the keyword its cache came by ("past_key_values", ...)
    attn_out: list[torch.Tensor] | None = None  # per block [T, d]: what its attention writes
    mlp_out: list[torch.Tensor] | None = None  # per block [T, d]: what its MLP writes
    head_in: list[torch.Tensor] | None = None  # per block [T, H·head_dim]: the output projection's input

    @property
    def n_tokens(self) -> int:
        return self.residual.shape[1]


def _is_cache(value) -> bool:
    from transformers.cache_utils import Cache

    return isinstance(value, Cache)


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
    cache_names: list = [[] for _ in range(L)]
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
            # The run's own cache (kept below) is no argument for patched runs: they get their own, or none.
            rest = tuple(None if _is_cache(a) else a for a in (args[1:] if args else ()))
            kw = {k: (None if _is_cache(v) else v) for k, v in kwargs.items() if k != "hidden_states"}
            cache_names[i] = [k for k, v in kwargs.items() if _is_cache(v)]
            if "use_cache" in kw:
                kw["use_cache"] = False
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
            out = model(input_ids=ids, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    cache = getattr(out, "past_key_values", None)
    layers = getattr(cache, "layers", None)
    keys_values = ([(layer.keys.detach(), layer.values.detach()) for layer in layers]
                   if layers is not None and len(layers) == L and all(hasattr(x, "keys") for x in layers) else None)
    return Recording(token_ids=list(token_ids), residual=torch.stack(residual), calls=calls,
                     last_logits=out.logits[0, -1].detach().float(), keys_values=keys_values, cache_names=cache_names,
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


class _Prefix:
    """The cache of a packed run: at every block, the corrupted run's keys and values come first."""

    def __init__(self, keys_values: list[tuple[torch.Tensor, torch.Tensor]]):
        self.keys_values = keys_values

    def update(self, keys, values, layer_idx, *args, **kwargs):
        k, v = self.keys_values[layer_idx]
        return torch.cat([k.to(keys.dtype), keys], 2), torch.cat([v.to(values.dtype), values], 2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys_values[layer_idx][0].shape[2]


def packs(rec: Recording) -> bool:
    """Whether the residual grid can run packed: blocks that take their positions as rotary embeddings
    (the Llama family) and a kept cache. Other blocks see positions only through the embeddings."""
    return (rec.keys_values is not None and rec.cache_names is not None
            and all(not rest and "position_embeddings" in kw and names
                    for (rest, kw), names in zip(rec.calls, rec.cache_names)))


ROWS_PER_PACK = 8  # rows whose runs share one block call: fewer calls, but attention grows with the pack


def _pack_mask(tok_run: torch.Tensor, tok_pos: torch.Tensor, run_p: torch.Tensor, T: int) -> torch.Tensor:
    """[1, 1, Q, T + Q] additive mask: a token sees the corrupted keys before its run's patched position,
    and its own run's tokens up to itself."""
    sees_prefix = torch.arange(T, device=tok_pos.device)[None, :] < run_p[:, None]
    sees_own = (tok_run[None, :] == tok_run[:, None]) & (tok_pos[None, :] <= tok_pos[:, None])
    allowed = torch.cat([sees_prefix, sees_own], 1)
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=tok_pos.device)
    return mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)[None, None]


@torch.no_grad()
def packed_residual_logits(model, adapter: Adapter, clean: Recording, corrupt: Recording,
                           token_ids: list[int] | None = None) -> torch.Tensor:
    """[L, T, V] last-position logits of every residual-stream patch (row r < L, position p); only the
    columns of ``token_ids`` when given.

    A patch at row r, position p leaves positions before p as in the corrupted run at every block, so
    only positions p… are run, attending to the corrupted run's keys and values before p; a patch that
    puts in the vector already there is not run at all (its logits are the corrupted run's). The runs of
    up to ROWS_PER_PACK rows go through each block as one sequence, each token masked to see the
    corrupted prefix of its own run and its own run's earlier tokens."""
    L, T = adapter.n_layers, corrupt.n_tokens
    device = corrupt.residual.device
    prefix = _Prefix(corrupt.keys_values)
    base = adapter.readout(corrupt.residual[L, -1:], token_ids)[0].float()
    out = base.expand(L, T, -1).clone()
    # Per row: the runs to make (positions whose clean vector differs), their tokens and hidden states.
    runs: list[dict] = []
    for r in range(L):
        ps = [p for p in range(T) if not torch.equal(clean.residual[r][p], corrupt.residual[r][p])]
        if not ps:
            runs.append(None)
            continue
        pos = torch.cat([torch.arange(p, T, device=device) for p in ps])
        run_p = torch.cat([torch.full((T - p,), p, device=device) for p in ps])
        hidden = corrupt.residual[r][pos].clone()
        starts = torch.cumsum(torch.tensor([T - p for p in ps], device=device), 0) - torch.tensor(
            [T - p for p in ps], device=device)
        hidden[starts] = clean.residual[r][ps]
        runs.append({"ps": ps, "pos": pos, "run_p": run_p, "run": run_p + r * T, "hidden": hidden})
    with attention_implementation(model, "sdpa"):
        for l in range(L):
            rest, kw = corrupt.calls[l]
            cos, sin = kw["position_embeddings"]
            active = [r for r in range(l + 1) if runs[r] is not None]
            for g in range(0, len(active), ROWS_PER_PACK):
                group = [runs[r] for r in active[g:g + ROWS_PER_PACK]]
                pos = torch.cat([x["pos"] for x in group])
                hidden = torch.cat([x["hidden"] for x in group])
                call = {**kw, "position_embeddings": (cos[:, pos], sin[:, pos]), "position_ids": pos[None],
                        "attention_mask": _pack_mask(torch.cat([x["run"] for x in group]), pos,
                                                     torch.cat([x["run_p"] for x in group]), T),
                        "use_cache": False, **{name: prefix for name in corrupt.cache_names[l]}}
                call.pop("cache_position", None)
                hidden = _first(adapter.blocks[l](hidden[None], **call))[0]
                for x, h in zip(group, torch.split(hidden, [len(x["pos"]) for x in group])):
                    x["hidden"] = h
    for r, x in enumerate(runs):
        if x is not None:
            out[r, x["ps"]] = adapter.readout(x["hidden"][x["pos"] == T - 1], token_ids).float()
    return out


def _replace_output(module: torch.nn.Module, fn) -> torch.utils.hooks.RemovableHandle:
    return module.register_forward_hook(lambda m, a, out: _replace_first(out, fn))


def ablation_hooks(adapter: Adapter, ablation, means: Recording | None) -> list:
    """Hooks (to remove after the run) that make the model ``ablation`` describes (lens/options.py).
    ``means``: a recording with sublayers of the same prompt, for mean ablation."""
    handles = []
    mean = ablation.mode == "mean"
    by_layer: dict[int, list[int]] = {}
    for l, h in ablation.heads:
        by_layer.setdefault(l - 1, []).append(h)
    hd = adapter.head_dim
    for i, heads in by_layer.items():
        src = means.head_in[i].mean(0) if mean else None

        def pre(m, args, heads=heads, src=src):
            x = args[0].clone()
            for h in heads:
                x[..., h * hd:(h + 1) * hd] = 0 if src is None else src[h * hd:(h + 1) * hd].to(x.dtype)
            return (x, *args[1:])
        handles.append(adapter.out_proj[i].register_forward_pre_hook(pre))
    for l in ablation.mlp:
        src = means.mlp_out[l - 1].mean(0) if mean else None
        handles.append(_replace_output(adapter.mlp_write[l - 1],
                                       lambda x, src=src: torch.zeros_like(x) if src is None else src.to(x.dtype).expand_as(x)))
    for l in ablation.skip:  # the block's output is its input: the residual stream passes it by
        block = adapter.blocks[l - 1]
        handles.append(block.register_forward_hook(
            lambda m, args, kwargs, out: _replace_first(out, lambda _: args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True))
    if ablation.swap is not None:
        handles += _swap_hooks(adapter, *(l - 1 for l in ablation.swap))
    return handles


def _swap_hooks(adapter: Adapter, a: int, b: int) -> list:
    """Blocks a and b run in each other's place: block a's position applies b's weights, and the reverse
    (each called with the arguments the model gives that position)."""
    def other(j):
        def hook(m, args, kwargs, out):
            return adapter.blocks[j].forward(*args, **kwargs)  # .forward: no hooks of block j fire here
        return hook
    return [adapter.blocks[a].register_forward_hook(other(b), with_kwargs=True),
            adapter.blocks[b].register_forward_hook(other(a), with_kwargs=True)]


def cell_patch_hook(adapter: Adapter, clean: Recording, row: int, position: int):
    """A hook putting the clean run's residual-stream vector at (``row``, ``position``) into a run."""
    vector = clean.residual[row, position]

    def fn(x):
        x = x.clone()
        x[:, position] = vector.to(x.dtype)
        return x
    if row == 0:
        return adapter.blocks[0].register_forward_pre_hook(
            lambda m, args, kwargs: ((fn(args[0]), *args[1:]), kwargs) if args
            else (args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}), with_kwargs=True)
    return _replace_output(adapter.blocks[row - 1], fn)
