"""Where each architecture keeps its blocks, norms, attention, MLP and unembedding.

One table entry per Hugging Face ``model_type``. An unknown architecture, or a
module missing from where its entry says it is, raises UnsupportedArchitecture
naming what is missing: a lens that guesses is silently wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UnsupportedArchitecture


@dataclass(frozen=True)
class ArchSpec:
    """Dotted paths (from the top model) and child names (inside one block)."""

    layers: str
    final_norm: str | None
    unembed: str | None
    attn: str
    mlp: str
    attn_norm: str | None
    # Gemma 2/3 normalise each sub-block's output before the residual add: the
    # residual's real write is the output of that norm, not of the attention.
    attn_write: str | None = None
    mlp_write: str | None = None
    # OPT-350m projects hidden states down before the unembedding.
    project_out: str | None = None
    parallel_residual: bool = False
    is_encoder: bool = False
    # Post-LN OPT (opt-350m, do_layer_norm_before=False) has no final norm: blocks already end normed.
    final_norm_optional: bool = False


_LLAMA_LIKE = ArchSpec(
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp", attn_norm="input_layernorm",
)
_GEMMA_SANDWICH = ArchSpec(
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp", attn_norm="input_layernorm",
    attn_write="post_attention_layernorm", mlp_write="post_feedforward_layernorm",
)

SPECS: dict[str, ArchSpec] = {
    "gpt2": ArchSpec(
        layers="transformer.h", final_norm="transformer.ln_f", unembed="lm_head",
        attn="attn", mlp="mlp", attn_norm="ln_1",
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _GEMMA_SANDWICH,
    "gemma3_text": _GEMMA_SANDWICH,
    "gpt_neox": ArchSpec(
        layers="gpt_neox.layers", final_norm="gpt_neox.final_layer_norm", unembed="embed_out",
        attn="attention", mlp="mlp", attn_norm="input_layernorm", parallel_residual=True,
    ),
    "opt": ArchSpec(
        layers="model.decoder.layers", final_norm="model.decoder.final_layer_norm",
        unembed="lm_head", attn="self_attn", mlp="fc2", attn_norm="self_attn_layer_norm",
        project_out="model.decoder.project_out", final_norm_optional=True,
    ),
    "phi": ArchSpec(
        layers="model.layers", final_norm="model.final_layernorm", unembed="lm_head",
        attn="self_attn", mlp="mlp", attn_norm="input_layernorm", parallel_residual=True,
    ),
    "phi3": _LLAMA_LIKE,
    "bert": ArchSpec(
        layers="encoder.layer", final_norm=None, unembed=None,
        attn="attention", mlp="output", attn_norm=None, is_encoder=True,
    ),
}

# HF names the embedding output differently for GPT-NeoX ("embed_out" is its unembedding).
_LM_HEAD_FALLBACKS = ("lm_head", "embed_out")


def _get(root: nn.Module, path: str) -> nn.Module | None:
    obj: object = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, nn.Module) else None


@dataclass
class Adapter:
    """The modules of one loaded model that the lens and the trace need."""

    model_type: str
    spec: ArchSpec
    blocks: list[nn.Module]
    final_norm: nn.Module | None
    project_out: nn.Module | None
    unembed: nn.Linear | None
    softcap: float | None
    attn: list[nn.Module] = field(default_factory=list)
    mlp: list[nn.Module] = field(default_factory=list)
    attn_write: list[nn.Module] = field(default_factory=list)
    mlp_write: list[nn.Module] = field(default_factory=list)
    attn_norm: list[nn.Module | None] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def has_lm_head(self) -> bool:
        return self.unembed is not None

    @torch.no_grad()
    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits the model would produce if ``hidden`` were its last residual stream."""
        x = self.normed(hidden)
        z = x @ self.unembed.weight.T
        if self.unembed.bias is not None:
            z = z + self.unembed.bias
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    @torch.no_grad()
    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm (and OPT's down-projection): what the unembedding reads."""
        if self.unembed is None:
            raise UnsupportedArchitecture(
                f"{self.model_type} has no language-model head: the logit lens does not apply"
            )
        x = hidden if self.final_norm is None else self.final_norm(hidden)
        if self.project_out is not None:
            x = self.project_out(x)
        return x


def supported_types() -> list[str]:
    return sorted(SPECS)


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

    final_norm = None
    if spec.final_norm:
        final_norm = _get(model, spec.final_norm)
        post_ln = getattr(config, "do_layer_norm_before", True) is False
        if final_norm is None and not (spec.final_norm_optional and post_ln):
            need(spec.final_norm, "final norm")
    unembed = None
    if spec.unembed:
        unembed = _get(model, spec.unembed)
        if unembed is None:
            for name in _LM_HEAD_FALLBACKS:
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

    adapter = Adapter(
        model_type=model_type, spec=spec, blocks=blocks, final_norm=final_norm,
        project_out=project_out, unembed=unembed, softcap=softcap,
    )
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
    return adapter
