"""Causal tracing with noise, against a plain computation: the Hugging Face model run with hooks written here
(noise added to the first block's input, one block's output put back from the clean run), sample by sample;
the resumed and the plain engine paths agree; bad options are one message."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.interventions.noise import noise_trace
from lens.model.loading import load_model
from lens.options import NoiseOptions

PROMPT = "the cat sat on the mat"
SUBJECT = [4, 5, 6]  # "cat"


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def by_hand(loaded, ids, subject, target, row, position, samples, seed, scale=3.0):
    """The mean log p(target) at the last position over the noise samples, with residual row ``row`` (0: the
    first block's input; r: block r's output) at ``position`` put back from the clean run."""
    model, blocks = loaded.model, loaded.adapter.blocks
    x = torch.tensor([ids])
    kept = {}

    def keep(i):
        def hook(module, args, kwargs, out):
            kept[i] = _first(out).detach().clone()
        return hook

    def keep_input(module, args, kwargs):
        kept["in"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handles = [b.register_forward_hook(keep(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles.append(blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True))
    with torch.no_grad():
        model(input_ids=x)
    for h in handles:
        h.remove()
    emb = kept["in"][0]
    std = float(emb[subject].float().std())
    noise = torch.randn(samples, len(subject), emb.shape[-1], generator=torch.Generator().manual_seed(seed))
    noise = noise * (scale * std)
    values = []
    for s in range(samples):
        def add_noise(module, args, kwargs, s=s):
            h = (args[0] if args else kwargs["hidden_states"]).clone()
            h[0, subject] += noise[s].to(h.dtype)
            if row == 0:
                h[0, position] = emb[position]
            return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

        def put_back(module, args, kwargs, out):
            h = _first(out).clone()
            h[0, position] = kept[row - 1][0, position]
            return (h, *out[1:]) if isinstance(out, tuple) else h

        hs = [blocks[0].register_forward_pre_hook(add_noise, with_kwargs=True)]
        if row > 0:
            hs.append(blocks[row - 1].register_forward_hook(put_back, with_kwargs=True))
        with torch.no_grad():
            logits = model(input_ids=x).logits[0, -1].double()
        for h in hs:
            h.remove()
        values.append(float(torch.log_softmax(logits, -1)[target]))
    return float(np.mean(values))


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2", "tiny-qwen2"])
def test_cells_against_hooks_written_here(arch):
    loaded = load_model(arch)
    backend = local_backend(loaded, None)
    ids = backend.token_ids(PROMPT)
    target = ids[-1]  # any token: the metric is its log-probability
    got = noise_trace(backend.engine, ids, SUBJECT, target, None, "resid", samples=3, seed=7)
    L, T = loaded.adapter.n_layers, len(ids)
    assert got["raw"].shape == (L + 1, T)
    for row, position in [(0, 5), (1, 6), (2, 8), (L - 1, T - 1), (1, 2)]:
        expected = by_hand(loaded, ids, SUBJECT, target, row, position, 3, 7)
        assert got["raw"][row, position] == pytest.approx(expected, abs=2e-4), (row, position)
    # Nothing restored before the first noised token changes anything: those cells are the noised metric.
    assert np.allclose(got["raw"][:L, :SUBJECT[0]], got["m_noised"])
    assert got["raw"][L, T - 1] == pytest.approx(got["m_clean"])


@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_the_resumed_path_equals_the_plain_one(site):
    backend = local_backend(load_model("tiny-llama"), None)
    engine = backend.engine
    ids = backend.token_ids(PROMPT)
    fast = noise_trace(engine, ids, [1, 2], 5, 7, site, samples=2, seed=1)
    caps = engine.capabilities
    engine.capabilities = dataclasses.replace(caps, resumes=False)
    try:
        plain = noise_trace(engine, ids, [1, 2], 5, 7, site, samples=2, seed=1)
    finally:
        engine.capabilities = caps
    np.testing.assert_allclose(fast["raw"], plain["raw"], atol=1e-5)


def test_the_backend_result_and_the_command():
    backend = local_backend(load_model("tiny-llama"), None)
    r = backend.noise_trace(PROMPT, NoiseOptions(subject=(4, -17), samples=2))  # -17: position 5
    assert r.subject == [4, 5] and r.layers[0] == "emb" and r.patch.shape == (len(r.layers), len(r.tokens))
    expected = (r.raw - r.metric_noised) / (r.metric_clean - r.metric_noised)
    np.testing.assert_allclose(r.patch, expected, rtol=1e-5, atol=1e-6)
    assert r.target == backend.logit_lens(PROMPT).final_prediction[-1]  # no target given: the model's own answer


def test_the_command_prints_the_result(capsys):
    code = main(["noise-trace", "--model", "tiny-llama", "--prompt", PROMPT, "--subject", "4,5", "--samples", "2",
                 "--json", "--no-cache"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["subject"] == [4, 5] and len(out["patch"]) == len(out["layers"])


@pytest.mark.parametrize("options, message", [
    (dict(subject=()), "say which tokens"),
    (dict(subject=(1, 1)), "named twice"),
    (dict(subject=(1,), samples=0), "samples"),
    (dict(subject=(1,), scale=-1.0), "scale"),
    (dict(subject=(1,), site="head"), "restores"),
    (dict(subject=(99,)), "outside the prompt"),
])
def test_bad_options_are_one_message(options, message):
    backend = local_backend(load_model("tiny-llama"), None)
    with pytest.raises(LensError, match=message):
        backend.noise_trace(PROMPT, NoiseOptions(**options))
