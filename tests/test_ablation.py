"""Ablations and the one-cell patch: each modified model's lens against the same model changed
another way (weights zeroed, layers removed or swapped in a copy, a hook written here), read out by
the plain float64 reference lens; no ablation is the plain lens exactly."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from command import lens_command
from lens.errors import LensError
from lens.engine_backend import local_backend
from lens.model.adapters import adapt
from lens.model.loading import load_model
from lens.options import Ablation, CellPatchOptions, LensOptions

PROMPT = "The cat sat on the mat"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama")


def rows_of(model, ids, hook=None):
    """The residual stream rows [L+1, T, d] of a plain run of ``model`` with ``hook`` fitted (if any):
    the input of block 1, then every block's output as the next block receives it."""
    a = adapt(model)
    handles = [hook(a)] if hook else []  # first: the rows below see what it puts in
    rows = {}
    handles.append(a.blocks[0].register_forward_pre_hook(
        lambda m, args, kw: rows.__setitem__(0, (args[0] if args else kw["hidden_states"])[0].clone()), with_kwargs=True))
    for i, b in enumerate(a.blocks):
        handles.append(b.register_forward_hook(
            lambda m, args, o, i=i: rows.__setitem__(i + 1, (o[0] if isinstance(o, tuple) else o)[0].clone())))
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return a, torch.stack([rows[i] for i in range(len(a.blocks) + 1)])


def assert_lens_equals(result, adapter, rows, ids, reference, topk_matches):
    ref = reference(adapter, rows, ids, result.top_probs.shape[-1])
    topk_matches(result.top_ids, result.top_probs, ref, atol=1e-4)


def test_no_ablation_is_the_plain_lens(tiny):
    be = local_backend(tiny, None)
    a, b = be.ablated_lens(PROMPT, Ablation()), be.logit_lens(PROMPT)
    assert a.final_prediction == b.final_prediction and np.array_equal(a.top_probs, b.top_probs)


def test_zeroed_head_equals_its_output_weights_zeroed(tiny, reference, topk_matches):
    be = local_backend(tiny, None)
    r = be.ablated_lens(PROMPT, Ablation(heads=((2, 1),)))
    m = copy.deepcopy(tiny.model)
    hd = tiny.adapter.head_dim
    with torch.no_grad():
        m.model.layers[1].self_attn.o_proj.weight[:, hd:2 * hd] = 0
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    a, rows = rows_of(m, ids)
    assert_lens_equals(r, a, rows, ids, reference, topk_matches)
    plain = be.logit_lens(PROMPT)
    assert np.array_equal(r.top_probs[:2], plain.top_probs[:2])  # rows before layer 2 unchanged


def test_zeroed_mlp_equals_its_down_projection_zeroed(tiny, reference, topk_matches):
    r = local_backend(tiny, None).ablated_lens(PROMPT, Ablation(mlp=(1,)))
    m = copy.deepcopy(tiny.model)
    with torch.no_grad():
        m.model.layers[0].mlp.down_proj.weight.zero_()
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    a, rows = rows_of(m, ids)
    assert_lens_equals(r, a, rows, ids, reference, topk_matches)


def test_mean_ablated_mlp_equals_a_hook_putting_in_the_mean(tiny, reference, topk_matches):
    r = local_backend(tiny, None).ablated_lens(PROMPT, Ablation(mlp=(2,), mode="mean"))
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    seen = {}
    h = tiny.model.model.layers[1].mlp.register_forward_hook(lambda m, a, o: seen.__setitem__(0, o[0].mean(0)))
    with torch.no_grad():
        tiny.model(input_ids=torch.tensor([ids]))
    h.remove()
    a, rows = rows_of(tiny.model, ids, lambda a: a.blocks[1].mlp.register_forward_hook(
        lambda m, args, o: seen[0].expand_as(o)))
    assert_lens_equals(r, a, rows, ids, reference, topk_matches)


def test_skipped_layer_equals_the_model_without_it(tiny, reference, topk_matches):
    r = local_backend(tiny, None).ablated_lens(PROMPT, Ablation(skip=(2,)))
    m = copy.deepcopy(tiny.model)
    del m.model.layers[1]
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    a, rows = rows_of(m, ids)
    ref = reference(a, rows, ids, 5)
    np.testing.assert_allclose(r.top_probs[-1], ref["top_p"][-1], atol=1e-4)  # the same final answer
    np.testing.assert_allclose(r.top_probs[2], r.top_probs[1], atol=1e-6)  # the skipped row repeats the one before


def test_swapped_layers_equal_the_model_with_them_swapped(tiny, reference, topk_matches):
    r = local_backend(tiny, None).ablated_lens(PROMPT, Ablation(swap=(1, 3)))
    m = copy.deepcopy(tiny.model)
    layers = m.model.layers
    layers[0], layers[2] = layers[2], layers[0]
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    a, rows = rows_of(m, ids)
    assert_lens_equals(r, a, rows, ids, reference, topk_matches)


def test_one_cell_patch_equals_a_patched_run(tiny, reference, topk_matches):
    clean, corrupt = "The cat sat on", "The dog ran on"
    be = local_backend(tiny, None)
    r = be.patched_lens(clean, corrupt, CellPatchOptions(2, 5))
    tok = tiny.tokenizer
    clean_ids, corrupt_ids = tok(clean)["input_ids"], tok(corrupt)["input_ids"]
    _, clean_rows = rows_of(tiny.model, clean_ids)

    def hook(a):
        def fn(m, args, out):
            x = (out[0] if isinstance(out, tuple) else out).clone()
            x[0, 5] = clean_rows[2, 5]
            return x
        return a.blocks[1].register_forward_hook(fn)
    a, rows = rows_of(tiny.model, corrupt_ids, hook)
    assert_lens_equals(r, a, rows, corrupt_ids, reference, topk_matches)
    plain = be.logit_lens(corrupt)
    assert np.array_equal(r.top_probs[:2], plain.top_probs[:2])  # rows before the patch are the corrupted run's
    assert np.array_equal(r.top_probs[:, :5], plain.top_probs[:, :5])  # and so are positions before it


@pytest.mark.parametrize("ablation, message", [
    (Ablation(skip=(9,)), "layer 9 is out of range"),
    (Ablation(heads=((1, 7),)), "head 1.7 is out of range"),
    (Ablation(swap=(2, 2)), "swapping layer 2 with itself"),
    (Ablation(mlp=(1,), mode="half"), "unknown ablation mode"),
])
def test_bad_ablations_are_named(tiny, ablation, message):
    with pytest.raises(LensError, match=message):
        local_backend(tiny, None).ablated_lens(PROMPT, ablation)


def test_cli_ablate_prints_the_lens_and_the_original_prediction(tiny):
    out = lens_command("ablate", "--model", "tiny-llama", "--prompt", PROMPT, "--heads", "2.1", "--json", "--no-cache")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = local_backend(tiny, None).ablated_lens(PROMPT, Ablation(heads=((2, 1),)))
    assert got["final_prediction"] == want.final_prediction
    assert got["final_prediction_original"] == local_backend(tiny, None).logit_lens(PROMPT).final_prediction
    np.testing.assert_allclose(np.array(got["top_probs"]), want.top_probs, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--heads", "2"], "heads are LAYER.HEAD pairs"),
    (["--swap", "1-2"], "a swap is two layers as L:M"),
    (["--mlp", "one"], "MLP blocks are layer numbers"),
    ([], "say what to take out"),
])
def test_cli_ablate_bad_input_is_one_line(args, message):
    out = lens_command("ablate", "--model", "tiny-llama", "--prompt", PROMPT, *args)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: ") and message in out.stderr
