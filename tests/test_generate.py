"""Watch it generate: the continuation equals Hugging Face's own generate (greedy) or is fixed by its
seed (sampled), each token's probability is the model's, and the lens follows the exact ids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lens.errors import LensError
from lens.figures.generation import generation_figure, token_table
from lens.engine_backend import local_backend
from lens.model.loading import load_model, with_transformers_model
from lens.model.tokens import visible
from lens.engine.trace import CaptureSpec
from lens.analysis.logit_lens import logit_lens
from lens.options import GenerateOptions, LensOptions

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def smol(bundled):
    return local_backend(bundled, None)


def model_probs(loaded, ids: list[int]) -> torch.Tensor:
    """softmax of the model's logits at every position, from one plain forward pass."""
    with torch.no_grad():
        return torch.softmax(loaded.model(torch.tensor([ids])).logits[0].double(), -1)


def test_greedy_matches_hugging_face_generate(smol, bundled):
    gen = smol.generate(PROMPT, GenerateOptions(max_new_tokens=12))
    ids = torch.tensor([bundled.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        ref = with_transformers_model(bundled).model.generate(ids, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(ids),
                                     pad_token_id=bundled.tokenizer.eos_token_id)[0].tolist()
    assert gen.token_ids == ref[:len(gen.token_ids)]
    assert gen.tokens[gen.n_prompt] == " Paris"
    p = model_probs(bundled, gen.token_ids)
    for k, prob in enumerate(gen.chosen_probs):
        pos = gen.n_prompt + k - 1
        assert prob == pytest.approx(float(p[pos, gen.token_ids[pos + 1]]), abs=2e-4)
        assert int(p[pos].argmax()) == gen.token_ids[pos + 1]  # greedy: the top-1 each time


@pytest.mark.parametrize("arch", ["tiny-gpt2", "tiny-llama", "tiny-opt"])
def test_sampling_is_fixed_by_its_seed(arch):
    b = local_backend(load_model(arch), None)
    runs = {seed: b.generate("hello there", GenerateOptions(max_new_tokens=16, temperature=1.0, seed=seed))
            for seed in (1, 2)}
    again = b.generate("hello there", GenerateOptions(max_new_tokens=16, temperature=1.0, seed=1))
    assert again.token_ids == runs[1].token_ids
    assert runs[1].token_ids != runs[2].token_ids  # a random model at T=1: 16 draws agreeing by chance is ~0
    p = model_probs(b.loaded, runs[1].token_ids)
    for k, prob in enumerate(runs[1].chosen_probs):
        pos = runs[1].n_prompt + k - 1
        assert prob == pytest.approx(float(p[pos, runs[1].token_ids[pos + 1]]), rel=1e-3, abs=1e-6)


def test_the_lens_follows_the_generated_ids(smol, bundled):
    options = GenerateOptions(max_new_tokens=8)
    gen = smol.generate(PROMPT, options)
    lens = smol.generation_lens(PROMPT, options, LensOptions(top_k=3))
    ref = logit_lens(smol._capture(gen.token_ids, CaptureSpec(residual=True)), bundled.tokenizer, LensOptions(top_k=3))
    np.testing.assert_array_equal(lens.top_ids, ref.top_ids)
    # Causal: the prompt's own columns are the prompt's lens.
    own = smol.logit_lens(PROMPT, LensOptions(top_k=3))
    np.testing.assert_array_equal(lens.top_ids[:, :gen.n_prompt], own.top_ids)
    np.testing.assert_allclose(lens.top_probs[:, :gen.n_prompt], own.top_probs, atol=1e-5)
    # The last row's top-1 at each column that chose a token is that token (greedy).
    for k in range(len(gen.token_ids) - gen.n_prompt):
        assert lens.top_ids[-1, gen.n_prompt + k - 1, 0] == gen.token_ids[gen.n_prompt + k]
    table = token_table(gen, lens)
    for row in table:
        pos = gen.n_prompt + row["step"] - 2
        settled = [r for r in range(len(lens.layers))
                   if (lens.top_ids[r:, pos, 0] == gen.token_ids[pos + 1]).all()][0]
        assert row["top-1 from layer"] == lens.layers[settled]


def test_the_animation_shows_one_more_column_per_step(smol):
    options = GenerateOptions(max_new_tokens=5)
    gen = smol.generate(PROMPT, options)
    fig = generation_figure(gen, smol.generation_lens(PROMPT, options, LensOptions(top_k=1)), stride=3)
    assert len(fig.frames) == 6
    for k, frame in enumerate(fig.frames):
        z = np.asarray(frame.data[0].z, float)
        shown = np.isfinite(z).any(axis=0)
        assert shown.sum() == gen.n_prompt + k and shown[:gen.n_prompt + k].all()
        if k < 5:
            assert f"writes “{visible(gen.tokens[gen.n_prompt + k])}”" in frame.layout.title.text


def test_bad_requests_are_refused(smol):
    for bad in (GenerateOptions(max_new_tokens=0), GenerateOptions(max_new_tokens=65),
                GenerateOptions(temperature=-1), GenerateOptions(seed=-3)):
        with pytest.raises(LensError):
            smol.generate(PROMPT, bad)
    with pytest.raises(LensError, match="does not generate"):
        local_backend(load_model("minilm-l6"), None).generate("hello", GenerateOptions())


def test_each_new_tokens_attention_is_its_prefixs_attention(smol, bundled):
    """Row k is where the position that chose new token k looked, averaged over heads and layers: equal
    to the same average over the model's own attention weights for that prefix alone (causal)."""
    from lens.figures.generation import generation_attention_figure

    options = GenerateOptions(max_new_tokens=4)
    gen = smol.generate(PROMPT, options)
    r = smol.generation_attention(PROMPT, options)
    assert r.positions == list(range(gen.n_prompt - 1, len(gen.token_ids) - 1))
    model = bundled.model
    old = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        for k, p in enumerate(r.positions):
            with torch.no_grad():
                att = model(torch.tensor([gen.token_ids[:p + 1]]), output_attentions=True).attentions
            ref = torch.stack([a[0, :, -1, :].double().mean(0) for a in att]).mean(0).numpy()
            np.testing.assert_allclose(r.attention[k, :p + 1], ref, atol=1e-5)
            assert np.allclose(r.attention[k, p + 1:], 0) and abs(r.attention[k].sum() - 1) < 1e-4
    finally:
        model.set_attn_implementation(old)
    fig = generation_attention_figure(r)
    assert len(fig.data[0].y) == 4 and len(fig.data[0].x) == len(gen.token_ids) - 1  # first token left out
