"""One forward pass with hooks: the residual stream, sub-block writes, attention, values and MLP neurons.

Every analysis gets its data from one ``capture()``: a CaptureSpec says what to keep.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..errors import AttentionWeightsUnavailable, LensError
from .adapters import Adapter


@dataclass(frozen=True)
class CaptureSpec:
    """What a forward pass keeps. Long prompts pay only for what is asked."""

    residual: bool = True
    sublayers: bool = False  # attention-block and MLP-block writes to the residual
    attentions: bool | tuple[int, ...] = False  # True: every layer; a tuple: those blocks (0-based)
    attention_mean: bool = False  # keep the head-averaged [T, T] per layer instead of [H, T, T]
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
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [H, T, T] ([T, T] if attention_mean)
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [T, KV, head_dim]
    neurons: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [T, N]
    adapter: Adapter | None = field(default=None, repr=False, compare=False)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def layer_labels(self) -> list[str]:
        return ["emb"] + [str(i) for i in range(1, self.n_layers + 1)]


@contextlib.contextmanager
def attention_implementation(model, wanted: str):
    """Run the block with ``wanted`` attention ("sdpa" or "eager"), then restore the model's own.

    Only eager attention returns the weights, and it builds every [heads, T, T] score
    matrix; a pass that keeps no weights uses PyTorch's fused SDPA instead (at 2048
    tokens several times faster and without the T² memory). Models that cannot switch
    stay as they are.
    """
    current = getattr(model.config, "_attn_implementation", None)
    if current == wanted or current not in ("eager", "sdpa") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    try:
        model.set_attn_implementation(wanted)
    except Exception:  # this architecture has no SDPA path: stay eager
        yield
        return
    try:
        yield
    finally:
        model.set_attn_implementation(current)


class _Rows:
    """[n, T, d] float32 filled row by row as the hooks fire: one allocation, no stacked copy
    (which would double the residual stream's 146 MB at 2048 tokens for a moment)."""

    def __init__(self, n: int):
        self.n = n
        self.rows: torch.Tensor | None = None

    def __setitem__(self, i: int, x: torch.Tensor) -> None:
        if self.rows is None:
            self.rows = torch.empty(self.n, *x.shape, dtype=torch.float32, device=x.device)
        self.rows[i].copy_(x.detach())


def _keeps_some_logits(model) -> bool:
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def _top1(adapter: Adapter, last: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """[T] argmax of the model's logits, from the last block's output, ``rows`` positions at a time."""
    return torch.cat([adapter.readout(last[i:i + rows]).argmax(-1) for i in range(0, len(last), rows)]).cpu()


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def capture(model, adapter: Adapter, token_ids: Sequence[int], spec: CaptureSpec,
            *, model_name: str = "", fingerprint: str = "", tokens: list[str] | None = None) -> Trace:
    """Run ``model`` once on ``token_ids`` and keep what ``spec`` asks for."""
    L = adapter.n_layers
    if spec.sublayers and adapter.spec.is_encoder:
        raise LensError(
            f"{adapter.model_type} normalises after each sub-block (post-LN): its attention and MLP "
            "outputs are not additive writes to a residual stream"
        )
    residual, attn_out, mlp_out = _Rows(L + 1), _Rows(L), _Rows(L)
    attentions: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    neurons: dict[int, torch.Tensor] = {}
    value_layers, neuron_layers = spec.value_layers(L), spec.neuron_layers(L)
    if (value_layers or neuron_layers) and not adapter.value_proj:
        raise LensError(f"{adapter.model_type} keeps no value or neuron data: {adapter.routes_unavailable()}")
    handles = []

    def on_block_input(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        residual[0] = hidden[0]

    def store(target: _Rows, index: int):
        def hook(module, args, out):
            # Batch is 1; OPT's MLP works on a flattened [B*T, d] view.
            t = _first_tensor(out)
            target[index] = t.reshape(-1, t.shape[-1])
        return hook

    def store_attention(index: int):
        def hook(module, args, out):
            weights = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
            if weights is None:
                raise AttentionWeightsUnavailable(
                    f"{model_name or adapter.model_type} returned no attention weights "
                    "(it must be loaded with eager attention)"
                )
            w = weights[0].detach().float()
            attentions[index] = w.mean(0) if spec.attention_mean else w
        return hook

    def store_values(index: int):
        def hook(module, args, out):
            values[index] = adapter.values_from_output(out.detach().float())
        return hook

    def store_neurons(index: int):
        def hook(module, args):
            x = args[0].detach().float()
            neurons[index] = x.reshape(-1, x.shape[-1])
        return hook

    try:
        if spec.residual:
            handles.append(adapter.blocks[0].register_forward_pre_hook(on_block_input, with_kwargs=True))
            for i, block in enumerate(adapter.blocks):
                handles.append(block.register_forward_hook(store(residual, i + 1)))
        if spec.sublayers:
            for i in range(L):
                handles.append(adapter.attn_write[i].register_forward_hook(store(attn_out, i)))
                handles.append(adapter.mlp_write[i].register_forward_hook(store(mlp_out, i)))
        for i in spec.attention_layers(L):
            handles.append(adapter.attn[i].register_forward_hook(store_attention(i)))
        for i in value_layers:
            handles.append(adapter.value_proj[i].register_forward_hook(store_values(i)))
        for i in neuron_layers:
            handles.append(adapter.down_proj[i].register_forward_pre_hook(store_neurons(i)))

        device = next(model.parameters()).device
        ids = torch.tensor([list(token_ids)], device=device)
        # The model's own [T, vocab] logits (0.4 GB at 2048 tokens) are not needed: only their
        # argmax, which the kept residual stream gives in small chunks. Keep the last row only.
        extra = {"logits_to_keep": 1} if _keeps_some_logits(model) else {}
        with attention_implementation(model, "eager" if spec.attention_layers(L) else "sdpa"):
            out = model(input_ids=ids, use_cache=False, **extra)
    finally:
        for h in handles:
            h.remove()

    logits = getattr(out, "logits", None)
    if spec.residual and adapter.has_lm_head:
        output_top1 = _top1(adapter, residual.rows[L])
    elif logits is not None and logits.shape[1] == len(token_ids):
        output_top1 = logits[0].argmax(-1).cpu()
    else:  # kept only the last row and no residual stream: nobody asked for the predictions
        output_top1 = torch.empty(0, dtype=torch.long)
    return Trace(
        model_name=model_name,
        fingerprint=fingerprint,
        token_ids=list(token_ids),
        tokens=tokens if tokens is not None else [],
        n_layers=L,
        output_top1=output_top1,
        residual=residual.rows if spec.residual else None,
        attn_out=attn_out.rows if spec.sublayers else None,
        mlp_out=mlp_out.rows if spec.sublayers else None,
        attentions=attentions,
        values=values,
        neurons=neurons,
        adapter=adapter,
    )
