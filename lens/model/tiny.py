"""Tiny randomly initialised models of each supported architecture, for tests.

Each is built from a config in a few milliseconds with a byte-level tokenizer
made in memory, so tests of every adapter need no download.
"""
from __future__ import annotations

import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .architectures import SPECS
from .registry import TINY_ARCHS

_VOCAB = 256 + 2  # every byte, then <bos> and <eos>
_D, _HEADS, _KV, _FF, _LAYERS, _CTX = 32, 4, 2, 64, 3, 128


def tiny_tokenizer() -> tf.PreTrainedTokenizerFast:
    """Byte-level tokenizer: one token per UTF-8 byte, so any text round-trips."""
    byte_vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    # alphabet() is unordered; index by the byte each symbol stands for.
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {sym: b for b, sym in bytes_to_unicode().items()}
    assert set(vocab) == set(byte_vocab)
    vocab["<bos>"], vocab["<eos>"] = 256, 257
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>")
    return fast


def tiny_config(arch: str) -> tf.PretrainedConfig:
    """A 3-layer, 32-wide config of ``arch``, from the same names for every architecture
    (Hugging Face maps them to each config's own, e.g. GPT-2's ``n_embd``)."""
    if arch not in TINY_ARCHS:
        raise ValueError(f"no tiny model for {arch!r}; choose from {', '.join(TINY_ARCHS)}")
    kv = {"num_key_value_heads": _KV} if SPECS[arch].grouped_kv else {}  # grouped-query attention where it exists
    return tf.AutoConfig.for_model(
        arch, vocab_size=_VOCAB, bos_token_id=256, eos_token_id=257, pad_token_id=257,
        num_hidden_layers=_LAYERS, hidden_size=_D, num_attention_heads=_HEADS, **kv,
        head_dim=_D // _HEADS, max_position_embeddings=_CTX,
        # the MLP's width goes by three names; each config reads its own and keeps the others unused
        intermediate_size=_FF, ffn_dim=_FF, n_inner=_FF, word_embed_proj_dim=_D,
    )


def tiny_model(arch: str, seed: int = 0) -> tuple[torch.nn.Module, tf.PreTrainedTokenizerFast]:
    """A seeded random causal LM of ``arch`` with eager attention, in eval mode."""
    cfg = tiny_config(arch)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        # Random init gives near-uniform predictions; larger weights make the lens
        # tests meet peaked distributions too.
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(12.0)
    return model.eval(), tiny_tokenizer()
