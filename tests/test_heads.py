"""Head patterns are the model's own attention; head scores against direct computations."""
from lens.options import HeadOptions
import math

import numpy as np
import pytest
import torch

from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.analysis.heads import attention_entropy, repeat_scores, repeated_random_ids
from lens.model.loading import load_model


def model_attentions(loaded, text):
    ids = loaded.tokenizer(text)["input_ids"]
    with torch.no_grad():
        out = loaded.model(input_ids=torch.tensor([ids]), output_attentions=True)
    return [a[0].float().numpy() for a in out.attentions]


@pytest.fixture(scope="module")
def backend(bundled):
    return local_backend(bundled, cache=None)


@pytest.fixture(scope="module")
def encoder():
    return local_backend(load_model("minilm-l6"), cache=None)


@pytest.mark.parametrize("which", ["decoder", "encoder"])
def test_patterns_equal_model_attention(which, backend, encoder):
    b = backend if which == "decoder" else encoder
    text = "The capital of France is Paris"
    ref = model_attentions(b.loaded, text)
    for layer in (1, len(ref)):
        p = b.head_patterns(text, HeadOptions(layer))
        np.testing.assert_allclose(p.attention, ref[layer - 1], atol=1e-6)
        assert p.tokens == b.tokenize(text)
        np.testing.assert_allclose(p.attention.sum(-1), 1.0, atol=1e-5)


def test_bad_layer_is_a_lens_error(backend):
    with pytest.raises(LensError, match="out of range"):
        backend.head_patterns("hello", HeadOptions(backend.loaded.n_layers + 1))
    with pytest.raises(LensError, match="out of range"):
        backend.head_patterns("hello", HeadOptions(0))


def test_entropy_by_hand():
    a = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]])
    by_hand = (math.log(2) + (-(2 * 0.25 * math.log(0.25)) - 0.5 * math.log(0.5))) / 2  # queries 1 and 2
    assert attention_entropy(a, causal=True).item() == pytest.approx(by_hand)
    assert attention_entropy(a, causal=False).item() == pytest.approx(by_hand * 2 / 3)


def test_repeat_scores_on_ideal_heads():
    n, off = 5, 1
    T = off + 2 * n
    prev = torch.zeros(T, T)
    ind = torch.zeros(T, T)
    for i in range(T):
        prev[i, max(i - 1, 0)] = 1
        ind[i, i - n + 1 if i >= off + n else 0] = 1
    att = {0: torch.stack([prev, ind])}
    p, q = repeat_scores(att, 1, n, off)
    np.testing.assert_allclose(p[0], [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(q[0], [0.0 if n > 2 else 1.0, 1.0], atol=1e-7)


def test_repeated_sequence_is_repeated(bundled, encoder):
    for loaded in (bundled, encoder.loaded):
        tok = loaded.tokenizer
        ids, n, off = repeated_random_ids(tok, len(tok))
        assert ids[off:off + n] == ids[off + n:off + 2 * n]
        assert len(set(ids[off:off + n])) == n
    ids, n, off = repeated_random_ids(encoder.loaded.tokenizer, 30000)
    assert ids[0] == encoder.loaded.tokenizer.cls_token_id and ids[-1] == encoder.loaded.tokenizer.sep_token_id


def test_summary_on_bundled_model(backend, bundled):
    text = "The capital of France is"
    s = backend.head_summary(text)
    L, H = bundled.n_layers, bundled.model.config.num_attention_heads
    assert s.entropy.shape == s.prev_token.shape == s.induction.shape == (L, H)
    ref = model_attentions(bundled, text)
    def entropy(w):  # one head's [T, T]; the first query (which sees only itself) left out
        return float((-(w * np.log(np.clip(w, 1e-30, None))).sum(-1))[1:].mean())

    ent = np.array([[entropy(a[h]) for h in range(H)] for a in ref])
    np.testing.assert_allclose(s.entropy, ent, atol=1e-4)
    # Independent: the repeated sequence's attention straight from the model.
    ids, n, off = repeated_random_ids(bundled.tokenizer, len(bundled.tokenizer))
    with torch.no_grad():
        out = bundled.model(input_ids=torch.tensor([ids]), output_attentions=True)
    l, h = np.unravel_index(np.argmax(s.induction), s.induction.shape)
    a = out.attentions[l][0, h].double().numpy()
    qs = np.arange(off + n, off + 2 * n)
    assert s.induction[l, h] == pytest.approx(a[qs, qs - n + 1].mean(), abs=1e-5)
    # A trained LM has induction and previous-token heads; random attention would score ~1/T.
    assert s.induction.max() > 0.3 and s.prev_token.max() > 0.3
