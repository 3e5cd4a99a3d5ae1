"""The layer-anatomy measures of one prompt from engine runs: one pass read at every residual row and sub-block
write, then the skipped (and swapped) copies in batches."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..engine.sites import resid_rows
from .norms import block_change, embedding_cosines, kurtosis, massive, norm_growth, sublayer_shares, top_dimensions
from .options import AnatomyOptions, ContrastiveOptions
from .results import AnatomyResult, CKAResult, ContrastiveResult
from .similarity import linear_cka
from .skip import batched_logits, kl, skip_edits, swap_edits

KEEP = slice(1, None)  # positions 1…: the first token (an attention sink) is left out


def rows_of(n_layers: int) -> list[str]:
    return ["emb", *(f"L{l}" for l in range(1, n_layers + 1))]


def residual(engine, ids: Sequence[int], n_layers: int, sublayers: bool = True):
    """One run: the residual stream [L+1, T, d] (row L the last block's raw output), what each attention and MLP
    writes [L, T, d] (None without ``sublayers``) and the last position's logits [V]."""
    rows = resid_rows(n_layers)
    read = {s: None for s in rows}
    if sublayers:
        read.update({f"{k}.{l}": None for k in ("attn_out", "mlp_out") for l in range(1, n_layers + 1)})
    out = engine.run(list(ids), read=read, logits="last")
    stack = lambda names: np.stack([out.reads[s][0].double().cpu().numpy() for s in names])  # noqa: E731
    h = stack(rows)
    if not sublayers:
        return h, None, None, out.logits[0].double().cpu().numpy()
    L = range(1, n_layers + 1)
    return (h, stack([f"attn_out.{l}" for l in L]), stack([f"mlp_out.{l}" for l in L]),
            out.logits[0].double().cpu().numpy())


def anatomy(engine, ids: Sequence[int], tokens: list[str], n_layers: int, options: AnatomyOptions, model: str,
            decode: Callable[[int], str]) -> AnatomyResult:
    return anatomy_and_stream(engine, ids, tokens, n_layers, options, model, decode)[0]


def anatomy_and_stream(engine, ids: Sequence[int], tokens: list[str], n_layers: int, options: AnatomyOptions,
                       model: str, decode: Callable[[int], str]) -> tuple[AnatomyResult, np.ndarray]:
    """``anatomy``'s result and the residual stream [L+1, T, d] it was measured on (a suite averages more of it)."""
    h, attn, mlp, logits = residual(engine, ids, n_layers)
    norm, ratio = norm_growth(h, KEEP)
    attn_share, mlp_share = sublayer_shares(h, attn, mlp, KEEP)
    max_abs, max_dim, max_pos = massive(h, KEEP)
    dims, dim_mean_abs = top_dimensions(h, KEEP, min(options.top_dims, h.shape[-1]))
    prev, own = embedding_cosines(h)
    layers = list(range(1, n_layers + 1))
    skipped = batched_logits(engine, ids, layers, skip_edits)
    pairs = layers[:-1] if options.swap else []
    swapped = batched_logits(engine, ids, pairs, swap_edits) if pairs else np.zeros((0, len(logits)))
    return AnatomyResult(
        model=model, tokens=list(tokens), rows=rows_of(n_layers), positions=list(range(1, len(ids))),
        norm=norm, norm_ratio=ratio, block_change=block_change(h, KEEP), attn_share=attn_share, mlp_share=mlp_share,
        max_abs=max_abs, max_dim=max_dim, max_pos=max_pos, kurtosis=kurtosis(h, KEEP), top_dims=dims,
        dim_mean_abs=dim_mean_abs, skip_kl=kl(logits, skipped), skip_top=[decode(int(i)) for i in skipped.argmax(1)],
        swap_kl=kl(logits, swapped) if pairs else np.zeros(0), swap_top=[decode(int(i)) for i in swapped.argmax(1)],
        top=decode(int(np.argmax(logits))), cka=linear_cka(list(h[:, KEEP])), prev_cos=prev, self_cos=own), h


def cka_between(engine, other_engine, ids: Sequence[int], n_layers: int, other_layers: int, model: str,
                other: str) -> CKAResult:
    """Linear CKA between every row of one model and every row of another on the same token ids."""
    h, _, _, _ = residual(engine, ids, n_layers, sublayers=False)
    g, _, _, _ = residual(other_engine, ids, other_layers, sublayers=False)
    return CKAResult(model=model, other=other, rows=rows_of(n_layers), other_rows=rows_of(other_layers),
                     positions=list(range(1, len(ids))), cka=linear_cka(list(h[:, KEEP]), list(g[:, KEEP])))


def contrastive(engine, ids: Sequence[int], options: ContrastiveOptions, model: str, decode: Callable[[int], str],
                decode_text: Callable[[list[int]], str], stop_ids: Sequence[int] = ()) -> ContrastiveResult:
    from .contrastive import contrast_scores, expert_and_amateur, greedy

    expert, amateur = expert_and_amateur(engine, ids, options.amateur_layer)
    le, la, score = contrast_scores(expert, amateur, options.alpha)
    k = options.top_k
    plain = np.argsort(-le, kind="stable")[:k]
    n_plausible = int(np.isfinite(score).sum())
    best = np.argsort(-score, kind="stable")[:min(k, n_plausible)]
    plain_new = greedy(engine, ids, options.amateur_layer, options.alpha, options.max_new_tokens, False, stop_ids)
    contrast_new = greedy(engine, ids, options.amateur_layer, options.alpha, options.max_new_tokens, True, stop_ids)
    return ContrastiveResult(
        model=model, amateur_layer=options.amateur_layer, alpha=float(options.alpha),
        plain_tokens=[decode(int(i)) for i in plain], plain_ids=[int(i) for i in plain], plain_prob=np.exp(le[plain]),
        contrast_tokens=[decode(int(i)) for i in best], contrast_ids=[int(i) for i in best],
        contrast_score=score[best], contrast_prob=np.exp(le[best]), amateur_prob=np.exp(la[best]),
        n_plausible=n_plausible, plain_new_ids=plain_new, plain_text=decode_text(plain_new),
        contrast_new_ids=contrast_new, contrast_text=decode_text(contrast_new))
