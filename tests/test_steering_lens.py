"""The lens of both steering runs and their per-cell difference (SteerResult.grid_*), checked against this file's own
hook on the HF model: the vector added to the stream entering the block, every hidden state decoded through the final
norm and the unembedding; coefficient 0 gives a zero difference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.steering.options import SteerOptions

PROMPT = "the cat sat"


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            lm = load_model(name)
            cache[name] = (lm, local_backend(lm, None))
        return cache[name]
    return get


def blocks_of(model):
    inner = getattr(model, "model", None) or getattr(model, "transformer")
    return getattr(inner, "layers", None) or getattr(inner, "h")


def final_norm(model):
    inner = getattr(model, "model", None) or getattr(model, "transformer")
    return getattr(inner, "norm", None) or getattr(inner, "ln_f")


def hooked_lens(model, ids, layer, change, which):
    """[R, T, V] log-softmax of every hidden state (row 0 the embeddings) with ``change`` applied to the stream
    entering block ``layer`` at the positions ``which`` marks, by a pre-hook written here."""
    def hook(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        keep = torch.tensor([which(i) for i in range(h.shape[1])])
        y = torch.where(keep[None, :, None], change(h.double()).to(h.dtype), h)
        return ((y, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": y})
    handle = blocks_of(model)[layer - 1].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    finally:
        handle.remove()
    hs = out.hidden_states
    W = model.get_output_embeddings().weight
    # HF gives the last hidden state after the final norm; every other one before it.
    rows = [final_norm(model)(h[0]) @ W.T for h in hs[:-1]] + [out.logits[0]]
    return torch.log_softmax(torch.stack(rows).double(), -1)


def contrast(model, tok, pos, neg, layer):
    def last(text):
        with torch.no_grad():
            return model(input_ids=torch.tensor([tok(text)["input_ids"]]),
                         output_hidden_states=True).hidden_states[layer - 1][0, -1].double()
    return last(pos) - last(neg)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("positions", ["all", "after-prompt"])
def test_steered_lens_equals_a_hook_that_adds_the_vector(models, name, positions):
    lm, b = models(name)
    layer, coef = 2, 5.0
    r = b.steer(PROMPT, SteerOptions(positive=("good",), negative=("bad",), layer=layer, coef=coef,
                                     positions=positions, max_new_tokens=6, dose=False))
    ids = lm.tokenizer(PROMPT)["input_ids"]
    full = ids + r.plain_ids
    assert len(r.grid_tokens) == len(full) and len(r.grid_rows) == lm.model.config.num_hidden_layers + 1
    v = contrast(lm.model, lm.tokenizer, "good", "bad", layer)
    which = (lambda i: True) if positions == "all" else (lambda i: i >= len(ids) - 1)
    plain = hooked_lens(lm.model, full, layer, lambda h: h, lambda i: False)
    steered = hooked_lens(lm.model, full, layer, lambda h: h + coef * v, which)
    t = r.target_id
    np.testing.assert_allclose(r.grid_plain_logprob, plain[..., t].numpy(), atol=2e-4)
    np.testing.assert_allclose(r.grid_steered_logprob, steered[..., t].numpy(), atol=2e-4)
    np.testing.assert_allclose(r.grid_difference, (steered - plain)[..., t].numpy(), atol=3e-4)
    np.testing.assert_allclose(r.grid_steered_top_prob, steered.max(-1).values.exp().numpy(), atol=1e-4)
    top = steered.argmax(-1)
    clear = (steered.topk(2, -1).values.diff(dim=-1).abs()[..., 0] > 1e-3).numpy()  # no near-tie for the top-1
    from lens.model.tokens import decode_token  # names a token id as the lens names it (bytes as <0x..>)

    shown = np.array([[decode_token(lm.tokenizer, int(i)) for i in row] for row in top], dtype=object)
    got = np.array(r.grid_steered_top, dtype=object)
    assert clear.sum() > 0.8 * clear.size and (got[clear] == shown[clear]).all()
    # rows before the edit are untouched; the edit changes the rows after it
    assert np.all(r.grid_difference[:layer] == 0) and np.abs(r.grid_difference[layer:]).max() > 0.01
    # the last row is the model's own output: the steered run's next-token log-probability after the prompt
    assert r.grid_steered_logprob[-1, len(ids) - 1] == pytest.approx(r.lens_steered[-1], abs=1e-4)


def test_coefficient_zero_gives_a_zero_difference(models):
    _, b = models("tiny-llama")
    r = b.steer(PROMPT, SteerOptions(positive=("good",), negative=("bad",), layer=2, coef=0.0, max_new_tokens=5,
                                     dose=False))
    assert r.grid_difference.shape == (len(r.grid_rows), len(r.grid_tokens)) and r.grid_difference.size
    assert np.all(r.grid_difference == 0) and r.grid_plain_top == r.grid_steered_top


def test_no_grid_when_not_asked(models):
    _, b = models("tiny-llama")
    r = b.steer(PROMPT, SteerOptions(positive=("good",), negative=("bad",), layer=2, coef=2.0, max_new_tokens=3,
                                     dose=False, grid=False))
    assert r.grid_rows == [] and r.grid_difference.size == 0


def test_bundled_love_hate_lens_difference(models):
    """The love ↔ hate preset's numbers: ' love' gains in the steered run's lens after the steered block."""
    from lens.views.steering import PRESETS

    _, b = models("smollm2-135m")
    prompt, pos, neg, layer, coef, unit, where = PRESETS["love ↔ hate"]
    r = b.steer(prompt, SteerOptions(positive=(pos,), negative=(neg,), layer=layer, coef=coef, unit=unit,
                                     positions=where, max_new_tokens=12, dose=False))
    assert r.target == " love" and r.grid_difference.shape == (31, len(r.grid_tokens))
    assert np.all(r.grid_difference[:layer] == 0)
    last = r.n_prompt - 1
    assert r.grid_difference[-1, last] == pytest.approx(r.lens_steered[-1] - r.lens_plain[-1], abs=1e-3)
    assert r.grid_difference[layer:].mean() > 0.5  # ' love' rises across the lens after the edit
