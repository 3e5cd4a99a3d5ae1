"""How the geometry of the token representations changes with depth: one number per layer.

All metrics use the raw residual stream (row 0 = embeddings, row l = after
block l) of the kept tokens (see ``lens.analysis.points``: first token and special tokens
left out by default). Cosines, the Gram-matrix entropy and curvature angles do
not depend on a per-layer rescaling, so RMS scaling plays no part here.

- anisotropy baseline b_l: mean cosine over all pairs of distinct tokens
  (Ethayarajh 2019 samples random pairs; we take every pair, so it is exact);
- intra-text similarity: mean cosine of each token to its text's mean vector,
  averaged over texts, minus b_l;
- self-similarity of a word: mean cosine between its occurrences in different
  texts (in a single text: between its different positions), minus b_l;
- word MEV: share of the variance of the word's occurrence matrix [n, d]
  explained by its first principal component, σ₁²/Σσᵢ² (uncentred, as in the paper);
- PC1 share: the same for all kept tokens of the layer, centred;
- prompt entropy (Skean et al. 2025, "Layer by Layer"): eigenvalues λ of the
  Gram matrix K = ZZᵀ/tr(ZZᵀ) of a text's tokens, S = −Σ λ log λ / log T, averaged over texts;
- curvature: mean angle (degrees) between consecutive steps x_{t+1} − x_t of a text's
  token sequence (Hosseini & Fedorenko 2023), pooled over texts;
- layer similarity S_ij: mean over tokens of cos(h_i, h_j) ("Transformer layers as painters");
- norm growth: mean ‖h_l‖ and mean ‖h_l‖/‖h_{l−1}‖ over tokens.

Word matching rule (``lens.model.tokens.word_key``): a token matches a word when, with
surrounding whitespace and a leading "##" removed, it equals the word
case-insensitively. A word the tokenizer splits into several tokens does not match.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from ..errors import LensError
from ..engine.trace import Trace
from ..options import GeometryOptions
from ..results import GeometryResult
from .linalg import serial
from ..model.tokens import word_key
from .points import PointSet, select_points

def unit(X: torch.Tensor) -> torch.Tensor:
    return X / X.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def mean_pair_cosine(U: torch.Tensor) -> torch.Tensor:
    """Mean cosine over all ordered pairs i≠j of the unit rows of U [..., N, d], in O(N d):
    Σ_{i≠j} uᵢ·uⱼ = ‖Σ uᵢ‖² − N."""
    n = U.shape[-2]
    s = U.sum(-2)
    return ((s * s).sum(-1) - n) / (n * (n - 1))


def squared_singular_values(A: torch.Tensor) -> np.ndarray:
    """σᵢ² of A [n, d], descending: the eigenvalues of the smaller of AAᵀ and AᵀA."""
    a = A.double().numpy()
    G = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    with serial():
        lam = np.linalg.eigvalsh(G)
    return np.clip(lam[::-1], 0, None)


def gram_entropy(Z: torch.Tensor) -> float:
    """−Σ λ log λ / log T of the eigenvalues of ZZᵀ/tr(ZZᵀ), Z [T, d], T ≥ 2."""
    lam = squared_singular_values(Z)
    lam = lam / lam.sum()
    lam = lam[lam > 0]
    return float(-(lam * np.log(lam)).sum() / math.log(Z.shape[0]))


def mean_turning_angle(Z: torch.Tensor) -> tuple[float, int]:
    """Sum of angles (degrees) between consecutive steps of the path Z [T, d], and their count."""
    v = Z[1:] - Z[:-1]
    c = (unit(v[:-1]) * unit(v[1:])).sum(-1).clamp(-1, 1)
    return float(torch.rad2deg(torch.arccos(c)).sum()), int(c.shape[0])


def word_occurrences(pts: PointSet, word: str) -> list[int]:
    key = word_key(word)
    return [i for i, t in enumerate(pts.tokens) if word_key(t) == key]


def _repeated_words(pts: PointSet, limit: int = 8) -> list[str]:
    texts = defaultdict(set)
    for t, k in zip(pts.tokens, pts.text_index):
        w = word_key(t)
        if w.isalpha():
            texts[w].add(k)
    need = 2 if pts.n_texts > 1 else 1
    counts = {w: len(s) for w, s in texts.items() if len(s) >= need}
    if pts.n_texts == 1:
        counts = {w: sum(1 for t in pts.tokens if word_key(t) == w) for w in counts}
        counts = {w: c for w, c in counts.items() if c >= 2}
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


@torch.no_grad()
def geometry_points(pts: PointSet, options: GeometryOptions = GeometryOptions()) -> GeometryResult:
    X = pts.X.double()  # [R, N, d]
    R, N, d = X.shape
    U = unit(X)
    anis = mean_pair_cosine(U)  # [R]

    by_text: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(pts.text_index):
        by_text[k].append(i)
    intra, ent, ang_sum, ang_n = [], [], torch.zeros(R, dtype=torch.float64), 0
    for idx in by_text.values():
        if len(idx) < 2:
            continue
        Z = X[:, idx, :]
        intra.append((U[:, idx, :] * unit(Z.mean(1, keepdim=True))).sum(-1).mean(-1))
        ent.append(torch.tensor([gram_entropy(Z[r]) for r in range(R)], dtype=torch.float64))
        if len(idx) >= 3:
            for r in range(R):
                s, c = mean_turning_angle(Z[r])
                ang_sum[r] += s
            ang_n += len(idx) - 2
    if not intra:
        raise LensError("every text has fewer than 2 tokens to compare; type longer texts")
    intra_raw = torch.stack(intra).mean(0)
    entropy = torch.stack(ent).mean(0)
    curvature = ang_sum / ang_n if ang_n else torch.full((R,), float("nan"), dtype=torch.float64)

    Xc = X - X.mean(1, keepdim=True)
    pc1 = torch.tensor(np.stack([squared_singular_values(Xc[r]) for r in range(R)]))
    pc1_share = pc1[:, 0] / pc1.sum(1).clamp_min(1e-300)

    layer_sim = torch.einsum("rnd,snd->rs", U, U) / N
    norms = X.norm(dim=-1)  # [R, N]
    ratio = torch.full((R,), float("nan"), dtype=torch.float64)
    ratio[1:] = (norms[1:] / norms[:-1].clamp_min(1e-12)).mean(-1)

    empty = np.zeros(0, np.float32)
    self_sim = self_raw = mev = empty
    count = n_texts_w = 0
    word = options.word.strip() if options.word else None
    if word:
        occ = word_occurrences(pts, word)
        count, n_texts_w = len(occ), len({pts.text_index[i] for i in occ})
        others = _repeated_words(pts)
        hint = f" Words that repeat here: {', '.join(others)}." if others else ""
        if count == 0:
            raise LensError(f"the word {word!r} does not occur as a single token in the "
                            f"{'prompt' if pts.n_texts == 1 else 'texts'} (first and special tokens left out).{hint}")
        if pts.n_texts > 1:
            pairs = [(i, j) for a, i in enumerate(occ) for j in occ[a + 1:] if pts.text_index[i] != pts.text_index[j]]
        else:
            pairs = [(i, j) for a, i in enumerate(occ) for j in occ[a + 1:]]
        if not pairs:
            where = "in at least two of the texts" if pts.n_texts > 1 else "at least twice"
            raise LensError(f"the word {word!r} occurs {count} time{'s' if count != 1 else ''}"
                            f"{' in one text' if pts.n_texts > 1 else ''}; self-similarity needs it {where}.{hint}")
        a = torch.tensor([p[0] for p in pairs])
        b = torch.tensor([p[1] for p in pairs])
        raw = (U[:, a, :] * U[:, b, :]).sum(-1).mean(-1)
        sv = torch.tensor(np.stack([squared_singular_values(X[r, occ, :]) for r in range(R)]))
        self_raw = raw.numpy().astype(np.float32)
        self_sim = (raw - anis).numpy().astype(np.float32)
        mev = (sv[:, 0] / sv.sum(1).clamp_min(1e-300)).numpy().astype(np.float32)

    f32 = lambda t: t.numpy().astype(np.float32)  # noqa: E731
    return GeometryResult(
        model=pts.model, n_layers=pts.n_layers, layers=list(pts.layers), tokens=list(pts.tokens),
        positions=list(pts.positions), text_index=list(pts.text_index), n_texts=pts.n_texts,
        anisotropy=f32(anis), intra_similarity=f32(intra_raw - anis), intra_similarity_raw=f32(intra_raw),
        pc1_share=f32(pc1_share), prompt_entropy=f32(entropy), curvature=f32(curvature),
        layer_similarity=f32(layer_sim), norm_mean=f32(norms.mean(-1)), norm_ratio=f32(ratio),
        first_token_norm=f32(pts.first_norms.double().mean(-1)),
        self_similarity=self_sim, self_similarity_raw=self_raw, word_mev=mev,
        word=word, word_count=count, word_texts=n_texts_w, options=options.key(),
    )


def geometry(traces: Sequence[Trace], options: GeometryOptions = GeometryOptions(),
             special_ids=()) -> GeometryResult:
    pts = select_points(traces, skip_first=options.skip_first, skip_special=options.skip_special,
                        special_ids=special_ids)
    return geometry_points(pts, options)
