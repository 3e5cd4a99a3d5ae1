"""The typed result of a steering run: small dataclasses of numpy arrays, lists and numbers (no torch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SteerResult:
    """Plain and steered continuations of one prompt from the same seed, the vector, the target's log-probability
    per layer in both runs (the lens at the prompt's last token) and the dose-response.

    ``coef_raw`` multiplies the raw vector (add) or sets the cap s = coef_raw·‖v‖ (cap); with unit "norm" it is
    coef·mean_norm/‖v‖. Layer rows of the lens are "1".."L" (the residual stream after each block)."""

    model: str
    prompt_tokens: list[str]
    n_prompt: int
    layer: int  # 1-based: the vector is read and applied at resid_pre.{layer}
    mode: str
    positions: str
    unit: str
    coef: float  # as given
    coef_raw: float
    vector: str  # contrast | token
    vector_label: str  # "positive − negative" texts, or the token
    vector_norm: float  # ‖v‖ of the raw vector
    mean_norm: float  # the mean residual norm entering the layer over the prompt (its first token left out)
    plain_ids: list[int]  # the new tokens only
    plain_text: str
    plain_tokens: list[str]
    steered_ids: list[int]
    steered_text: str
    steered_tokens: list[str]
    temperature: float
    seed: int | None
    target: str
    target_id: int
    layers: list[str]
    lens_plain: np.ndarray  # [L] log p(target) at the prompt's last token, read after each block, plain run
    lens_steered: np.ndarray  # [L] the same in the steered run
    dose_coefs: np.ndarray  # [K] coefficients (in ``unit``; ratios for orthogonal); empty for ablate
    dose_logprob: np.ndarray  # [K] log p(target) of the next token after the prompt, steered with each
    text_coefs: list[float]  # the coefficients a continuation was generated at
    texts: list[str]  # those continuations (``DOSE_TOKENS`` new tokens each)


def steer_json(r: SteerResult) -> dict:
    """What ``python -m lens steer --json`` prints (and the exported script prints)."""
    from ..serialize import plain

    return plain({
        "model": r.model, "layer": r.layer, "mode": r.mode, "positions": r.positions, "unit": r.unit,
        "coef": r.coef, "coef_raw": r.coef_raw, "vector": r.vector, "vector_label": r.vector_label,
        "vector_norm": r.vector_norm, "mean_norm": r.mean_norm,
        "plain": {"ids": r.plain_ids, "text": r.plain_text},
        "steered": {"ids": r.steered_ids, "text": r.steered_text},
        "target": r.target, "target_id": r.target_id,
        "lens": {"layers": r.layers, "plain": np.asarray(r.lens_plain), "steered": np.asarray(r.lens_steered)},
        "dose": {"coefs": np.asarray(r.dose_coefs), "logprob": np.asarray(r.dose_logprob),
                 "texts": [{"coef": c, "text": t} for c, t in zip(r.text_coefs, r.texts)]},
    })
