"""The typed result of a steering run: small dataclasses of numpy arrays, lists and numbers (no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

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
    # The full logit lens of both runs over the same text, the prompt followed by the plain continuation (so each
    # cell has the same context in both), rows "emb", "1".."L", one column per token of that text (the cell
    # predicts the token after it). Empty when not asked for (SteerOptions.grid).
    grid_rows: list[str] = field(default_factory=list)
    grid_tokens: list[str] = field(default_factory=list)
    grid_plain_top: list[list[str]] = field(default_factory=list)  # [R][T] each cell's top-1 token, plain run
    grid_steered_top: list[list[str]] = field(default_factory=list)  # [R][T] the same, steered run
    grid_plain_top_prob: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [R, T] its probability
    grid_steered_top_prob: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    grid_plain_logprob: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [R, T] log p(target)
    grid_steered_logprob: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def grid_difference(self) -> np.ndarray:
        """[R, T] log p(target) steered − plain, cell by cell."""
        return np.asarray(self.grid_steered_logprob) - np.asarray(self.grid_plain_logprob)


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
        "grid": {"rows": r.grid_rows, "tokens": r.grid_tokens,
                 "plain": {"top": r.grid_plain_top, "top_prob": np.asarray(r.grid_plain_top_prob),
                           "logprob": np.asarray(r.grid_plain_logprob)},
                 "steered": {"top": r.grid_steered_top, "top_prob": np.asarray(r.grid_steered_top_prob),
                             "logprob": np.asarray(r.grid_steered_logprob)},
                 "difference": r.grid_difference},
        "dose": {"coefs": np.asarray(r.dose_coefs), "logprob": np.asarray(r.dose_logprob),
                 "texts": [{"coef": c, "text": t} for c, t in zip(r.text_coefs, r.texts)]},
    })
