"""A word's senses (lens/senses.py): the labels of the shipped corpus, the within/across averaging on hand-made
numbers, and the bundled model's within- and across-sense similarity of “bank” against plain numpy on the
model's own hidden states."""
from __future__ import annotations

import numpy as np
import pytest

from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.examples import CORPORA, SENSES
from lens.model.loading import load_model
from lens.model.tokens import word_key
from lens.senses import sense_similarity, senses_of, within_across
from test_geometry import hidden

WORD, BANK = CORPORA["bank: river or money"]


def test_the_shipped_senses_name_every_sentence():
    for name, senses in SENSES.items():
        assert len(senses) == len(CORPORA[name][1]) and len(set(senses)) >= 2
    assert senses_of(BANK) == ["river", "money", "money", "river", "money", "river"]
    assert senses_of([BANK[1], " " + BANK[0] + " "]) == ["money", "river"]  # any subset, spaces aside
    assert senses_of(BANK[:1]) is None  # one sentence: nothing to compare
    assert senses_of(BANK[:2] + ["The bank of a typed sentence."]) is None  # a sentence of unknown sense


def test_within_and_across_are_pair_weighted_means():
    # Three texts: a and b of one sense, c of another; cosines per layer (two layers).
    cos = np.full((2, 3, 3), np.nan)
    for (i, j), v in {(0, 1): (0.9, 0.8), (0, 2): (0.5, 0.1), (1, 2): (0.3, 0.2)}.items():
        cos[:, i, j] = cos[:, j, i] = v
    within, across, n_w, n_a = within_across(cos, [1, 1, 1], ["x", "x", "y"])
    np.testing.assert_allclose(within, [0.9, 0.8])
    np.testing.assert_allclose(across, [0.4, 0.15])
    assert (n_w, n_a) == (1, 2)
    # Text b holds the word twice: its pairs count twice (means over occurrence pairs).
    within, across, n_w, n_a = within_across(cos, [1, 2, 1], ["x", "x", "y"])
    np.testing.assert_allclose(across, [(0.5 + 2 * 0.3) / 3, (0.1 + 2 * 0.2) / 3])
    assert (n_w, n_a) == (2, 3)


@pytest.fixture(scope="module")
def smol():
    return local_backend(load_model("smollm2-135m"))


def test_bank_within_and_across_senses_against_numpy(smol):
    """The word's vector in each sentence from transformers' hidden states (the last block's raw output by a
    hook), cosines between every two sentences, averaged by hand over same-sense and different-sense pairs."""
    s = sense_similarity(smol, BANK, WORD)
    senses = SENSES["bank: river or money"]
    tok = smol.loaded.tokenizer
    vectors = []
    for text in BANK:
        H = hidden(smol.loaded, text)
        pieces = [tok.decode([i]) for i in tok(text)["input_ids"]]
        at = [k for k, p in enumerate(pieces) if k > 0 and word_key(p) == WORD]
        assert len(at) == 1
        vectors.append(H[:, at[0]])
    V = np.stack(vectors, axis=1)  # [R, 6, d]
    U = V / np.linalg.norm(V, axis=-1, keepdims=True)
    same, other = [], []
    for i in range(6):
        for j in range(i + 1, 6):
            (same if senses[i] == senses[j] else other).append((U[:, i] * U[:, j]).sum(-1))
    np.testing.assert_allclose(s.within, np.mean(same, axis=0), atol=2e-4)
    np.testing.assert_allclose(s.across, np.mean(other, axis=0), atol=2e-4)
    assert (s.pairs_within, s.pairs_across) == (6, 9) and s.counts == [1] * 6
    assert s.senses == list(senses) and len(s.layers) == V.shape[0]
    np.testing.assert_allclose(s.within[0], 1, atol=1e-5)  # one token, one embedding: the same vector
    # Context separates the senses: from the middle layers on, same-sense pairs are the more alike.
    assert (s.within[10:] > s.across[10:]).all()


def test_senses_refuse_what_they_cannot_compare(smol):
    with pytest.raises(LensError, match="not known"):
        sense_similarity(smol, ["The bank was closed.", "We sat on the bank."], WORD)
    with pytest.raises(LensError, match="one sense only"):
        sense_similarity(smol, [BANK[0], BANK[3]], WORD)
    with pytest.raises(LensError, match="sentences 1 and 2"):
        sense_similarity(smol, BANK[:2], "zebra", senses=["a", "b"])
    with pytest.raises(LensError, match="name the word"):
        sense_similarity(smol, BANK[:2], "  ")


def test_the_geometry_view_draws_the_senses_of_a_corpus_only(smol):
    from lens.views import render_view

    v = render_view(smol, "geometry", BANK, word=WORD, metric="senses")
    s = v.results[0]
    assert [t.name for t in v.figures[0].data] == ["same sense (6 pairs)", "different senses (9 pairs)"]
    np.testing.assert_allclose(v.figures[0].data[0].y, s.within)
    np.testing.assert_allclose(v.figures[0].data[1].y, s.across)
    with pytest.raises(LensError, match="give a corpus"):
        render_view(smol, "geometry", BANK[0], word=WORD, metric="senses")
    with pytest.raises(LensError, match="unknown geometry measure"):
        render_view(smol, "geometry", BANK, word=WORD, metric="zebra")
