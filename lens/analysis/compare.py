"""Two models on one prompt: the logit lens of each, and how far apart their distributions are at every
cell (a fine-tuned checkpoint beside its base, say). Both must share the tokenizer and the depth."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LensError
from ..results import ModelComparison

if TYPE_CHECKING:
    from ..engine.trace import Trace


def compare_models(a: "Trace", b: "Trace", tokenizer, chunk: int = 64) -> ModelComparison:
    # torch here, not at the top: the page that offers models to compare imports this module's shapes.
    import torch

    from ..model.tokens import decode_token

    with torch.no_grad():
        if a.token_ids != b.token_ids:
            raise LensError(f"{a.model_name} and {b.model_name} tokenize the prompt differently "
                            f"({len(a.token_ids)} and {len(b.token_ids)} tokens): compare models that share a tokenizer")
        if a.n_layers != b.n_layers:
            raise LensError(f"{a.model_name} has {a.n_layers} layers and {b.model_name} {b.n_layers}: the cell-by-cell "
                            "comparison needs the same depth")
        Va, Vb = a.adapter.unembed.weight.shape[0], b.adapter.unembed.weight.shape[0]
        if Va != Vb:
            raise LensError(f"the vocabularies differ ({Va:,} and {Vb:,} tokens)")
        R, T = a.n_layers + 1, a.n_tokens
        prob_a, prob_b, kl = (np.empty((R, T), np.float32) for _ in range(3))
        id_a, id_b = np.empty((R, T), np.int64), np.empty((R, T), np.int64)
        for c0 in range(0, T, chunk):
            c1 = min(T, c0 + chunk)
            la = torch.log_softmax(a.adapter.readout(a.residual[:, c0:c1]).double(), -1)
            lb = torch.log_softmax(b.adapter.readout(b.residual[:, c0:c1]).double(), -1)
            pa = la.exp()
            kl[:, c0:c1] = (pa * (la - lb)).sum(-1).clamp_min(0).numpy()
            pa_max, ia = pa.max(-1)
            pb_max, ib = lb.exp().max(-1)
            prob_a[:, c0:c1], prob_b[:, c0:c1] = pa_max.numpy(), pb_max.numpy()
            id_a[:, c0:c1], id_b[:, c0:c1] = ia.numpy(), ib.numpy()
        names: dict[int, str] = {int(i): decode_token(tokenizer, int(i))
                                 for i in np.unique(np.concatenate([id_a, id_b]))}
        return ModelComparison(
            model_a=a.model_name, model_b=b.model_name, tokens=list(a.tokens), layers=list(a.layer_labels),
            top1_a=[[names[int(i)] for i in row] for row in id_a],
            top1_b=[[names[int(i)] for i in row] for row in id_b],
            prob_a=prob_a, prob_b=prob_b, kl=kl, agree=id_a == id_b)


# ---------------------------------------------------------------- which models can be compared

@dataclass(frozen=True)
class ModelShape:
    """What decides whether two models' lenses can be compared cell by cell, known before loading one."""

    name: str
    causal_lm: bool  # a decoder with a language-model head: its lens reads next-token predictions
    n_layers: int
    vocab_size: int
    kind: str = ""  # what it is, in a few words, when it is not a causal language model


def _kind(decoder: bool, head: bool) -> str:
    if decoder and head:
        return ""
    if not head:
        return f"{'a decoder' if decoder else 'an encoder'} without a language-model head"
    return "an encoder (it reads both ways: its lens predicts no next token)"


def shape_of(info) -> ModelShape:
    """A loaded model's shape (``info``: its backend's ModelInfo)."""
    return ModelShape(info.name, info.has_lm_head and info.is_causal, info.n_layers, info.vocab_size,
                      _kind(info.is_causal, info.has_lm_head))


def shape_from_config(name: str, config: dict) -> ModelShape:
    """A shape from a Hugging Face config.json's fields (no weights read)."""
    from ..model.architectures import is_encoder_type

    archs = config.get("architectures") or []
    decoder = not is_encoder_type(config.get("model_type"))
    # A checkpoint saved without its head names a bare model class (BertModel, LlamaModel).
    head = not archs or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    layers = config.get("num_hidden_layers", config.get("n_layer", 0))
    return ModelShape(name, head and decoder, int(layers or 0), int(config.get("vocab_size") or 0),
                      _kind(decoder, head))


def peek_shape(ref: str, cache_root=None) -> ModelShape | None:
    """``ref``'s shape from its files, without loading it: a bundled model folder, a bundled GGUF once it has been
    converted, a tiny test model, a local folder with a config.json. None when only loading it would tell (a
    hub id, a GGUF not yet converted)."""
    import json
    from pathlib import Path

    from ..model.registry import BUNDLED, TINY_ARCHS, bundled_file, default_cache_root

    def read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    ref = ref.strip()
    config = None
    if ref in BUNDLED:
        try:
            found = bundled_file(BUNDLED[ref])
        except LensError:
            return None
        if found.suffix == ".gguf":
            from ..model.convert import converted_dir

            config = read(converted_dir(Path(cache_root or default_cache_root()), ref, found) / "config.json")
        else:
            config = read(found)
    elif ref.startswith("tiny-") and ref[5:] in TINY_ARCHS:
        from ..model.tiny import tiny_config

        config = tiny_config(ref[5:]).to_dict()
    elif not ref.endswith(".gguf") and ref.startswith((".", "/", "~")):
        try:
            config = read(Path(ref).expanduser() / "config.json")
        except RuntimeError:  # "~user" of a user this machine does not have
            return None
    return None if config is None else shape_from_config(ref, config)


def why_not_comparable(base: ModelShape, other: ModelShape) -> str | None:
    """Why ``other``'s lens cannot be set beside ``base``'s cell by cell (None: it can). The tokenizers are
    compared on the prompt itself when both run (``compare_models``); here only what the shapes tell."""
    if base.name == other.name:
        return f"{other.name} is the sidebar's model itself"
    if not other.causal_lm:
        return f"{other.name} is {other.kind or 'not a causal language model'}"
    if other.vocab_size != base.vocab_size:
        return (f"{other.name} has another tokenizer ({other.vocab_size:,} tokens in its vocabulary, "
                f"{base.name} {base.vocab_size:,})")
    if other.n_layers != base.n_layers:
        return f"{other.name} has {other.n_layers} layers and {base.name} {base.n_layers}"
    return None
