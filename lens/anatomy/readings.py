"""The one-line readings of the layer-anatomy charts, computed from the numbers (the page and the exports say them)."""
from __future__ import annotations

import numpy as np

from .results import AnatomyResult, AnatomySuiteResult, CKAResult, ContrastiveResult

NEAR_DUPLICATE = 0.95  # CKA at or above: layers that represent the prompt alike


def _tok(t: str) -> str:
    return f"“{t}”"


def skip_reading(r: AnatomyResult) -> str:
    """Which block matters most for this prompt (and how little the least does)."""
    kl = np.asarray(r.skip_kl, dtype=float)
    top = int(np.nanargmax(kl))
    changed = [i for i, t in enumerate(r.skip_top) if t != r.top]
    said = (f"Block {top + 1} matters most for this prompt: skipping it moves the next token's distribution by KL "
            f"{kl[top]:.3g} nats (top-1 {_tok(r.top)} → {_tok(r.skip_top[top])}).")
    order = [int(i) for i in np.argsort(-np.nan_to_num(kl, nan=-1), kind="stable")]
    if len(order) > 2:
        said += f" Next: blocks {order[1] + 1} (KL {kl[order[1]]:.3g}) and {order[2] + 1} (KL {kl[order[2]]:.3g})."
    low = order[-1]
    said += f" Skipping block {low + 1} moves it least (KL {kl[low]:.2g})"
    said += (f"; {len(changed)} of {len(kl)} skips change the top-1." if changed else
             "; no single skip changes the top-1.")
    if len(r.swap_kl):
        s = int(np.nanargmax(r.swap_kl))
        said += f" Swapping blocks {s + 1} and {s + 2} moves it most (KL {r.swap_kl[s]:.3g})."
    return said


def duplicate_runs(cka: np.ndarray, threshold: float = NEAR_DUPLICATE) -> list[tuple[int, int]]:
    """Windows of consecutive rows [i, j] (j > i) whose every pair has CKA ≥ ``threshold``, longest first (earlier
    first among equals), none overlapping one listed before it."""
    n = len(cka)
    windows = []
    for i in range(n):
        j = i
        while j + 1 < n and np.all(np.nan_to_num(cka[i:j + 2, i:j + 2], nan=-1) >= threshold):
            j += 1
        if j > i:
            windows.append((i, j))
    runs: list[tuple[int, int]] = []
    for a, b in sorted(windows, key=lambda ab: (-(ab[1] - ab[0]), ab[0])):
        if all(b < c or d < a for c, d in runs):
            runs.append((a, b))
    return runs


def similarity_reading(rows: list[str], cka: np.ndarray, threshold: float = NEAR_DUPLICATE) -> str:
    """Which consecutive layers are near-duplicates (every pair's CKA ≥ threshold), or the most alike neighbours."""
    runs = duplicate_runs(cka, threshold)
    if runs:
        i, j = runs[0]
        said = (f"Layers {rows[i]}–{rows[j]} are near-duplicates (CKA ≥ {threshold:g} between every two of them, "
                f"min {np.nanmin(cka[i:j + 1, i:j + 1]):.3f}).")
        if len(runs) > 1:
            said += " Also " + ", ".join(f"{rows[a]}–{rows[b]}" for a, b in runs[1:4]) + "."
        return said
    nb = np.array([cka[i, i + 1] for i in range(len(cka) - 1)])
    k = int(np.nanargmax(nb))
    return (f"No two neighbouring layers are near-duplicates (CKA < {threshold:g}); the most alike neighbours are "
            f"{rows[k]} and {rows[k + 1]} (CKA {nb[k]:.3f}).")


def outlier_reading(r: AnatomyResult) -> str:
    """Where the outlier dimension is: the largest coordinate of any row, and in how many rows it is the largest."""
    row = int(np.nanargmax(r.max_abs))
    dim = int(r.max_dim[row])
    rows_with = int(np.sum(np.asarray(r.max_dim) == dim))
    pos = int(r.max_pos[row])
    return (f"Dimension {dim} is the outlier: max |h| {r.max_abs[row]:.4g} at layer {r.rows[row]} (position {pos}, "
            f"{_tok(r.tokens[pos])}); it is the largest coordinate in {rows_with} of {len(r.rows)} rows. "
            f"Kurtosis peaks at {r.rows[int(np.nanargmax(r.kurtosis))]} ({np.nanmax(r.kurtosis):.3g}; 3 for a "
            "Gaussian).")


def norm_reading(r: AnatomyResult) -> str:
    """How the residual norm grows, and which block changes the stream most (and through which sub-block)."""
    jump = int(np.nanargmax(r.norm_ratio))
    big = int(np.nanargmax(r.block_change))
    a, m = float(r.attn_share[big]), float(r.mlp_share[big])
    via = "its MLP" if m >= a else "its attention"
    return (f"The mean residual norm grows from {r.norm[0]:.3g} ({r.rows[0]}) to {r.norm[-1]:.3g} ({r.rows[-1]}); "
            f"the largest step is block {jump + 1} (×{r.norm_ratio[jump]:.3g}). Block {big + 1} turns the stream most "
            f"(1 − cos = {r.block_change[big]:.3g}), mostly through {via} (attention {a:.0%}, MLP {m:.0%} of its "
            "write).")


def erasure_reading(r: AnatomyResult) -> str:
    """How much of each position's own token embedding, and of the previous token's, the stream still carries."""
    prev = np.nanmean(r.prev_cos[:, 1:], axis=1)
    own = np.nanmean(r.self_cos[:, 1:], axis=1)
    peak = int(np.nanargmax(prev[1:])) + 1  # among the block rows: row 0 is the embeddings themselves
    return (f"A position's own token embedding: mean cosine {own[1]:.2f} after block 1, {own[-1]:.2f} at "
            f"{r.rows[-1]}; the previous token's embedding is most visible at {r.rows[peak]} (mean cosine "
            f"{prev[peak]:.3f}).")


def contrastive_reading(r: ContrastiveResult) -> str:
    first = r.contrast_tokens[0] if r.contrast_tokens else "—"
    same = "the same as" if r.contrast_tokens and r.contrast_ids[0] == r.plain_ids[0] else "where the plain top-1 is"
    return (f"With L{r.amateur_layer} as the amateur, the contrastive top token is {_tok(first)} ({same} "
            f"{_tok(r.plain_tokens[0])}); {r.n_plausible} token{'s are' if r.n_plausible != 1 else ' is'} plausible "
            f"(p ≥ {r.alpha:g} × the top p).")


def cka_pair_reading(r: CKAResult) -> str:
    best = [int(np.nanargmax(row)) for row in r.cka]
    last = r.cka[-1, best[-1]]
    return (f"{r.model}'s last row {r.rows[-1]} is most like {r.other}'s {r.other_rows[best[-1]]} (CKA {last:.3f}); "
            f"the diagonal's mean CKA is {np.nanmean(np.diag(r.cka)):.3f}." if r.cka.shape[0] == r.cka.shape[1] else
            f"{r.model}'s last row {r.rows[-1]} is most like {r.other}'s {r.other_rows[best[-1]]} (CKA {last:.3f}).")


# ---------------------------------------------------------------- a suite's readings: from the means over its prompts

def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def suite_skip_reading(s: AnatomySuiteResult) -> str:
    """Which block matters most across the prompts (the largest mean KL), and for how many prompts it is the top."""
    from .spread import spread

    kl = spread(s.skip_kl)
    mean = kl["mean"]
    N = len(s.prompts)
    top = int(np.nanargmax(mean))
    each = np.nanargmax(np.nan_to_num(np.asarray(s.skip_kl, dtype=float), nan=-1), axis=1)
    first = int(np.sum(each == top))
    changed = sum(s.skip_top[i][top] != s.top[i] for i in range(N))
    said = (f"Across the {N} prompts, block {top + 1} matters most: skipping it moves the next token's distribution by "
            f"KL {mean[top]:.3g} nats on average (10–90 %: {kl['p10'][top]:.3g}–{kl['p90'][top]:.3g}); it is the "
            f"block that matters most for {first} of {N} prompts, and skipping it changes the top-1 of {changed}.")
    order = [int(i) for i in np.argsort(-np.nan_to_num(mean, nan=-1), kind="stable")]
    if len(order) > 2:
        said += (f" Next: blocks {order[1] + 1} (mean KL {mean[order[1]]:.3g}) and {order[2] + 1} "
                 f"(mean KL {mean[order[2]]:.3g}).")
    said += f" Skipping block {order[-1] + 1} moves it least (mean KL {mean[order[-1]]:.2g})."
    if s.swap_kl.shape[1]:
        sw = spread(s.swap_kl)["mean"]
        k = int(np.nanargmax(sw))
        said += f" Swapping blocks {k + 1} and {k + 2} moves it most (mean KL {sw[k]:.3g})."
    return said


def suite_similarity_reading(s: AnatomySuiteResult) -> str:
    """The one-prompt reading, from the CKA matrix averaged over the prompts."""
    from .spread import spread

    return (f"Across the {len(s.prompts)} prompts (mean CKA), "
            + _lower_first(similarity_reading(s.rows, spread(s.cka)["mean"])))


def suite_outlier_reading(s: AnatomySuiteResult) -> str:
    """The most frequent outlier dimension: in how many prompts it holds the largest coordinate, and where."""
    from .spread import outliers, spread

    o = outliers(s)
    N, R = len(s.prompts), len(s.rows)
    max_abs = spread(s.max_abs)["mean"]
    row = int(np.nanargmax(max_abs))
    kurt = spread(s.kurtosis)["mean"]
    said = (f"Across the {N} prompts, dimension {o['dim']} is the outlier: it holds the prompt's largest coordinate "
            f"in {o['prompts']} of {N} prompts (the mean max |h| peaks at {s.rows[row]}, {max_abs[row]:.4g}).")
    if o["rows_dim"] != o["dim"]:
        said += (f" Dimension {o['rows_dim']} is the largest coordinate of the most rows: {o['rows_count']} of the "
                 f"{N * R} rows of all prompts (dimension {o['dim']}: {o['rows_with']}).")
    else:
        said += f" It is the largest coordinate in {o['rows_with']} of the {N * R} rows of all prompts."
    return said + (f" The mean kurtosis peaks at {s.rows[int(np.nanargmax(kurt))]} ({np.nanmax(kurt):.3g}; 3 for a "
                   "Gaussian).")


def suite_norm_reading(s: AnatomySuiteResult) -> str:
    """How the mean residual norm grows, and which block changes the stream most on average (and through what)."""
    from .spread import spread

    norm, ratio = spread(s.norm)["mean"], spread(s.norm_ratio)["mean"]
    change = spread(s.block_change)["mean"]
    jump, big = int(np.nanargmax(ratio)), int(np.nanargmax(change))
    a, m = float(np.mean(s.attn_share[:, big])), float(np.mean(s.mlp_share[:, big]))
    via = "its MLP" if m >= a else "its attention"
    return (f"Across the {len(s.prompts)} prompts, the mean residual norm grows from {norm[0]:.3g} ({s.rows[0]}) to "
            f"{norm[-1]:.3g} ({s.rows[-1]}); the largest step is block {jump + 1} (×{ratio[jump]:.3g} on average). "
            f"Block {big + 1} turns the stream most (mean 1 − cos = {change[big]:.3g}), mostly through {via} "
            f"(attention {a:.0%}, MLP {m:.0%} of its write on average).")


def suite_erasure_reading(s: AnatomySuiteResult) -> str:
    from .spread import spread

    own, prev = spread(s.self_cos)["mean"], spread(s.prev_cos)["mean"]
    peak = int(np.nanargmax(prev[1:])) + 1  # among the block rows: row 0 is the embeddings themselves
    return (f"Across the {len(s.prompts)} prompts, a position's own token embedding: mean cosine {own[1]:.2f} after "
            f"block 1, {own[-1]:.2f} at {s.rows[-1]}; the previous token's embedding is most visible at "
            f"{s.rows[peak]} (mean cosine {prev[peak]:.3f}).")
