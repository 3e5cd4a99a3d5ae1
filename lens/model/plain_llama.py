"""The Llama family in plain PyTorch: the bundled model without transformers' model code.

Importing transformers' modelling code takes 2–3 s on a laptop CPU (it pulls in torch.distributed, torch._dynamo
and scipy); this file needs only torch, so a server's first page waits for PyTorch and the weights alone. The
modules have the names, arguments and outputs of transformers' ``LlamaForCausalLM`` (``model.layers.i.self_attn.
q_proj``, a block called with ``position_embeddings`` and ``attention_mask``, attention through a named
implementation, a cache with ``update``), so the engine's sites, hooks, resumed and packed runs and generation work
unchanged; the operations are the same, in the same order, so the numbers are the same (tests compare every logit
and site with transformers' model). What it does not do, a Llama checkpoint it cannot run (other rotary scalings,
other activations, packed-sequence detection), is left to transformers: ``unsupported`` says why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .architectures import PLAIN_TYPES

WEIGHTS = "model.safetensors"


# What transformers' Llama config takes for a value its config.json leaves out (and the plain model reads).
DEFAULTS = {"rms_norm_eps": 1e-6, "attention_bias": False, "mlp_bias": False, "max_position_embeddings": 2048,
            "tie_word_embeddings": False, "pad_token_id": None, "use_cache": True}


class PlainConfig:
    """``config.json``'s values as attributes, as the adapter, the engine and the loader read them (``DEFAULTS``
    for those it leaves out, as transformers' config has them)."""

    def __init__(self, values: dict):
        self._values = dict(values)
        self.head_dim = values.get("head_dim") or values["hidden_size"] // values["num_attention_heads"]
        self.num_key_value_heads = values.get("num_key_value_heads") or values["num_attention_heads"]
        self._attn_implementation = "eager"

    def __getattr__(self, name: str):
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        if name in DEFAULTS:
            return DEFAULTS[name]
        raise AttributeError(name)

    def to_dict(self) -> dict:
        return dict(self._values)

    @property
    def rope_theta(self) -> float:
        params = self._values.get("rope_parameters") or {}
        return float(params.get("rope_theta", self._values.get("rope_theta", 10000.0)))


def unsupported(values: dict) -> str | None:
    """Why a checkpoint with this ``config.json`` needs transformers' model code, or None when this file runs it."""
    if values.get("model_type") not in PLAIN_TYPES:
        return f"model type {values.get('model_type')!r} has no plain implementation here"
    params = values.get("rope_parameters") or {}
    if params.get("rope_type", "default") != "default" or values.get("rope_scaling"):
        return "its rotary positions are scaled"
    if values.get("hidden_act", "silu") != "silu":
        return f"its activation is {values.get('hidden_act')}"
    if values.get("pretraining_tp", 1) != 1 or values.get("quantization_config"):
        return "it is split for tensor parallelism or quantised"
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size"):
        if not isinstance(values.get(key), int) or values[key] <= 0:
            return f"its config has no {key}"
    return None


# ------------------------------------------------------------------ attention implementations

def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, KV, T, d] -> [B, KV·n_rep, T, d]: each key/value head once per query head that reads it."""
    batch, kv, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(batch, kv, n_rep, t, d).reshape(batch, kv * n_rep, t, d)


def eager_attention_forward(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0,
                            **kwargs):
    """Scores, softmax in float32, weighted values: returns the output [B, T, H, d] and the weights [B, H, T, Tk]."""
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value)
    return out.transpose(1, 2).contiguous(), weights


def sdpa_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                           scaling: float | None = None, **kwargs):
    """PyTorch's fused attention (no weights kept): causal by its own flag when no mask is given."""
    extra = {}
    n_rep = module.num_key_value_groups
    q_len = query.shape[2]
    if n_rep > 1:
        if attention_mask is None and key.shape[-1] == value.shape[-1] <= 256:
            extra["enable_gqa"] = True
        elif q_len == 1:  # one query row: its heads grouped under their key/value head, no copies of the keys
            batch, heads, _, d = query.shape
            query = query.reshape(batch, heads // n_rep, n_rep, d)
            if attention_mask is not None and attention_mask.shape[1] != 1:
                attention_mask = attention_mask.reshape(batch, heads // n_rep, n_rep, -1)
        else:
            key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    is_causal = q_len > 1 and attention_mask is None
    if is_causal and key.shape[2] > q_len:
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    out = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                                     scale=scaling, is_causal=is_causal, **extra)
    out = out.reshape(out.shape[0], -1, q_len, value.shape[-1])
    return out.transpose(1, 2).contiguous(), None


# name -> (the attention function, the mask it reads: "sdpa" (None where causal suffices, else boolean) or
# "additive" (0 where allowed, the dtype's lowest number where not))
ATTENTION: dict[str, tuple[Callable, str]] = {
    "eager": (eager_attention_forward, "additive"),
    "sdpa": (sdpa_attention_forward, "sdpa"),
}


def causal_mask(kind: str, batch: int, q_len: int, past: int, padding: torch.Tensor | None, dtype,
                device) -> torch.Tensor | None:
    """The mask of a pass of ``q_len`` new tokens after ``past`` cached ones, ``padding`` [B, past + q_len] (1: a
    token, 0: padding) or None: [B, 1, q_len, past + q_len], or None where SDPA's causal flag gives the same."""
    kv_len = past + q_len
    if padding is not None:
        padding = padding[:, -kv_len:].bool()
        if bool(padding.all()):
            padding = None
    if kind == "sdpa" and padding is None and (q_len == 1 or kv_len == q_len or past == 0):
        return None
    rows = torch.arange(past, kv_len, device=device)[:, None]
    allowed = (torch.arange(kv_len, device=device)[None, :] <= rows)[None, None].expand(batch, 1, q_len, kv_len)
    if padding is not None:
        allowed = allowed & padding[:, None, None, :]
    if kind == "sdpa":
        return allowed
    return torch.where(allowed, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)


# ------------------------------------------------------------------ the cache of a generation

@dataclass
class CachedLayer:
    keys: torch.Tensor
    values: torch.Tensor


class KVCache:
    """Every block's rotated keys and values so far ([B, KV, T, d] each), grown by each pass."""

    def __init__(self):
        self.layers: list[CachedLayer] = []

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx == len(self.layers):
            self.layers.append(CachedLayer(keys, values))
        else:
            layer = self.layers[layer_idx]
            layer.keys = torch.cat([layer.keys, keys], -2)
            layer.values = torch.cat([layer.values, values], -2)
        layer = self.layers[layer_idx]
        return layer.keys, layer.values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[layer_idx].keys.shape[-2] if layer_idx < len(self.layers) else 0


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    past_key_values: KVCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # the embeddings, blocks 1..L-1's outputs, the final norm's
    attentions: tuple[torch.Tensor | None, ...] | None = None  # each block's weights (eager attention; else None)


# ------------------------------------------------------------------ the modules

class Linear(nn.Linear):
    """``nn.Linear`` whose weights come only from the checkpoint: no random initialisation first (on the meta
    device that goes through torch's reference ops, which import torch._dynamo: a second on a laptop)."""

    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    """``nn.Embedding`` whose weights come only from the checkpoint (see ``Linear``)."""

    def reset_parameters(self) -> None:
        pass


class LlamaRMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """(cos, sin) [B, T, head_dim] of each position: the rotation each query and key pair of features gets."""

    def __init__(self, config: PlainConfig):
        super().__init__()
        dim = config.head_dim
        # On the CPU even while the weights are built on the meta device (the buffer is computed, not stored)
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float, device="cpu") / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor):
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * 1.0).to(x.dtype), (emb.sin() * 1.0).to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, config: PlainConfig, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        self.is_causal = True
        bias = bool(getattr(config, "attention_bias", False))
        d, h, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        self.q_proj = Linear(d, h * self.head_dim, bias=bias)
        self.k_proj = Linear(d, kv * self.head_dim, bias=bias)
        self.v_proj = Linear(d, kv * self.head_dim, bias=bias)
        self.o_proj = Linear(h * self.head_dim, d, bias=bias)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
        shape = hidden_states.shape[:-1]
        heads = (*shape, -1, self.head_dim)
        q = self.q_proj(hidden_states).view(heads).transpose(1, 2)
        k = self.k_proj(hidden_states).view(heads).transpose(1, 2)
        v = self.v_proj(hidden_states).view(heads).transpose(1, 2)
        cos, sin = position_embeddings[0].unsqueeze(1), position_embeddings[1].unsqueeze(1)
        q, k = (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        attend = ATTENTION.get(self.config._attn_implementation, ATTENTION["eager"])[0]
        out, weights = attend(self, q, k, v, attention_mask, dropout=0.0, scaling=self.scaling, **kwargs)
        return self.o_proj(out.reshape(*shape, -1).contiguous()), weights


class LlamaMLP(nn.Module):
    def __init__(self, config: PlainConfig):
        super().__init__()
        bias = bool(getattr(config, "mlp_bias", False))
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: PlainConfig, layer_idx: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False,
                position_embeddings=None, attentions: list | None = None, **kwargs):
        attn, weights = self.self_attn(hidden_states=self.input_layernorm(hidden_states), attention_mask=attention_mask,
                                 position_ids=position_ids, past_key_values=past_key_values, use_cache=use_cache,
                                 position_embeddings=position_embeddings, **kwargs)
        if attentions is not None:  # the model was asked for its attention weights
            attentions.append(weights)
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class LlamaModel(nn.Module):
    def __init__(self, config: PlainConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False,
                output_hidden_states=False, output_attentions=False):
        """(the final norm's output, the cache, every hidden state or None, every block's weights or None)."""
        hidden = self.embed_tokens(input_ids)
        if use_cache and past_key_values is None:
            past_key_values = KVCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = (torch.arange(hidden.shape[1], device=hidden.device) + past)[None]
        if attention_mask is not None and attention_mask.dim() == 4:
            mask = attention_mask  # prepared by the caller
        else:
            mask = causal_mask(ATTENTION.get(self.config._attn_implementation, ATTENTION["eager"])[1],
                               hidden.shape[0], hidden.shape[1], past, attention_mask, hidden.dtype, hidden.device)
        position_embeddings = self.rotary_emb(hidden, position_ids)
        states = [hidden] if output_hidden_states else None
        weights = [] if output_attentions else None
        extra = {"attentions": weights} if output_attentions else {}
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings,
                           position_ids=position_ids, past_key_values=past_key_values, use_cache=use_cache, **extra)
            if states is not None:
                states.append(hidden)
        hidden = self.norm(hidden)
        if states is not None:  # as transformers gives them: the last block's output after the final norm
            states[-1] = hidden
        return hidden, past_key_values, (tuple(states) if states else None), (tuple(weights) if weights else None)


class LlamaForCausalLM(nn.Module):
    """``model`` (embeddings, blocks, final norm) and ``lm_head``, called as transformers' model is."""

    is_plain = True  # lens/model/loading.py: what runs a model through nnsight loads transformers' own

    def __init__(self, config: PlainConfig, folder: str | None = None):
        super().__init__()
        self.config = config
        self.folder = folder
        self.model = LlamaModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_attn_implementation(self, name: str) -> None:
        if name not in ATTENTION:
            raise ValueError(f"no attention implementation {name!r} (known: {', '.join(ATTENTION)})")
        self.config._attn_implementation = name

    @staticmethod
    def register_attention(name: str, function: Callable, mask: str = "additive") -> None:
        """Another attention implementation (the engine's row-blocked head means), with the mask it reads."""
        ATTENTION[name] = (function, mask)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                logits_to_keep: int = 0, output_hidden_states: bool = False, output_attentions: bool = False,
                **kwargs) -> CausalLMOutput:
        if kwargs:
            raise TypeError(f"the plain Llama model takes no {', '.join(sorted(kwargs))}")
        if use_cache is None:  # as transformers: the config's choice
            use_cache = bool(getattr(self.config, "use_cache", True))
        hidden, cache, states, weights = self.model(input_ids, attention_mask, position_ids, past_key_values,
                                                    use_cache, output_hidden_states, output_attentions)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return CausalLMOutput(logits=self.lm_head(hidden), past_key_values=cache if use_cache else None,
                              hidden_states=states, attentions=weights)


def load_plain(folder: str | Path, dtype=torch.float32) -> LlamaForCausalLM:
    """The model of a transformers folder (``config.json`` and ``model.safetensors``) as plain PyTorch modules;
    raises ValueError naming what does not fit (a tensor missing, one of another shape, one too many)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    why = unsupported(values)
    if why:
        raise ValueError(f"the plain Llama model cannot run this checkpoint: {why}")
    config = PlainConfig(values)
    state = load_file(str(folder / WEIGHTS))
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        model = LlamaForCausalLM(config, str(folder))
    tied = bool(config.tie_word_embeddings)
    if tied:
        state.pop("lm_head.weight", None)
    expected = {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(f"the weights do not fit a Llama model: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(f"{key} has shape {tuple(tensor.shape)}, the config says {tuple(expected[key].shape)}")
        if tensor.is_floating_point():
            state[key] = tensor.to(dtype)
    model.load_state_dict(state, strict=False, assign=True)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    if any(p.is_meta for p in model.parameters()):
        raise ValueError("some weights of the plain Llama model were not loaded")
    return model


def load_plain_tokenizer(folder: str | Path):
    """The folder's tokenizer through transformers' tokenizers backend alone (what ``AutoTokenizer`` builds for a
    ``tokenizer.json`` folder, without importing the model registry), or None where another class is asked for."""
    folder = Path(folder)
    try:
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if settings.get("tokenizer_class") not in ("TokenizersBackend", "PreTrainedTokenizerFast") \
            or not (folder / "tokenizer.json").is_file():
        return None
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    return TokenizersBackend.from_pretrained(str(folder), local_files_only=True)
