"""Activation patching: the fast engine (runs start at the patched block, batched) against a
straightforward computation written here, one full hooked forward pass of the model per cell,
for every site on tiny models of every decoder architecture and on the bundled model; and the
CLI's messages for bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from command import lens_command
from lens.errors import LensError
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.model.registry import TINY_ARCHS
from lens.options import PatchOptions



def first(out):
    return out[0] if isinstance(out, tuple) else out


def replace_first(out, new):
    return (new, *out[1:]) if isinstance(out, tuple) else new


def clean_writes(lm, ids):
    """The clean run's residual rows, attention/MLP writes and output-projection inputs, by plain hooks."""
    a, got = lm.adapter, {"resid": {}, "attn": {}, "mlp": {}, "head": {}}
    T = len(ids)
    hs = [a.blocks[0].register_forward_pre_hook(
        lambda m, args, kw: got["resid"].__setitem__(0, (args[0] if args else kw["hidden_states"])[0].clone()),
        with_kwargs=True)]
    for i, b in enumerate(a.blocks):
        hs.append(b.register_forward_hook(lambda m, args, out, i=i: got["resid"].__setitem__(i + 1, first(out)[0].clone())))
        hs.append(a.attn_write[i].register_forward_hook(
            lambda m, args, out, i=i: got["attn"].__setitem__(i, first(out).reshape(T, -1).clone())))
        hs.append(a.mlp_write[i].register_forward_hook(
            lambda m, args, out, i=i: got["mlp"].__setitem__(i, first(out).reshape(T, -1).clone())))
        if a.out_proj:
            hs.append(a.out_proj[i].register_forward_pre_hook(
                lambda m, args, i=i: got["head"].__setitem__(i, args[0][0].clone())))
    with torch.no_grad():
        lm.model(input_ids=torch.tensor([ids]))
    for h in hs:
        h.remove()
    return got


def naive_metric(lm, corrupt_ids, target, foil, hook):
    """One ordinary forward pass of the corrupted prompt with ``hook`` = (module, kind, fn) fitted."""
    module, kind, fn = hook
    if kind == "pre":
        h = module.register_forward_pre_hook(
            lambda m, args, kw: ((fn(args[0]),) + args[1:], kw) if args else (args, {**kw, "hidden_states": fn(kw["hidden_states"])}),
            with_kwargs=True)
    else:
        h = module.register_forward_hook(lambda m, args, out: replace_first(out, fn(first(out))))
    try:
        with torch.no_grad():
            z = lm.model(input_ids=torch.tensor([corrupt_ids])).logits[0, -1].double()
    finally:
        h.remove()
    return float(z[target] - z[foil]) if foil is not None else float(torch.log_softmax(z, -1)[target])


def naive_cell(lm, clean, corrupt_ids, target, foil, site, row, col):
    a, T = lm.adapter, len(corrupt_ids)
    if site == "resid":
        def fn(x):
            x = x.clone()
            x[0, col] = clean["resid"][row][col]
            return x
        hook = (a.blocks[0], "pre", fn) if row == 0 else (a.blocks[row - 1], "post", fn)
    elif site in ("attn", "mlp"):
        def fn(x):
            x = x.clone()
            x.view(T, -1)[col] = clean[site][row][col]  # OPT's MLP writes a flattened [T, d]
            return x
        hook = ((a.attn_write if site == "attn" else a.mlp_write)[row], "post", fn)
    else:
        hd = a.head_dim

        def fn(x):
            x = x.clone()
            x[0, :, col * hd:(col + 1) * hd] = clean["head"][row][:, col * hd:(col + 1) * hd]
            return x
        hook = (a.out_proj[row], "pre", fn)
    return naive_metric(lm, corrupt_ids, target, foil, hook)


def tiny_sites(arch):
    lm = load_model(f"tiny-{arch}")
    sites = ["resid"]
    if not lm.adapter.post_ln:
        sites += ["attn", "mlp"]
    if lm.adapter.out_proj:
        sites.append("head")
    return sites


CASES = [(arch, site) for arch in TINY_ARCHS for site in tiny_sites(arch)]


@pytest.fixture(scope="module")
def tiny_models():
    return {arch: load_model(f"tiny-{arch}") for arch in TINY_ARCHS}


@pytest.mark.parametrize("arch, site", CASES)
@pytest.mark.parametrize("foil", ["a", None], ids=["logit-diff", "log-prob"])
def test_fast_patching_equals_one_run_per_cell(tiny_models, arch, site, foil):
    lm = tiny_models[arch]
    clean_text, corrupt_text = "The cat sat on", "The dog ran on"  # byte-level: 14 tokens each
    r = local_backend(lm, None).patch(clean_text, corrupt_text, PatchOptions(target="t", foil=foil, site=site))
    tok = lm.tokenizer
    clean_ids, corrupt_ids = tok(clean_text)["input_ids"], tok(corrupt_text)["input_ids"]
    target = tok("t", add_special_tokens=False)["input_ids"][0]
    foil_id = None if foil is None else tok(foil, add_special_tokens=False)["input_ids"][0]
    clean = clean_writes(lm, clean_ids)
    want = np.array([[naive_cell(lm, clean, corrupt_ids, target, foil_id, site, row, col)
                      for col in range(r.raw.shape[1])] for row in range(r.raw.shape[0])])
    np.testing.assert_allclose(r.raw, want, atol=1e-3, rtol=1e-3)  # SDPA here, eager in the reference
    m_clean = naive_metric(lm, clean_ids, target, foil_id, (lm.adapter.blocks[0], "post", lambda x: x))
    m_corrupt = naive_metric(lm, corrupt_ids, target, foil_id, (lm.adapter.blocks[0], "post", lambda x: x))
    np.testing.assert_allclose([r.metric_clean, r.metric_corrupt], [m_clean, m_corrupt], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(r.patch, (want - m_corrupt) / (m_clean - m_corrupt), atol=1e-3, rtol=1e-3)
    n_rows = lm.adapter.n_layers + (site == "resid")
    n_cols = lm.adapter.n_heads if site == "head" else len(corrupt_ids)
    assert r.patch.shape == (n_rows, n_cols) and len(r.layers) == n_rows and len(r.columns) == n_cols
    if site == "resid":
        assert r.patch[-1, -1] == 1.0  # the last row at the last position is the clean answer itself
        np.testing.assert_allclose(r.patch[:, :4], 0, atol=1e-3)  # "The " is the same in both prompts


@pytest.fixture(scope="module")
def bundled():
    return local_backend(load_model("smollm2-135m"), None)


EIFFEL = ("The Eiffel Tower is located in the city of", "The Colosseum is located in the city of")


def test_bundled_model_causal_tracing_matches_single_runs_and_shows_the_known_picture(bundled):
    lm = bundled.loaded
    r = bundled.patch(*EIFFEL, PatchOptions(target=" Paris", foil=" Rome"))
    assert r.metric_clean > 0 > r.metric_corrupt  # Paris for the tower, Rome for the Colosseum
    tok = lm.tokenizer
    clean_ids, corrupt_ids = tok(EIFFEL[0])["input_ids"], tok(EIFFEL[1])["input_ids"]
    target, foil = tok(" Paris")["input_ids"][0], tok(" Rome")["input_ids"][0]
    clean = clean_writes(lm, clean_ids)
    for row, col in [(0, 2), (5, 2), (12, 3), (20, 9), (26, 6), (29, 9), (15, 7)]:  # a sample of cells
        want = naive_cell(lm, clean, corrupt_ids, target, foil, "resid", row, col)
        assert abs(r.raw[row, col] - want) < 1e-3 * max(1.0, abs(want)), (row, col)
    subject = [i for i, t in enumerate(r.corrupt_tokens) if t != r.tokens[i]]
    middle = r.patch[5:20, subject].max(1)
    assert (middle > 0.5).all()  # the subject's tokens carry the answer through the middle layers
    assert r.patch[25:, -1].min() > 0.6 and r.patch[25:, subject].max() < 0.1  # then the last token does


def cli(*args):
    return lens_command("patch", *args)


def test_cli_json_equals_the_backend(tiny_models):
    out = cli("--model", "tiny-llama", "--clean-prompt", "The cat sat on", "--corrupt-prompt", "The dog ran on",
              "--target", "t", "--foil", "a", "--site", "mlp", "--json", "--no-cache")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = local_backend(tiny_models["llama"], None).patch("The cat sat on", "The dog ran on",
                                                          PatchOptions(target="t", foil="a", site="mlp"))
    assert got["tokens"] == want.tokens and got["corrupt_tokens"] == want.corrupt_tokens
    assert got["layers"] == ["1", "2", "3"]  # as the lens labels its rows
    np.testing.assert_allclose(np.array(got["patch"]), want.patch, atol=1e-6)
    assert got["metric_clean"] == pytest.approx(want.metric_clean)


@pytest.mark.parametrize("args, message", [
    (["--clean-prompt", "The cat", "--corrupt-prompt", "The lion", "--target", "t"],
     "the clean prompt has 7 tokens and the corrupted one 8: patching needs the same count"),
    (["--clean-prompt", "The cat", "--corrupt-prompt", "The dog", "--target", "to"],
     "the target 'to' is 2 tokens here"),
    (["--clean-prompt", "The cat", "--corrupt-prompt", "The dog", "--target", ""], "give a target token"),
    (["--clean-prompt", "The cat", "--corrupt-prompt", "The dog", "--target", "t", "--foil", "t"],
     "the target and the foil are the same token"),
    (["--clean-prompt", "The cat", "--corrupt-prompt", "The cat", "--target", "t"],
     "there is nothing to restore"),
    (["--clean-prompt", "The cat", "--target", "t"], "give --corrupt-prompt TEXT or --corrupt-file PATH"),
    (["--clean-prompt", "The cat", "--corrupt-file", "/nonexistent", "--target", "t"], "cannot read /nonexistent"),
])
def test_cli_bad_input_is_one_line(args, message):
    out = cli("--model", "tiny-llama", "--no-cache", *args)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], out.stderr
    assert "Traceback" not in out.stderr
    if "same count" in message:  # both token lists, as the lens shows tokens
        assert "['T', 'h', 'e', '␣', 'c', 'a', 't']" in lines[-1] and "'l', 'i', 'o', 'n'" in lines[-1]


def test_encoders_are_refused(tmp_path):
    be = local_backend(load_model("minilm-l6"), None)
    with pytest.raises(LensError, match="not a causal language model"):
        be.patch("a b", "a c", PatchOptions(target="b"))
