"""Steering (lens/steering/), checked against plain computations written here: the contrast vector against
``output_hidden_states``, steered generation against this file's own hook on the HF model and a token loop without a
cache, each mode against its formula, coefficient 0 against the plain run, bad input as one line."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import load_model
from lens.steering.options import SteerOptions
from lens.steering.steer import steer_vector

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


# ---------------------------------------------------------------- plain computations, independent of lens code

def blocks_of(model):
    inner = getattr(model, "model", None) or getattr(model, "transformer")
    return getattr(inner, "layers", None) or getattr(inner, "h")


def entering(model, ids, layer):
    """[T, d] the residual stream entering block ``layer`` (1-based): hidden_states[layer − 1]."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[layer - 1][0].double()


def hf_contrast(model, tok, pos, neg, layer):
    diffs = []
    for p, n in zip(pos, neg):
        a, b = tok(p)["input_ids"], tok(n)["input_ids"]
        diffs.append(entering(model, a, layer)[-1] - entering(model, b, layer)[-1])
    return torch.stack(diffs).mean(0)


def hooked_generate(model, block, ids, n_new, change, n_prompt, which):
    """Greedy continuation with ``change(h)`` applied to the stream entering ``block`` at the positions ``which``
    picks, every step recomputed from the start (no cache), stopping after the end-of-text token; and the
    log-softmax after the prompt."""
    eos = getattr(getattr(model, "generation_config", model.config), "eos_token_id", None)  # the plain model: its config's
    eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    def hook(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        T = h.shape[1]
        keep = torch.tensor([which(i, n_prompt) for i in range(T)])
        y = torch.where(keep[None, :, None], change(h.double()).to(h.dtype), h)
        return ((y, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": y})
    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        seq, first = list(ids), None
        with torch.no_grad():
            for _ in range(n_new):
                z = model(input_ids=torch.tensor([seq])).logits[0, -1].double()
                if first is None:
                    first = torch.log_softmax(z, -1)
                seq.append(int(z.argmax()))
                if seq[-1] in eos:
                    break
    finally:
        handle.remove()
    return seq[len(ids):], first


WHICH = {"all": lambda i, n: True, "after-prompt": lambda i, n: i >= n - 1, "front": lambda i, n: i < min(2, n)}


# ---------------------------------------------------------------- the vector

@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_contrast_vector_is_the_mean_difference_of_hidden_states(models, name):
    lm, b = models(name)
    pos, neg = ("good day", "a warm hug"), ("bad day", "a cold one")
    r = b.steer(PROMPT, SteerOptions(positive=pos, negative=neg, layer=2, coef=1.0, max_new_tokens=2, dose=False))
    v = hf_contrast(lm.model, lm.tokenizer, pos, neg, 2)
    assert r.vector_norm == pytest.approx(float(v.norm()), rel=1e-5)
    h = entering(lm.model, lm.tokenizer(PROMPT)["input_ids"], 2)
    assert r.mean_norm == pytest.approx(float(h[1:].norm(dim=-1).mean()), rel=1e-5)


# ---------------------------------------------------------------- coefficient 0 and the added vector

@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_coefficient_zero_is_the_plain_run(models, temperature):
    _, b = models("tiny-llama")
    from lens.options import GenerateOptions

    o = SteerOptions(positive=("good",), negative=("bad",), layer=2, coef=0.0, max_new_tokens=12,
                     temperature=temperature, seed=3)
    r = b.steer(PROMPT, o)
    assert r.steered_ids == r.plain_ids and r.steered_text == r.plain_text
    gen = b.generate(PROMPT, GenerateOptions(max_new_tokens=12, temperature=temperature, seed=3))
    assert r.plain_ids == gen.token_ids[gen.n_prompt:]
    np.testing.assert_array_equal(r.lens_plain, r.lens_steered)
    # a real coefficient changes the run (the test above could not pass by ignoring the edit)
    r2 = b.steer(PROMPT, SteerOptions(positive=("good",), negative=("bad",), layer=2, coef=30.0, max_new_tokens=12,
                                      temperature=temperature, seed=3))
    assert r2.steered_ids != r2.plain_ids and r2.plain_ids == r.plain_ids


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("positions", ["all", "after-prompt", "front"])
def test_added_vector_equals_a_hook_on_the_hf_model(models, name, positions):
    lm, b = models(name)
    layer, coef = 2, 6.0
    o = SteerOptions(positive=("good",), negative=("bad",), layer=layer, coef=coef, positions=positions,
                     front_tokens=2, max_new_tokens=8)
    r = b.steer(PROMPT, o)
    v = hf_contrast(lm.model, lm.tokenizer, ("good",), ("bad",), layer)
    ids = lm.tokenizer(PROMPT)["input_ids"]
    new, first = hooked_generate(lm.model, blocks_of(lm.model)[layer - 1], ids, 8, lambda h: h + coef * v,
                                 len(ids), WHICH[positions])
    assert r.steered_ids == new
    i = list(r.dose_coefs).index(coef)
    assert r.dose_logprob[i] == pytest.approx(float(first[r.target_id]), abs=1e-4)
    assert r.lens_steered[-1] == pytest.approx(float(first[r.target_id]), abs=1e-4)  # the last layer is the output
    plain, _ = hooked_generate(lm.model, blocks_of(lm.model)[layer - 1], ids, 8, lambda h: h, len(ids), WHICH["all"])
    assert r.plain_ids == plain


def test_norm_unit_scales_by_the_mean_residual_norm(models):
    lm, b = models("tiny-llama")
    r = b.steer(PROMPT, SteerOptions(positive=("good",), negative=("bad",), layer=3, coef=0.5, unit="norm",
                                     max_new_tokens=6))
    v = hf_contrast(lm.model, lm.tokenizer, ("good",), ("bad",), 3)
    ids = lm.tokenizer(PROMPT)["input_ids"]
    m = float(entering(lm.model, ids, 3)[1:].norm(dim=-1).mean())
    assert r.coef_raw == pytest.approx(0.5 * m / float(v.norm()), rel=1e-5)
    assert r.coef_raw * r.vector_norm == pytest.approx(0.5 * m, rel=1e-5)  # the added vector is half the mean norm
    new, _ = hooked_generate(lm.model, blocks_of(lm.model)[2], ids, 6, lambda h: h + r.coef_raw * v, len(ids),
                             WHICH["all"])
    assert r.steered_ids == new


def test_token_vector_is_the_unembedding_row(models):
    lm, b = models("tiny-llama")
    t = lm.tokenizer("x", add_special_tokens=False)["input_ids"][0]
    r = b.steer(PROMPT, SteerOptions(vector="token", token="x", layer=2, coef=3.0, max_new_tokens=5))
    w = lm.model.get_output_embeddings().weight[t].double().detach()
    assert r.vector_norm == pytest.approx(float(w.norm()), rel=1e-6)
    ids = lm.tokenizer(PROMPT)["input_ids"]
    new, _ = hooked_generate(lm.model, blocks_of(lm.model)[1], ids, 5, lambda h: h + 3.0 * w, len(ids), WHICH["all"])
    assert r.steered_ids == new


# ---------------------------------------------------------------- each mode against its formula

def test_modes_against_their_formulas():
    g = torch.Generator().manual_seed(0)
    h, v = torch.randn(3, 5, 16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    par = (h @ v / (v @ v))[..., None] * v  # the part of h along v
    perp = h - par
    assert torch.allclose(steer_vector(h, v, "add", 2.0, 2.0), h + 2.0 * v)
    assert torch.allclose(steer_vector(h, v, "ablate", 7.0, 7.0), perp)
    assert torch.allclose(steer_vector(h, v, "orthogonal", 0.3, 99.0), perp + 0.3 * par)
    assert torch.allclose(steer_vector(h, v, "orthogonal", 1.0, 99.0), h)
    s = 0.1  # cap the projection on the unit direction at s·‖v‖ (coef_raw = s)
    u = v / v.norm()
    p = h @ u
    capped = torch.where((p > s * v.norm())[..., None], perp + s * v.norm() * u, h)
    assert torch.allclose(steer_vector(h, v, "cap", s, s), capped)
    assert (p > s * v.norm()).any() and (p <= s * v.norm()).any()  # both branches were checked


@pytest.mark.parametrize("mode", ["orthogonal", "cap", "ablate"])
def test_modes_through_the_engine(models, mode):
    lm, b = models("tiny-llama")
    ids = lm.tokenizer(PROMPT)["input_ids"]
    layer, coef = 2, -0.5
    v = hf_contrast(lm.model, lm.tokenizer, ("good",), ("bad",), layer)
    u = v / v.norm()
    r = b.steer(PROMPT, SteerOptions(positive=("good",), negative=("bad",), layer=layer, coef=coef, mode=mode,
                                     max_new_tokens=6))

    def change(h):
        p = (h @ u)[..., None]
        if mode == "ablate":
            return h - p * u
        if mode == "orthogonal":
            return h - p * u + coef * p * u
        return torch.where(p > coef * v.norm(), h - p * u + coef * v.norm() * u, h)
    new, first = hooked_generate(lm.model, blocks_of(lm.model)[layer - 1], ids, 6, change, len(ids), WHICH["all"])
    assert r.steered_ids == new
    assert r.lens_steered[-1] == pytest.approx(float(first[r.target_id]), abs=1e-4)
    if mode == "ablate":
        assert len(r.dose_coefs) == 0
    else:
        assert coef in list(r.dose_coefs)


# ---------------------------------------------------------------- the bundled model

def test_bundled_model_steers_as_a_hook_does(models):
    lm, b = models("smollm2-135m")
    prompt, layer, coef = "I think that you are", 6, 8.0
    r = b.steer(prompt, SteerOptions(positive=("I love",), negative=("I hate",), layer=layer, coef=coef,
                                     max_new_tokens=6, dose=False))
    v = hf_contrast(lm.model, lm.tokenizer, ("I love",), ("I hate",), layer)
    ids = lm.tokenizer(prompt)["input_ids"]
    new, first = hooked_generate(lm.model, lm.model.model.layers[layer - 1], ids, 6, lambda h: h + coef * v,
                                 len(ids), WHICH["all"])
    assert r.steered_ids == new and r.steered_ids != r.plain_ids
    assert r.target == " love"  # the default target: the positive's first token that differs from the negative's
    assert r.lens_steered[-1] == pytest.approx(float(first[r.target_id]), abs=1e-3)


# ---------------------------------------------------------------- the command line, bad input

def test_cli_json_and_coefficient_zero(capsys):
    code = main(["steer", "--model", "tiny-llama", "--prompt", PROMPT, "--positive", "good", "--negative", "bad",
                 "--layer", "2", "--coef", "0", "--max-new-tokens", "6", "--no-cache", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["plain"] == out["steered"] and 1 <= len(out["plain"]["ids"]) <= 6
    assert out["vector_norm"] > 0 and out["mode"] == "add" and out["positions"] == "all"
    code = main(["steer", "--model", "tiny-llama", "--prompt", PROMPT, "--positive", "good", "--negative", "bad",
                 "--layer", "2", "--coef", "30", "--max-new-tokens", "6", "--no-cache", "--json"])
    out2 = json.loads(capsys.readouterr().out)
    assert out2["plain"] == out["plain"] and out2["steered"] != out2["plain"]
    assert math.isclose(out2["vector_norm"], out["vector_norm"])


@pytest.mark.parametrize("extra, says", [
    (["--layer", "0"], "layer"),
    (["--layer", "99"], "layer"),
    (["--layer", "2", "--positive", "x"], "pairs"),
    (["--layer", "2", "--coef", "nan"], "coefficient"),
    (["--layer", "2", "--max-new-tokens", "0"], "new tokens"),
    (["--layer", "2", "--target", "two tokens"], "target"),
])
def test_bad_input_is_one_line(capsys, extra, says):
    code = main(["steer", "--model", "tiny-llama", "--prompt", PROMPT, "--positive", "good", "--negative", "bad",
                 "--no-cache", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and says in err and err.startswith("error:")


def test_bad_options_refused_before_any_run(models):
    _, b = models("tiny-llama")
    for o, says in [(SteerOptions(positive=(), negative=(), layer=1), "positive"),
                    (SteerOptions(positive=("a",), negative=("b",), layer=1, mode="push"), "mode"),
                    (SteerOptions(vector="token", layer=1), "token"),
                    (SteerOptions(positive=("same",), negative=("same",), layer=2), "zero")]:
        with pytest.raises(LensError, match=says):
            b.steer(PROMPT, o)


def test_saved_run_reads_back(tmp_path, monkeypatch, capsys):
    from lens.runs.store import RunStore

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    code = main(["steer", "--model", "tiny-llama", "--prompt", PROMPT, "--positive", "good", "--negative", "bad",
                 "--layer", "2", "--coef", "3", "--max-new-tokens", "4", "--no-cache", "--json", "--save", "s"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    r = RunStore(tmp_path / "runs.sqlite").get(1).results[0]
    assert r.steered_ids == out["steered"]["ids"] and r.vector_norm == pytest.approx(out["vector_norm"])


def test_opening_the_dose_response_reuses_the_shown_texts(tmp_path):
    """With a results cache, asking for the dose-response after the plain run generates only the dose-response's own
    texts; the result is the one computed in one go (without a cache)."""
    from dataclasses import replace

    from lens.cache import ResultCache

    lm = load_model("tiny-llama")
    b = local_backend(lm, ResultCache(tmp_path))
    o = SteerOptions(positive=("good",), negative=("bad",), layer=2, coef=4.0, max_new_tokens=6, dose=False)
    shown = b.steer(PROMPT, o)
    calls = []
    generate = b.engine.generate
    b.engine.generate = lambda *a, **k: calls.append(k.get("write")) or generate(*a, **k)
    with_dose = b.steer(PROMPT, replace(o, dose=True))
    b.engine.generate = generate
    assert len(calls) == len(with_dose.text_coefs) > 0  # no plain or steered continuation generated again
    whole = local_backend(load_model("tiny-llama"), None).steer(PROMPT, replace(o, dose=True))
    assert with_dose.steered_ids == shown.steered_ids == whole.steered_ids and with_dose.plain_ids == whole.plain_ids
    np.testing.assert_allclose(with_dose.dose_logprob, whole.dose_logprob, atol=1e-6)
    assert with_dose.texts == whole.texts and with_dose.text_coefs == whole.text_coefs
    np.testing.assert_allclose(with_dose.lens_steered, whole.lens_steered, atol=1e-6)
