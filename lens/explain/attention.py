"""One attention weight with its work shown: query and key vectors (after rotary positions where the model has
them), q·k, ÷√d, the causal mask, the softmax over the query's row → the weight; and the head's output at the
query position, the weighted sum of the value vectors.

The block's attention input (``attn_in.l``: the residual stream its norm reads), the attention weights
(``attn_pattern.l``), the values (``value.l``) and the heads' outputs (``head_out.l``) are read through the engine in
one pass. Queries and keys are not sites of their own: rotary positions are applied inside the attention's forward
function, where no hook reaches. They are computed here from the attention input with the block's own norm,
projection weights and rotary frequencies, written out in numpy, and the weight they give is shown beside the one
the model's pass produced (``shown_weight``; the tests hold them equal).
"""
from __future__ import annotations

import numpy as np

from ..analysis.checks import check_position
from ..errors import LensError
from ..model.adapters import linear_in_out
from .common import apply_norm, as64, largest, norm_params
from .options import AttentionWeightOptions
from .results import AttentionExplanation

# The walk-through may differ from the model's own weight by float rounding only; beyond this the model computes
# something the steps do not show (an attention written otherwise), and the steps are refused, not shown wrong.
AGREE = 1e-3


def _rms_rows(x: np.ndarray, module, offset: float) -> np.ndarray:
    """The per-head RMSNorm of q or k (rows of head_dim) some models apply before rotary (Qwen3, Gemma 3)."""
    kind, scale, bias, eps = norm_params(module, x.shape[-1], offset)
    return np.stack([apply_norm(r, kind, scale, bias, eps)[0] for r in x.reshape(-1, x.shape[-1])]).reshape(x.shape)


def rotary_frequencies(model) -> tuple[np.ndarray, float] | None:
    """(inv_freq [rotary dims / 2], attention_scaling) of the model's rotary embedding; None: it has none (its
    positions are learned, added to the embeddings)."""
    for m in model.modules():
        if hasattr(m, "inv_freq") and type(m).__name__.endswith("RotaryEmbedding"):
            return as64(m.inv_freq), float(getattr(m, "attention_scaling", 1.0))
    return None


def _rotate(v: np.ndarray, pos: int, inv_freq: np.ndarray, scaling: float) -> np.ndarray:
    """Rotary position ``pos`` applied to one head's vector: the pairs (i, i + r/2) of its first r = 2·len(inv_freq)
    dimensions turn by pos·θ_i (all of them in most models; a partial rotary leaves the rest as they are)."""
    r = 2 * len(inv_freq)
    half = r // 2
    ang = pos * np.concatenate([inv_freq, inv_freq])
    cos, sin = np.cos(ang) * scaling, np.sin(ang) * scaling
    x = v[..., :r]
    rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return np.concatenate([x * cos + rot * sin, v[..., r:]], -1)


def _projections(a, li: int, x: np.ndarray):
    """Every position's queries [T, H, hd] and keys [T, KV, hd] before positions, from the block's normed input:
    through separate query and key projections, or the first H·hd and next KV·hd outputs of a fused q, k, v one."""
    attn, T, H, KV, hd = a.attn[li], x.shape[0], a.n_heads, a.n_kv_heads, a.head_dim

    def through(mod):
        W, b = linear_in_out(mod)
        return x @ as64(W) + (0.0 if b is None else as64(b))
    q_mod, k_mod = getattr(attn, "q_proj", None), getattr(attn, "k_proj", None)
    if q_mod is not None and k_mod is not None:
        return through(q_mod).reshape(T, H, hd), through(k_mod).reshape(T, KV, hd)
    if a.spec.value_fused and a.value_proj:
        y = through(a.value_proj[li])
        return y[:, :H * hd].reshape(T, H, hd), y[:, H * hd:(H + KV) * hd].reshape(T, KV, hd)
    raise LensError(f"{a.model_type}'s queries and keys come from no projection the steps know: its attention "
                    "weights are not written out here")


def explain_attention(engine, model_name: str, ids: list[int], tokens: list[str],
                      options: AttentionWeightOptions) -> AttentionExplanation:
    a = engine.adapter
    options.check(a.n_layers, a.n_heads)
    if a.post_ln or a.spec.parallel_residual or a.attn_norm[0] is None:
        raise LensError(f"{a.model_type}'s attention input is not the normed residual stream of its own: its "
                        "attention weights are not written out here")
    model = getattr(engine, "model", None)
    if model is None or not engine.capabilities.weights_here:
        raise LensError(f"the attention's steps need its weights beside the pass, which stay "
                        f"{engine.capabilities.where}")
    T = len(ids)
    qp, kp = check_position(options.query, T), check_position(options.key_position, T)
    li, h = options.layer - 1, options.head
    hd, H, KV = a.head_dim, a.n_heads, a.n_kv_heads
    g = h // a.kv_group
    n = options.layer
    read = {f"attn_in.{n}": None, f"attn_pattern.{n}": None}
    if a.value_proj:
        read[f"value.{n}"] = None
        read[f"head_out.{n}"] = [qp]
    out = engine.run(ids, read=read, logits="none")
    x_in = as64(out.reads[f"attn_in.{n}"][0])  # [T, d]
    kind, scale, bias, eps = norm_params(a.attn_norm[li], x_in.shape[-1], a.spec.norm_offset)
    x = np.stack([apply_norm(r, kind, scale, bias, eps)[0] for r in x_in])  # [T, d]
    attn = a.attn[li]
    qs, ks = _projections(a, li, x)
    if getattr(attn, "q_norm", None) is not None:  # Qwen3, Gemma 3: each head's q and k normed before rotary
        qs, ks = _rms_rows(qs, attn.q_norm, a.spec.norm_offset), _rms_rows(ks, attn.k_norm, a.spec.norm_offset)
    qs, ks = qs[:, h], ks[:, g]
    rotary = rotary_frequencies(model)
    inv_freq = None
    if rotary is not None:
        inv_freq, rs = rotary
        qs = np.stack([_rotate(qs[t], t, inv_freq, rs) for t in range(T)])
        ks = np.stack([_rotate(ks[t], t, inv_freq, rs) for t in range(T)])
    positions = "rotary" if rotary is not None else "learned"
    sc = float(getattr(attn, "scaling", hd ** -0.5))
    window = getattr(attn, "sliding_window", None)
    q = qs[qp]
    allowed = np.array([j <= qp and (window is None or qp - j < window) for j in range(T)])
    raw = ks @ q  # q·k_j for every key
    scores = raw * sc
    live = scores[allowed]
    m = float(live.max())
    lse = m + float(np.log(np.exp(live - m).sum()))
    weights = np.where(allowed, np.exp(np.where(allowed, scores, m) - lse), 0.0)
    pattern = as64(out.reads[f"attn_pattern.{n}"][0, h, qp])
    worst = float(np.abs(weights - pattern).max())
    if worst > AGREE:
        raise LensError(f"{a.model_type}'s attention computes its weights otherwise than the steps shown here (they "
                        f"differ from the model's own by up to {worst:.2g}): they are not written out for this model")
    k = ks[kp]
    terms = q * k
    dims = largest(terms, options.dims)
    rd = 0 if inv_freq is None else 2 * len(inv_freq)
    angle = lambda pos: [float(pos * inv_freq[i % (rd // 2)]) if i < rd else 0.0 for i in dims]  # noqa: E731
    o_dims, o, shown_o, v_dims, vk, wv = [], [], [], [], [], []
    o_norm = 0.0
    if f"value.{n}" in out.reads:
        vals = as64(out.reads[f"value.{n}"][0])[:, g]  # [T, hd]
        head_out = weights @ vals
        o_dims = largest(head_out, options.dims)
        o, o_norm = [float(head_out[i]) for i in o_dims], float(np.linalg.norm(head_out))
        own = as64(out.reads[f"head_out.{n}"][0, 0])[h * hd:(h + 1) * hd]
        shown_o = [float(own[i]) for i in o_dims]
        v_dims = largest(vals[kp], options.dims)
        vk = [float(vals[kp][i]) for i in v_dims]
        wv = [float(weights[kp] * vals[kp][i]) for i in v_dims]
    return AttentionExplanation(
        model=model_name, tokens=list(tokens), layer=n, head=h, kv_head=g, n_heads=H, n_kv_heads=KV, head_dim=hd,
        query=qp, key=kp, query_token=tokens[qp], key_token=tokens[kp], positions=positions,
        rotary_angles=angle(kp), rotary_query_angles=angle(qp), dims=dims, q=[float(q[i]) for i in dims],
        k=[float(k[i]) for i in dims], q_norm=float(np.linalg.norm(q)), k_norm=float(np.linalg.norm(k)),
        dot=float(raw[kp]), scale=sc, score=float(scores[kp]),
        row_scores=[float(s) if ok else None for s, ok in zip(scores, allowed)], masked=not bool(allowed[kp]),
        row_max=m, row_logsumexp=lse, weight=float(weights[kp]), row_weights=[float(w) for w in weights],
        shown_weight=float(pattern[kp]), output_dims=o_dims, output=o, output_norm=o_norm, shown_output=shown_o,
        value_dims=v_dims, value=vk, weighted_value=wv)
