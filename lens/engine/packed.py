"""Many residual-stream patches of one recorded run in few block calls (the fast path of the patching grid).

A patch at row r, position p leaves positions before p as in the recorded (corrupted) run at every
block, so only positions p… are run, attending to the recorded keys and values before p. The runs
of up to ROWS_PER_PACK rows go through each block as one sequence, each token masked to see the
recorded prefix of its own run and its own run's earlier tokens. Blocks that take their positions
as rotary embeddings (the Llama family) can run so; ``packs`` says whether a recording can.
"""
from __future__ import annotations

import torch

from ..jobs import checkpoint
from .hooks import HookEngine, Recording, attention_implementation, first

ROWS_PER_PACK = 8  # rows whose runs share one block call: fewer calls, but attention grows with the pack


class _Prefix:
    """The cache of a packed run: at every block, the recorded run's keys and values come first."""

    def __init__(self, keys_values: list[tuple[torch.Tensor, torch.Tensor]]):
        self.keys_values = keys_values

    def update(self, keys, values, layer_idx, *args, **kwargs):
        k, v = self.keys_values[layer_idx]
        return torch.cat([k.to(keys.dtype), keys], 2), torch.cat([v.to(values.dtype), values], 2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys_values[layer_idx][0].shape[2]


def packs(rec: Recording) -> bool:
    """Whether patches of ``rec`` can run packed: rotary positions as an argument and a kept cache."""
    return (rec.keys_values is not None and rec.cache_names is not None
            and all(not rest and "position_embeddings" in kw and names
                    for (rest, kw), names in zip(rec.calls, rec.cache_names)))


def _pack_mask(tok_run: torch.Tensor, tok_pos: torch.Tensor, run_p: torch.Tensor, T: int) -> torch.Tensor:
    """[1, 1, Q, T + Q] additive mask: a token sees the recorded keys before its run's patched position,
    and its own run's tokens up to itself."""
    sees_prefix = torch.arange(T, device=tok_pos.device)[None, :] < run_p[:, None]
    sees_own = (tok_run[None, :] == tok_run[:, None]) & (tok_pos[None, :] <= tok_pos[:, None])
    allowed = torch.cat([sees_prefix, sees_own], 1)
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=tok_pos.device)
    return mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)[None, None]


@torch.no_grad()
def packed_resid_logits(engine: HookEngine, rec: Recording, patches: list[tuple[list[int], torch.Tensor] | None],
                        columns: list[int] | None = None) -> torch.Tensor:
    """[L, T, V] last-position logits of residual patches of ``rec``: ``patches[r]`` is None (row r unchanged)
    or (positions, vectors [n, d]) put into row r (the input of block r + 1), one run per position; a
    position not patched keeps the recorded run's logits. Only ``columns`` of V when given."""
    checkpoint()
    a = engine.adapter
    L, T = a.n_layers, rec.n_tokens
    device = rec.residual.device
    prefix = _Prefix(rec.keys_values)
    base = a.readout(rec.residual[L, -1:], columns)[0].float()
    out = base.expand(L, T, -1).clone()
    runs: list[dict | None] = []
    for r in range(L):
        if patches[r] is None:
            runs.append(None)
            continue
        ps, vectors = patches[r]
        pos = torch.cat([torch.arange(p, T, device=device) for p in ps])
        run_p = torch.cat([torch.full((T - p,), p, device=device) for p in ps])
        hidden = rec.residual[r][pos].clone()
        lengths = torch.tensor([T - p for p in ps], device=device)
        hidden[torch.cumsum(lengths, 0) - lengths] = vectors.to(hidden.dtype)
        runs.append({"ps": ps, "pos": pos, "run_p": run_p, "run": run_p + r * T, "hidden": hidden})
    with engine.lock, attention_implementation(engine.model, "sdpa"):
        for l in range(L):
            rest, kw = rec.calls[l]
            cos, sin = kw["position_embeddings"]
            active = [r for r in range(l + 1) if runs[r] is not None]
            for g in range(0, len(active), ROWS_PER_PACK):
                group = [runs[r] for r in active[g:g + ROWS_PER_PACK]]
                pos = torch.cat([x["pos"] for x in group])
                hidden = torch.cat([x["hidden"] for x in group])
                call = {**kw, "position_embeddings": (cos[:, pos], sin[:, pos]), "position_ids": pos[None],
                        "attention_mask": _pack_mask(torch.cat([x["run"] for x in group]), pos,
                                                     torch.cat([x["run_p"] for x in group]), T),
                        "use_cache": False, **{name: prefix for name in rec.cache_names[l]}}
                call.pop("cache_position", None)
                hidden = first(a.blocks[l](hidden[None], **call))[0]
                for x, h in zip(group, torch.split(hidden, [len(x["pos"]) for x in group])):
                    x["hidden"] = h
    for r, x in enumerate(runs):
        if x is not None:
            out[r, x["ps"]] = a.readout(x["hidden"][x["pos"] == T - 1], columns).float()
    return out
