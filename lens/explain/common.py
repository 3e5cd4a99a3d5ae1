"""What the explanations share: a norm module's parameters read as numbers, activation functions, top dimensions."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import LensError
from ..model.tokens import decode_token


def as64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, np.float64)


def norm_params(norm: nn.Module | None, d: int, offset: float = 0.0) -> tuple[str, np.ndarray, np.ndarray, float]:
    """(kind, scale, bias, eps) of a norm module: "layernorm" (centred), "rms" (RMSNorm) or "none"; the scale with
    the architecture's offset added (Gemma keeps the weight minus 1)."""
    if norm is None:
        return "none", np.ones(d), np.zeros(d), 0.0
    w = getattr(norm, "weight", None)
    b = getattr(norm, "bias", None)
    scale = np.ones(d) if w is None else as64(w) + offset
    bias = np.zeros(d) if b is None else as64(b)
    if isinstance(norm, nn.LayerNorm):
        return "layernorm", scale, bias, float(norm.eps)
    eps = getattr(norm, "variance_epsilon", None)
    eps = getattr(norm, "eps", None) if eps is None else eps
    if eps is None or "rms" not in type(norm).__name__.lower():
        raise LensError(f"the norm {type(norm).__name__} is neither a LayerNorm nor an RMSNorm: its steps are not "
                        "shown for this model")
    return "rms", scale, bias, float(eps)


def apply_norm(h: np.ndarray, kind: str, scale: np.ndarray, bias: np.ndarray, eps: float
               ) -> tuple[np.ndarray, float, float, float]:
    """(x, mean, var, rms) for one vector h: x = (h − mean)/rms · scale + bias, rms = √(var + eps); RMSNorm
    subtracts no mean (var is then the mean of h²)."""
    if kind == "none":
        return h.copy(), 0.0, float(np.mean(h * h)), 1.0
    mean = float(h.mean()) if kind == "layernorm" else 0.0
    c = h - mean
    var = float(np.mean(c * c))
    rms = math.sqrt(var + eps)
    return c / rms * scale + bias, mean, var, rms


def largest(v: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` largest |v|, largest first."""
    n = min(n, v.shape[-1])
    idx = np.argpartition(-np.abs(v), n - 1)[:n]
    return [int(i) for i in idx[np.argsort(-np.abs(v[idx]), kind="stable")]]


def activation(name: str, x: float) -> float:
    """The MLP activation ``name`` (a Hugging Face ``hidden_act``) of one number, written out."""
    if name in ("silu", "swish"):
        return x / (1.0 + math.exp(-x)) if x > -700 else 0.0
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))
    if name == "relu":
        return max(0.0, x)
    raise LensError(f"the activation {name!r} is not written out here (silu, gelu, gelu_new, relu are)")


def shown(tokenizer, token_id: int) -> str:
    """A token's text as the model's tokenizer writes it (" Paris"; pages and the terminal show it visibly)."""
    return decode_token(tokenizer, int(token_id))
