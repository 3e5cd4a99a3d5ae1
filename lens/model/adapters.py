"""The modules of one loaded model, found where its architecture's entry says they are.

The table (lens/model/architectures.py) says where; ``adapt`` finds the modules and the
Adapter reads them the same way for every architecture. An unknown architecture, or
a module missing from where its entry says it is, raises UnsupportedArchitecture
naming what is missing: a lens that guesses is silently wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UnsupportedArchitecture
from .architectures import LM_HEAD_FALLBACKS, SPECS, ArchSpec, route_types, supported_types


def _get(root: nn.Module, path: str) -> nn.Module | None:
    obj: object = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, nn.Module) else None


def _config_int(config, *names: str) -> int | None:
    for name in names:
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def linear_in_out(mod: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight as [in, out], bias) of an ``nn.Linear`` (``x @ W.T``) or a GPT-2 ``Conv1D`` (``x @ W``)."""
    if isinstance(mod, nn.Linear):
        return mod.weight.T, mod.bias
    if type(mod).__name__ == "Conv1D" and hasattr(mod, "nf"):
        return mod.weight, mod.bias
    raise UnsupportedArchitecture(f"{type(mod).__name__} is neither a linear layer nor a Conv1D")


@dataclass
class Adapter:
    """The modules of one loaded model that the lens, the trace and the routes need."""

    model_type: str
    spec: ArchSpec
    blocks: list[nn.Module]
    final_norm: nn.Module | None
    project_out: nn.Module | None
    unembed: nn.Linear | None
    softcap: float | None
    n_heads: int = 0
    n_kv_heads: int = 0
    head_dim: int = 0
    d_model: int = 0
    post_ln: bool = False  # every block ends with a norm after its residual add (BERT, OPT-350m)
    attn: list[nn.Module] = field(default_factory=list)
    mlp: list[nn.Module] = field(default_factory=list)
    attn_write: list[nn.Module] = field(default_factory=list)
    mlp_write: list[nn.Module] = field(default_factory=list)
    attn_norm: list[nn.Module | None] = field(default_factory=list)
    mlp_norm: list[nn.Module | None] = field(default_factory=list)
    value_proj: list[nn.Module] = field(default_factory=list)  # empty where routes are unavailable
    out_proj: list[nn.Module] = field(default_factory=list)
    down_proj: list[nn.Module] = field(default_factory=list)
    # Each block's query, key and value projections, where they are separate modules (else empty).
    query_proj: list[nn.Module] = field(default_factory=list)
    key_proj: list[nn.Module] = field(default_factory=list)
    separate_value_proj: list[nn.Module] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def has_lm_head(self) -> bool:
        return self.unembed is not None

    @property
    def is_causal(self) -> bool:
        return not self.spec.is_encoder

    @property
    def kv_group(self) -> int:
        """Query heads per key/value head (grouped-query attention; 1 without it)."""
        return self.n_heads // self.n_kv_heads

    def routes_unavailable(self) -> str | None:
        """Why information-flow routes do not apply to this model (a clause), or None when they do."""
        if self.post_ln:
            return "it normalises after each sub-block (post-LN), so its blocks do not add to a residual stream"
        if not self.has_lm_head:
            return "it has no language-model head, so there is no prediction to trace back"
        if self.spec.parallel_residual:
            return "it runs attention and the MLP in parallel on the same input; routes follow one after the other"
        if self.spec.attn_write or self.spec.mlp_write:
            return ("it normalises each sub-block's output before adding it, so the heads' writes do not add up "
                    "to what reaches the residual stream")
        if not self.value_proj:
            return f"{self.model_type} is not supported yet (supported: {', '.join(route_types())})"
        return None

    def require_lm_head(self, what: str = "the logit lens does not apply", name: str | None = None) -> None:
        """Raise the one message for every view that reads predictions from a model without an LM head."""
        if not self.has_lm_head:
            raise UnsupportedArchitecture(f"{name or self.model_type} has no language-model head: {what}")

    @property
    def supports_routes(self) -> bool:
        return self.routes_unavailable() is None

    @torch.no_grad()
    def readout(self, hidden: torch.Tensor, token_ids: list[int] | None = None) -> torch.Tensor:
        """Logits the model would produce if ``hidden`` were its last residual stream (only the
        columns of ``token_ids``, in that order, when given: a metric of two logits needs no more)."""
        return self.logits(hidden, token_ids)

    def logits(self, hidden: torch.Tensor, token_ids: list[int] | None = None) -> torch.Tensor:
        """``readout`` with gradients (training a lens goes through the model's own read-out)."""
        x = self._normed(hidden)
        W, bias = self.unembed.weight, self.unembed.bias
        if token_ids is not None:
            W, bias = W[token_ids], (None if bias is None else bias[token_ids])
        z = x @ W.T
        if bias is not None:
            z = z + bias
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    @torch.no_grad()
    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm (and OPT's down-projection): what the unembedding reads."""
        return self._normed(hidden)

    def _normed(self, hidden: torch.Tensor) -> torch.Tensor:
        self.require_lm_head()
        x = hidden if self.final_norm is None else self.final_norm(hidden)
        if self.project_out is not None:
            x = self.project_out(x)
        return x

    @torch.no_grad()
    def linearised_final_norm(self, writes: torch.Tensor) -> torch.Tensor:
        """A write direction [n, d] through the final norm with the norm's division left out:
        LayerNorm's centring and the elementwise scale (``norm_offset + weight``)."""
        x = writes.float()
        norm = self.final_norm
        if norm is None:
            return x
        if isinstance(norm, nn.LayerNorm):
            x = x - x.mean(-1, keepdim=True)
        w = getattr(norm, "weight", None)
        if w is not None:
            x = x * (self.spec.norm_offset + w.detach().float())
        return x

    # ---------------------------------------------------------- what routes read

    def values_from_output(self, out: torch.Tensor) -> torch.Tensor:
        """[T, KV, head_dim] value vectors from the value module's output [1, T, *]."""
        x = out[0]
        if self.spec.value_fused:
            x = x[..., -self.n_kv_heads * self.head_dim:]
        return x.reshape(x.shape[0], self.n_kv_heads, self.head_dim)

    def output_projection(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_O as [H, head_dim, d], bias [d] or None) of block ``layer`` (0-based)."""
        W, b = linear_in_out(self.out_proj[layer])
        W = W.detach().float().reshape(self.n_heads, self.head_dim, -1)
        return W, (None if b is None else b.detach().float())

    def down_projection(self, layer: int) -> torch.Tensor:
        """[N, d]: row n is what MLP neuron n of block ``layer`` (0-based) writes per unit of activation."""
        W, _ = linear_in_out(self.down_proj[layer])
        return W.detach().float()


def adapt(model: nn.Module) -> Adapter:
    """Find the modules of ``model``; raise naming the first one that is missing."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    spec = SPECS.get(model_type)
    if spec is None:
        raise UnsupportedArchitecture(
            f"architecture {model_type!r} is not supported (supported: {', '.join(supported_types())})"
        )
    if spec.is_encoder and not hasattr(model, spec.layers.split(".")[0]):
        # BertModel is the base itself; BertFor* wraps it (as `.bert`).
        model = getattr(model, model.base_model_prefix, model)

    def need(path: str, what: str) -> nn.Module:
        mod = _get(model, path)
        if mod is None:
            raise UnsupportedArchitecture(
                f"{model_type}: expected the {what} at `{path}` but {type(model).__name__} has none there"
            )
        return mod

    layers = need(spec.layers, "list of blocks")
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise UnsupportedArchitecture(f"{model_type}: `{spec.layers}` is not a non-empty list of blocks")
    blocks = list(layers)

    # Post-LN: BERT, and OPT-350m (do_layer_norm_before=False), whose blocks end normed.
    post_ln = spec.is_encoder or getattr(config, "do_layer_norm_before", True) is False
    final_norm = None
    if spec.final_norm:
        final_norm = _get(model, spec.final_norm)
        if final_norm is None and not (spec.final_norm_optional and post_ln):
            need(spec.final_norm, "final norm")
    unembed = None
    if spec.unembed:
        unembed = _get(model, spec.unembed)
        if unembed is None:
            for name in LM_HEAD_FALLBACKS:
                unembed = _get(model, name)
                if unembed is not None:
                    break
        if unembed is None:
            raise UnsupportedArchitecture(
                f"{model_type}: no unembedding at `{spec.unembed}` (is this a base model without an LM head?)"
            )
        if not isinstance(unembed, nn.Linear):
            raise UnsupportedArchitecture(f"{model_type}: `{spec.unembed}` is not a linear unembedding")
    project_out = _get(model, spec.project_out) if spec.project_out else None
    softcap = getattr(config, "final_logit_softcapping", None) or None

    n_heads = _config_int(config, "num_attention_heads", "n_head")
    d_model = _config_int(config, "hidden_size", "n_embd", "d_model")
    if n_heads is None or d_model is None:
        raise UnsupportedArchitecture(f"{model_type}: the config names no number of heads or width")
    n_kv = (_config_int(config, "num_key_value_heads") if spec.grouped_kv else None) or n_heads
    adapter = Adapter(
        model_type=model_type, spec=spec, blocks=blocks, final_norm=final_norm,
        project_out=project_out, unembed=unembed, softcap=softcap,
        n_heads=n_heads, n_kv_heads=n_kv, head_dim=_config_int(config, "head_dim") or d_model // n_heads,
        d_model=d_model, post_ln=post_ln,
    )
    routes = bool(spec.value_proj and spec.out_proj and spec.down_proj)
    for i, block in enumerate(blocks):
        def child(name: str, what: str) -> nn.Module:
            mod = _get(block, name)
            if mod is None:
                raise UnsupportedArchitecture(
                    f"{model_type}: block {i} has no {what} at `{name}`"
                )
            return mod

        adapter.attn.append(child(spec.attn, "attention"))
        adapter.mlp.append(child(spec.mlp, "MLP"))
        adapter.attn_write.append(child(spec.attn_write or spec.attn, "attention output"))
        adapter.mlp_write.append(child(spec.mlp_write or spec.mlp, "MLP output"))
        adapter.attn_norm.append(child(spec.attn_norm, "pre-attention norm") if spec.attn_norm else None)
        adapter.mlp_norm.append(child(spec.mlp_norm, "pre-MLP norm") if spec.mlp_norm else None)
        if routes:
            adapter.value_proj.append(child(spec.value_proj, "value projection"))
            adapter.out_proj.append(child(spec.out_proj, "attention output projection"))
            adapter.down_proj.append(child(spec.down_proj, "MLP down projection"))
            if spec.query_proj and spec.key_proj and not spec.value_fused:
                adapter.query_proj.append(child(spec.query_proj, "query projection"))
                adapter.key_proj.append(child(spec.key_proj, "key projection"))
                adapter.separate_value_proj.append(adapter.value_proj[-1])
    return adapter
