"""Where each architecture keeps its blocks, norms, attention, MLP and unembedding. Imports nothing heavy.

All architecture knowledge of LayerLens is this table: one ``ArchSpec`` per Hugging
Face ``model_type``. Adding an architecture is one entry in ``SPECS``: the adapter
(lens/model/adapters.py) finds its modules, the tiny test models (lens/model/tiny.py)
are built from it, and every analysis reads the model through the adapter.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ArchSpec:
    """Dotted paths (from the top model) and child paths (inside one block)."""

    layers: str
    final_norm: str | None
    unembed: str | None
    attn: str
    mlp: str
    attn_norm: str | None
    # The norm the MLP reads through (its input is the residual stream after attention): where a tool
    # gives the MLP an input of its own (circuits' path patching). None: the MLP shares the attention's.
    mlp_norm: str | None = None
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
    # What information-flow routes read inside a block (None: routes are not available):
    value_proj: str | None = None  # the module whose output holds the value vectors
    value_fused: bool = False  # ... as the last KV·head_dim features of a fused q, k, v output
    out_proj: str | None = None  # attention's output projection (per-head slices of its input)
    down_proj: str | None = None  # the MLP's down projection (its input: the neuron activations)
    # Separate query and key projections (None where q, k and v come out of one fused module): circuits give
    # each head's query, key and value an input of its own through them (and ``value_proj`` when not fused).
    query_proj: str | None = None
    key_proj: str | None = None
    # RMSNorm scales by (norm_offset + weight): Gemma stores the weight minus 1.
    norm_offset: float = 0.0
    # Reads ``num_key_value_heads`` from its config (grouped-query attention); False: one KV head per head.
    grouped_kv: bool = True


_LLAMA_LIKE = ArchSpec(
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp", attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
    value_proj="self_attn.v_proj", out_proj="self_attn.o_proj", down_proj="mlp.down_proj",
    query_proj="self_attn.q_proj", key_proj="self_attn.k_proj",
)
_GEMMA_SANDWICH = ArchSpec(
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp", attn_norm="input_layernorm", mlp_norm="pre_feedforward_layernorm",
    attn_write="post_attention_layernorm", mlp_write="post_feedforward_layernorm", norm_offset=1.0,
)

# Model types lens/model/plain_llama.py runs as plain PyTorch modules (no transformers model code to import).
PLAIN_TYPES = ("llama",)

SPECS: dict[str, ArchSpec] = {
    "gpt2": ArchSpec(
        layers="transformer.h", final_norm="transformer.ln_f", unembed="lm_head",
        attn="attn", mlp="mlp", attn_norm="ln_1", mlp_norm="ln_2", grouped_kv=False,
        value_proj="attn.c_attn", value_fused=True, out_proj="attn.c_proj", down_proj="mlp.c_proj",
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": replace(_LLAMA_LIKE, norm_offset=1.0),
    "gemma2": _GEMMA_SANDWICH,
    "gemma3_text": _GEMMA_SANDWICH,
    "gpt_neox": ArchSpec(
        layers="gpt_neox.layers", final_norm="gpt_neox.final_layer_norm", unembed="embed_out",
        attn="attention", mlp="mlp", attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
        parallel_residual=True, grouped_kv=False,
    ),
    "opt": ArchSpec(
        layers="model.decoder.layers", final_norm="model.decoder.final_layer_norm",
        unembed="lm_head", attn="self_attn", mlp="fc2", attn_norm="self_attn_layer_norm", mlp_norm="final_layer_norm",
        project_out="model.decoder.project_out", final_norm_optional=True, grouped_kv=False,
        value_proj="self_attn.v_proj", out_proj="self_attn.out_proj", down_proj="fc2",
        query_proj="self_attn.q_proj", key_proj="self_attn.k_proj",
    ),
    "phi": ArchSpec(
        layers="model.layers", final_norm="model.final_layernorm", unembed="lm_head",
        attn="self_attn", mlp="mlp", attn_norm="input_layernorm", parallel_residual=True,
    ),
    "phi3": replace(_LLAMA_LIKE, value_proj="self_attn.qkv_proj", value_fused=True, query_proj=None, key_proj=None),
    "bert": ArchSpec(
        layers="encoder.layer", final_norm=None, unembed=None,
        attn="attention", mlp="output", attn_norm=None, is_encoder=True, grouped_kv=False,
    ),
}

# HF names the embedding output differently for GPT-NeoX ("embed_out" is its unembedding).
LM_HEAD_FALLBACKS = ("lm_head", "embed_out")


def supported_types() -> list[str]:
    return sorted(SPECS)


def route_types() -> list[str]:
    """The architectures whose table entry says where routes read (post-LN variants excepted)."""
    return sorted(t for t, s in SPECS.items() if s.value_proj and not (s.parallel_residual or s.attn_write))


def decoder_types() -> list[str]:
    """The causal language-model architectures (the tiny test models are built for each)."""
    return sorted(t for t, s in SPECS.items() if not s.is_encoder)


def is_encoder_type(model_type: str | None) -> bool:
    spec = SPECS.get(model_type or "")
    return bool(spec and spec.is_encoder)
