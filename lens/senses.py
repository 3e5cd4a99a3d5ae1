"""One word in several senses (“bank” by a river, “bank” with money): how alike its vectors are
within a sense and across senses, layer by layer.

The sentences of a shipped corpus carry their senses (``lens.examples.SENSES``). For every pair of
sentences, the mean cosine between the word's vectors in the two is the self-similarity that
``Backend.geometry`` measures on that pair alone (each sentence is run on its own, so a pair's
cosines do not depend on the other sentences). Same-sense pairs are then averaged apart from
different-sense pairs, each pair weighted by its number of occurrence pairs, so that ``within`` and
``across`` are means over every pair of occurrences of the word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import LensError
from .examples import CORPORA, SENSES
from .model.tokens import word_key
from .options import GeometryOptions


@dataclass
class SenseSimilarity:
    """Rows follow ``layers`` (row 0: the embeddings)."""

    model: str
    word: str
    layers: list[str]
    texts: list[str]
    senses: list[str]  # [n] the sense of each text
    counts: list[int]  # [n] the word's kept occurrences in each text
    cosine: np.ndarray  # [R, n, n] mean cosine between the word in text i and in text j (NaN on the diagonal)
    within: np.ndarray  # [R] mean cosine over occurrence pairs of the same sense
    across: np.ndarray  # [R] ... of different senses
    pairs_within: int
    pairs_across: int
    options: dict = field(default_factory=dict)


def senses_of(texts: Sequence[str]) -> list[str] | None:
    """The sense of each text, when every one is a sentence of a shipped corpus with senses; else None."""
    known: dict[str, str] = {}
    for name, senses in SENSES.items():
        known.update({s.strip(): sense for s, sense in zip(CORPORA[name][1], senses)})
    out = [known.get(t.strip()) for t in texts]
    return out if len(out) >= 2 and all(out) else None


def within_across(cosine: np.ndarray, counts: Sequence[int], senses: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Means of ``cosine`` [R, n, n] over text pairs i < j of the same sense and of different senses, each
    pair weighted by counts[i] · counts[j] (its occurrence pairs); and the numbers of occurrence pairs."""
    n = len(senses)
    same, other = [], []
    for i in range(n):
        for j in range(i + 1, n):
            (same if senses[i] == senses[j] else other).append((i, j, counts[i] * counts[j]))

    def mean(pairs):
        if not pairs:
            return np.full(cosine.shape[0], np.nan), 0
        w = np.array([p[2] for p in pairs], float)
        values = np.stack([cosine[:, i, j] for i, j, _ in pairs], axis=1)
        return values @ w / w.sum(), int(w.sum())

    (within, n_within), (across, n_across) = mean(same), mean(other)
    return within, across, n_within, n_across


def sense_similarity(backend, texts: Sequence[str], word: str, senses: Sequence[str] | None = None,
                     options: GeometryOptions = GeometryOptions()) -> SenseSimilarity:
    """Within- and across-sense similarity of ``word`` in ``texts`` (senses: the shipped labels by default)."""
    texts = list(texts)
    senses = list(senses) if senses is not None else senses_of(texts)
    if senses is None:
        raise LensError("the senses of these sentences are not known: pick a shipped corpus with senses")
    if len(senses) != len(texts):
        raise LensError(f"{len(senses)} senses for {len(texts)} sentences")
    if len(set(senses)) < 2:
        raise LensError("the sentences use the word in one sense only: nothing to compare across senses")
    word = (word or "").strip()
    if not word:
        raise LensError("name the word whose senses to compare")
    opts = GeometryOptions(options.skip_first, options.skip_special, word)
    n = len(texts)
    counts = [0] * n
    cosine, layers, model = None, [], ""
    key = word_key(word)
    for i in range(n):
        for j in range(i + 1, n):
            try:
                g = backend.geometry([texts[i], texts[j]], opts)
            except LensError as exc:
                raise LensError(f"sentences {i + 1} and {j + 1}: {exc}") from None
            if cosine is None:
                cosine = np.full((len(g.layers), n, n), np.nan)
                layers, model = list(g.layers), g.model
            cosine[:, i, j] = cosine[:, j, i] = g.self_similarity_raw
            seen = [0, 0]
            for k, t in zip(g.text_index, g.tokens):  # text 0 of the pair is text i, text 1 is text j
                if word_key(t) == key:
                    seen[k] += 1
            counts[i], counts[j] = seen
    within, across, n_within, n_across = within_across(cosine, counts, senses)
    return SenseSimilarity(model=model, word=word, layers=layers, texts=texts, senses=senses, counts=counts,
                           cosine=cosine.astype(np.float32), within=within.astype(np.float32),
                           across=across.astype(np.float32), pairs_within=n_within, pairs_across=n_across,
                           options=opts.key())
