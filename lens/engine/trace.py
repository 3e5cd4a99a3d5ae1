"""A trace: what one pass of one prompt produced, for the single-prompt views.

``capture(engine, ids, spec)`` turns a CaptureSpec (what a view needs) into named-site
reads of one ``engine.run`` and the reads into a Trace. Every engine gives the same Trace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..errors import LensError
from ..model.adapters import Adapter
from .base import Read, head_mean, head_mean_lower
from .head_means import HeadMeans
from .sites import resid_rows


@dataclass(frozen=True)
class CaptureSpec:
    """What a forward pass keeps. Long prompts pay only for what is asked."""

    residual: bool = True
    sublayers: bool = False  # attention-block and MLP-block writes to the residual
    attentions: bool | tuple[int, ...] = False  # True: every layer; a tuple: those blocks (0-based)
    attention_mean: bool = False  # keep every layer's head-averaged map (``Trace.head_means``) instead of [H, T, T]
    values: bool | tuple[int, ...] = False  # value vectors [T, KV, head_dim] of these blocks
    neurons: bool | tuple[int, ...] = False  # MLP neuron activations (the down projection's input) [T, N]

    @staticmethod
    def _layers(which: bool | tuple[int, ...], n_layers: int) -> tuple[int, ...]:
        if which is True:
            return tuple(range(n_layers))
        if not which:
            return ()
        return tuple(sorted(set(int(l) for l in which)))

    def attention_layers(self, n_layers: int) -> tuple[int, ...]:
        return self._layers(self.attentions, n_layers)

    def value_layers(self, n_layers: int) -> tuple[int, ...]:
        return self._layers(self.values, n_layers)

    def neuron_layers(self, n_layers: int) -> tuple[int, ...]:
        return self._layers(self.neurons, n_layers)


@dataclass
class Trace:
    """What one forward pass of one prompt produced.

    Rows of ``residual`` follow the lens: row 0 is the embedding output, row l
    the residual stream after block l (1-based), so there are n_layers + 1.
    """

    model_name: str
    fingerprint: str
    token_ids: list[int]
    tokens: list[str]
    n_layers: int
    output_top1: torch.Tensor  # [T] the model's own top-1 next-token id per position
    residual: torch.Tensor | None = None  # [L+1, T, d]
    attn_out: torch.Tensor | None = None  # [L, T, d]
    mlp_out: torch.Tensor | None = None  # [L, T, d]
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [H, T, T] (none if attention_mean)
    head_means: HeadMeans | None = None  # with attention_mean: the head-averaged maps of the attention layers asked
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [T, KV, head_dim]
    neurons: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [T, N]
    adapter: Adapter | None = field(default=None, repr=False, compare=False)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def layer_labels(self) -> list[str]:
        return ["emb"] + [str(i) for i in range(1, self.n_layers + 1)]


@torch.no_grad()
def top1_ids(adapter: Adapter, last: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """[T] argmax of the model's logits, from the last block's output, ``rows`` positions at a time."""
    return torch.cat([adapter.readout(last[i:i + rows]).argmax(-1) for i in range(0, len(last), rows)]).cpu()


def capture(engine, token_ids: Sequence[int], spec: CaptureSpec, *, model_name: str = "", fingerprint: str = "",
            tokens: list[str] | None = None, write: dict | None = None) -> Trace:
    """Run ``engine`` once on ``token_ids`` (with the edits ``write``, site -> edit) and keep what ``spec``
    asks for."""
    a: Adapter = engine.adapter
    L, T = a.n_layers, len(token_ids)
    if spec.sublayers and a.spec.is_encoder:
        raise LensError(f"{a.model_type} normalises after each sub-block (post-LN): its attention and MLP "
                        "outputs are not additive writes to a residual stream")
    value_layers, neuron_layers = spec.value_layers(L), spec.neuron_layers(L)
    if (value_layers or neuron_layers) and not a.value_proj:
        raise LensError(f"{a.model_type} keeps no value or neuron data: {a.routes_unavailable()}")
    read: dict[str, Read] = {}
    # One allocation per stack, filled site by site: no stacked copy (which would double the residual
    # stream's 146 MB at 2048 tokens for a moment).
    residual = attn_out = mlp_out = None
    if spec.residual:
        residual = torch.empty(L + 1, T, a.d_model)
        read.update({s: Read(into=residual[r]) for r, s in enumerate(resid_rows(L))})
    if spec.sublayers:
        attn_out, mlp_out = torch.empty(L, T, a.d_model), torch.empty(L, T, a.d_model)
        for i in range(L):
            read[f"attn_out.{i + 1}"] = Read(into=attn_out[i])
            read[f"mlp_out.{i + 1}"] = Read(into=mlp_out[i])
    att_layers = spec.attention_layers(L)
    # Head-averaged as it is read (every layer's [H, T, T] is 4.5 GB at 2048 tokens; the local engine holds none),
    # into one stack: no stacked copy afterwards. A causal model's as lower triangles (0.25 GB at 2048 tokens, not 0.5).
    means = HeadMeans.empty(len(att_layers), T, lower=a.is_causal) if spec.attention_mean and att_layers else None
    for k, i in enumerate(att_layers):
        read[f"attn_pattern.{i + 1}"] = (Read(map=head_mean_lower if means.lower else head_mean, into=means.data[k])
                                         if means is not None else Read())
    read.update({f"value.{i + 1}": Read() for i in value_layers})
    read.update({f"mlp_act.{i + 1}": Read() for i in neuron_layers})
    # The model's own [T, vocab] logits (0.4 GB at 2048 tokens) are not needed: only their argmax,
    # which the kept residual stream gives in small chunks.
    out = engine.run(token_ids, read=read, write=write, logits="last")
    r = out.reads
    if spec.residual and a.has_lm_head:
        output_top1 = top1_ids(a, residual[L])
    else:  # no residual stream: nobody asked for the predictions
        output_top1 = torch.empty(0, dtype=torch.long)
    return Trace(
        model_name=model_name, fingerprint=fingerprint, token_ids=list(token_ids),
        tokens=tokens if tokens is not None else [], n_layers=L, output_top1=output_top1,
        residual=residual, attn_out=attn_out, mlp_out=mlp_out,
        attentions={} if means is not None else {i: r[f"attn_pattern.{i + 1}"][0] for i in att_layers},
        head_means=means,
        values={i: r[f"value.{i + 1}"][0] for i in value_layers},
        neurons={i: r[f"mlp_act.{i + 1}"][0] for i in neuron_layers},
        adapter=a,
    )
