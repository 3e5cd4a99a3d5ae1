"""Steering: generate with an edit of the residual stream entering one block, beside the plain generation.

The edit (``steering_edit``) is an ordinary engine write at ``resid_pre.l``: the same function edits the whole
passes (the lens, the dose-response) and every pass of generation (the engine tells it each pass's first position).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..analysis.logit_lens import logit_lens
from ..engine.base import Edit, SiteCall
from ..engine.trace import CaptureSpec, capture
from ..errors import LensError
from ..model.tokens import token_strings
from ..options import LensOptions
from .options import SteerOptions
from .results import SteerResult

DOSE_TOKENS = 8  # new tokens of each dose-response text
DOSE_STEPS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # multiples of the coefficient (add, cap)
DOSE_TEXT_STEPS = (-1.0, 0.0, 0.5, 1.0, 2.0)
RATIOS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # orthogonal: the parallel part's factor
RATIO_TEXTS = (-1.0, 0.0, 1.0, 3.0)


def positions_mask(kind: str, start: int, count: int, n_prompt: int, front_tokens: int) -> torch.Tensor:
    """[count] which of the positions start .. start + count − 1 are edited."""
    pos = torch.arange(start, start + count)
    if kind == "all":
        return torch.ones(count, dtype=torch.bool)
    if kind == "after-prompt":  # the positions that choose new tokens: the prompt's last, then every new one
        return pos >= n_prompt - 1
    return pos < min(front_tokens, n_prompt)  # front


def steer_vector(h: torch.Tensor, v: torch.Tensor, mode: str, coef: float, coef_raw: float) -> torch.Tensor:
    """``h`` [..., d] edited by ``mode`` with the vector ``v`` [d] (float64 maths; the formulas of SteerOptions)."""
    x = h.double()
    v = v.to(x.device, torch.float64)
    if mode == "add":
        return x + coef_raw * v
    u = v / v.norm()
    p = x @ u
    if mode == "ablate":
        return x - p[..., None] * u
    if mode == "orthogonal":
        return x + ((coef - 1.0) * p)[..., None] * u
    s = coef_raw * float(v.norm())  # cap
    return x - (p - s).clamp(min=0)[..., None] * u


def steering_edit(v: torch.Tensor, mode: str, coef: float, coef_raw: float, positions: str, n_prompt: int,
                  front_tokens: int) -> Edit:
    """The engine edit for ``resid_pre.l``: ``steer_vector`` at the chosen positions, the rest untouched."""
    def edit(x: torch.Tensor, call: SiteCall) -> torch.Tensor:
        mask = positions_mask(positions, call.start, x.shape[1], n_prompt, front_tokens).to(x.device)
        if not bool(mask.any()):
            return x
        y = steer_vector(x, v, mode, coef, coef_raw).to(x.dtype)
        return torch.where(mask[None, :, None], y, x)
    return edit


def mean_norm(engine, ids: Sequence[int], layer: int) -> float:
    """The mean norm of the residual stream entering block ``layer`` over the prompt, its first token left out
    (the first token's stream is often many times larger: an attention sink)."""
    h = engine.run(ids, read={f"resid_pre.{layer}": None}, logits="none").reads[f"resid_pre.{layer}"][0].double()
    rows = h[1:] if h.shape[0] > 1 else h
    return float(rows.norm(dim=-1).mean())


def raw_coefficient(coef: float, unit: str, norm_v: float, m: float) -> float:
    return float(coef) if unit == "raw" else float(coef) * m / norm_v


def layer_logprobs(engine, ids: Sequence[int], target_id: int, write: dict | None) -> np.ndarray:
    """[L] log p(target) at the last token of ``ids`` read after each block (the logit lens), with ``write``."""
    L = engine.adapter.n_layers
    out = engine.run(ids, read={f"resid_post.{l}": [len(ids) - 1] for l in range(1, L + 1)}, write=write,
                     logits="none")
    W = engine.adapter.unembed.weight
    h = torch.cat([out.reads[f"resid_post.{l}"][:, 0] for l in range(1, L + 1)]).to(W.device, W.dtype)
    with torch.no_grad():
        z = engine.adapter.readout(h).double()
    return torch.log_softmax(z, -1)[:, target_id].cpu().numpy()


def next_logprob(engine, ids: Sequence[int], target_id: int, write: dict | None) -> float:
    z = engine.run(ids, write=write).logits[0].double()
    return float(torch.log_softmax(z, -1)[target_id])


TINY = float(np.finfo(np.float32).tiny)  # the lens keeps probabilities in float32: log p floored at about −87


def lens_grid(engine, tokenizer, ids: Sequence[int], target: str, write: dict | None) -> dict:
    """The full logit lens (every row × every position of ``ids``) of one run, with the edits ``write``: each
    cell's top-1 token and probability and log p(target), read by ``logit_lens`` (lens/analysis/logit_lens.py)."""
    trace = capture(engine, ids, CaptureSpec(residual=True), tokens=token_strings(tokenizer, ids), write=write)
    r = logit_lens(trace, tokenizer, LensOptions(top_k=1, target=target))
    return {"top": [[row[p][0] for p in range(len(row))] for row in r.top_tokens],
            "top_prob": r.top_probs[..., 0].astype(np.float64),
            "logprob": np.log(np.maximum(r.target_prob.astype(np.float64), TINY)),
            "target_id": int(r.target_ids[0]), "rows": list(r.layers)}


def dose_points(options: SteerOptions, base: float) -> tuple[list[float], list[float]]:
    """The dose-response's coefficients and those a text is generated at (``base``: the scale when coef is 0)."""
    c = float(options.coef)
    if options.mode == "ablate":
        return [], []
    if options.mode == "orthogonal":
        return sorted(set(RATIOS) | {c}), sorted(set(RATIO_TEXTS) | {c})
    scale = c if c != 0 else base
    return sorted({k * scale for k in DOSE_STEPS} | {c}), sorted({k * scale for k in DOSE_TEXT_STEPS} | {c})


def steer(engine, tokenizer, model_name: str, ids: list[int], v: torch.Tensor, options: SteerOptions,
          vector_label: str, target_id: int | None, stop_ids: Sequence[int] = (), room: int | None = None,
          progress=None, done: SteerResult | None = None) -> SteerResult:
    """Plain and steered continuations of ``ids`` with the vector ``v`` [d] at ``resid_pre.{options.layer}``.

    ``done``: the same run without the dose-response (its texts, lenses and grid are taken from it, so opening
    the dose-response computes only the dose-response)."""
    layer = options.layer
    site = f"resid_pre.{layer}"
    norm_v = float(v.norm())
    if not norm_v > 0:
        raise LensError(f"the steering vector is zero at layer {layer} (the positive and negative texts end in the "
                        "same residual stream): choose other texts or another layer")
    m = mean_norm(engine, ids, layer)
    n_new = min(options.max_new_tokens, room) if room is not None else options.max_new_tokens
    t, seed = float(options.temperature), options.seed

    def write_at(coef: float) -> dict:
        return {site: steering_edit(v, options.mode, coef, raw_coefficient(coef, options.unit, norm_v, m),
                                    options.positions, len(ids), options.front_tokens)}

    def say(i, n, what):
        if progress is not None:
            progress(i / n, what)
    if done is not None:
        return _with_dose(done, options, engine, tokenizer, ids, write_at, m, norm_v, stop_ids, n_new, say)
    say(0, 5, "generating the plain continuation")
    plain, _, _ = engine.generate(ids, n_new, t, seed, stop_ids)
    say(1, 5, "generating the steered continuation")
    steered, _, _ = engine.generate(ids, n_new, t, seed, stop_ids, write=write_at(options.coef))
    if target_id is None:
        target_id = int(steered[0])
    say(2, 5, "the lens of both runs")
    lens_plain = layer_logprobs(engine, ids, target_id, None)
    lens_steered = layer_logprobs(engine, ids, target_id, write_at(options.coef))
    grid: dict = {}
    if options.grid:
        # Both runs read the same text, the prompt and the plain continuation, so every cell of the two lenses
        # has the same context and their difference is the edit's alone (the steered text's own tokens differ).
        say(3, 5, "the full lens of both runs")
        full = list(ids) + [int(i) for i in plain]
        target_text = tokenizer.decode([target_id])
        g0 = lens_grid(engine, tokenizer, full, target_text, None)
        g1 = lens_grid(engine, tokenizer, full, target_text, write_at(options.coef))
        if g0["target_id"] != target_id:
            raise LensError(f"the target {target_text!r} does not read back as one token here: give --target")
        grid = dict(grid_rows=g0["rows"], grid_tokens=token_strings(tokenizer, full), grid_plain_top=g0["top"],
                    grid_steered_top=g1["top"], grid_plain_top_prob=g0["top_prob"],
                    grid_steered_top_prob=g1["top_prob"], grid_plain_logprob=g0["logprob"],
                    grid_steered_logprob=g1["logprob"])
    base = 1.0 if options.unit == "norm" else m / norm_v  # coef 0: the scale of a vector as long as the stream
    coefs, text_coefs = dose_points(options, base) if options.dose else ([], [])
    say(4, 5, "the dose-response")
    dose, texts = _dose(engine, tokenizer, ids, target_id, write_at, coefs, text_coefs, options, stop_ids, n_new)
    L = engine.adapter.n_layers
    return SteerResult(
        model=model_name, prompt_tokens=token_strings(tokenizer, ids), n_prompt=len(ids), layer=layer,
        mode=options.mode, positions=options.positions, unit=options.unit, coef=float(options.coef),
        coef_raw=raw_coefficient(options.coef, options.unit, norm_v, m), vector=options.vector,
        vector_label=vector_label, vector_norm=norm_v, mean_norm=m,
        plain_ids=[int(i) for i in plain], plain_text=tokenizer.decode(plain, skip_special_tokens=True),
        plain_tokens=token_strings(tokenizer, plain),
        steered_ids=[int(i) for i in steered], steered_text=tokenizer.decode(steered, skip_special_tokens=True),
        steered_tokens=token_strings(tokenizer, steered),
        temperature=t, seed=seed if t > 0 else None,
        target=tokenizer.decode([target_id]), target_id=int(target_id), layers=[str(l) for l in range(1, L + 1)],
        lens_plain=np.asarray(lens_plain, np.float64), lens_steered=np.asarray(lens_steered, np.float64),
        dose_coefs=np.asarray(coefs, np.float64), dose_logprob=np.asarray(dose, np.float64),
        text_coefs=[float(c) for c in text_coefs], texts=texts, **grid)


def _dose(engine, tokenizer, ids, target_id, write_at, coefs, text_coefs, options, stop_ids, n_new):
    """log p(target) of the next token at each coefficient, and a short text at each of ``text_coefs``."""
    dose = [next_logprob(engine, ids, target_id, write_at(c)) for c in coefs]
    texts = []
    for c in text_coefs:
        new, _, _ = engine.generate(ids, min(DOSE_TOKENS, n_new), float(options.temperature), options.seed, stop_ids,
                                    write=write_at(c))
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return dose, texts


def _with_dose(done: SteerResult, options, engine, tokenizer, ids, write_at, m, norm_v, stop_ids, n_new, say):
    """``done`` (the run without the dose-response) with the dose-response added."""
    from dataclasses import replace

    base = 1.0 if options.unit == "norm" else m / norm_v
    coefs, text_coefs = dose_points(options, base)
    say(4, 5, "the dose-response")
    dose, texts = _dose(engine, tokenizer, ids, done.target_id, write_at, coefs, text_coefs, options, stop_ids, n_new)
    return replace(done, dose_coefs=np.asarray(coefs, np.float64), dose_logprob=np.asarray(dose, np.float64),
                   text_coefs=[float(c) for c in text_coefs], texts=texts)
