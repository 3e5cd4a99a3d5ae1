"""The Compare & patch page, in-process (AppTest) on the bundled model: the heatmap shows the backend's
patching grid (itself checked cell by cell in test_patching.py), the URL holds the experiment, and bad
input is a message in the page."""
from lens.options import CellPatchOptions
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.examples import PATCH_PAIRS
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.options import PatchOptions

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "pages/patching.py"


def page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page(PAGE)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def backend():
    return local_backend(load_model("smollm2-135m"), None)


def test_default_pair_shows_the_patching_grid(backend):
    at = page()
    fig = charts(at)[0]  # the grid's tab comes first
    clean, corrupt, target, foil = next(iter(PATCH_PAIRS.values()))
    want = backend.patch(clean, corrupt, PatchOptions(target=target, foil=foil))
    z = array(fig["data"][0]["z"])
    np.testing.assert_allclose(z, want.patch, atol=1e-5)
    assert fig["data"][0]["y"] == ["emb"] + [f"L{l}" for l in want.layers[1:]] and len(fig["data"][0]["x"]) == len(want.tokens)
    assert "2·␣Eiff→␣Col" in fig["data"][0]["x"][1] + fig["data"][0]["x"][2] or any(
        "→" in x for x in fig["data"][0]["x"])  # the positions where the prompts differ are named both ways
    caption = " ".join(c.value for c in at.caption)
    r, c = np.unravel_index(int(np.argmax(want.patch[:, :-1])), want.patch[:, :-1].shape)
    assert f"the strongest cell is row L{want.layers[r]} at position {c}" in caption
    first = int(np.nonzero(want.patch[:, -1] >= 0.5)[0][0])
    assert f"more than half of it from row L{want.layers[first]} on" in caption


@pytest.mark.parametrize("site, rows, cols", [("Heads", 30, 9), ("MLP", 30, 5)])
def test_a_link_holds_the_experiment(backend, site, rows, cols):
    clean, corrupt, target, foil = PATCH_PAIRS["A capital: France / Italy"]
    at = page(clean=clean, corrupt=corrupt, patch_target=target, foil=foil, site=site)
    z = array(charts(at)[0]["data"][0]["z"])
    assert z.shape == (rows, cols)
    want = backend.patch(clean, corrupt, PatchOptions(target=target, foil=foil, site={"Heads": "head", "MLP": "mlp"}[site]))
    np.testing.assert_allclose(z, want.patch, atol=1e-5)


@pytest.mark.parametrize("params, message", [
    (dict(clean="The capital of France is", corrupt="The capital of the United Kingdom is"), "same count"),
    (dict(patch_target=" Parisian"), "not one"),
    (dict(clean="The capital of France is", corrupt="The capital of France is"), "nothing to restore"),
])
def test_bad_input_is_a_message_in_the_page(params, message):
    at = page(**params)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not charts(at)


def test_the_lens_rows_chart_reads_what_the_logit_lens_reads(backend):
    at = page()
    rows = charts(at)[1]
    clean, corrupt, target, foil = next(iter(PATCH_PAIRS.values()))
    from lens.options import LensOptions

    for i, text in ((0, clean), (1, corrupt)):
        # logit(t) − logit(f) = log p(t) − log p(f): the softmax's normaliser cancels.
        pt = backend.logit_lens(text, LensOptions(target=target)).target_prob[1:, -1].astype(np.float64)
        pf = backend.logit_lens(text, LensOptions(target=foil)).target_prob[1:, -1].astype(np.float64)
        # (row emb gives " Paris" a probability that underflows float32: compared from L1 on)
        np.testing.assert_allclose(array(rows["data"][i]["y"])[1:], np.log(pt) - np.log(pf), atol=2e-3)


def test_one_cell_patch_tab_shows_the_patched_lens(backend):
    clean, corrupt, _, _ = next(iter(PATCH_PAIRS.values()))
    at = page(cell_row="L5", cell_pos="2")
    fig = charts(at)[2]
    want = backend.patched_lens(clean, corrupt, CellPatchOptions(5, 2))
    np.testing.assert_allclose(array(fig["data"][0]["z"]), want.top_probs[:, :, 0], atol=1e-5)
    shape = fig["layout"]["shapes"][0]
    assert (shape["x0"], shape["y0"]) == (1.5, 4.5)  # the patched cell's corner: what it can reach is outlined
    text = " ".join(m.value for m in at.markdown)
    assert "after the patch **␣Paris**" in text  # the tower's subject restored at layer 5 brings back Paris


def test_ablate_tab_shows_the_modified_models_lens(backend):
    from lens.options import Ablation

    clean = next(iter(PATCH_PAIRS.values()))[0]
    at = page(ablate_skip="1")
    fig = charts(at)[3]
    want = backend.ablated_lens(clean, Ablation(skip=(1,)))
    np.testing.assert_allclose(array(fig["data"][0]["z"]), want.top_probs[:, :, 0], atol=1e-5)
    at = page(ablate_heads="2,3")
    assert any("heads are LAYER.HEAD pairs" in e.value for e in at.error)


def test_two_models_tab_compares_the_lenses_cell_by_cell(backend):
    """The sidebar's bundled model against minilm-l6 (another tokenizer): a message; against itself: KL 0."""
    at = page(other_model="minilm-l6")
    assert any("no language-model head" in e.value or "tokenize" in e.value for e in at.error), \
        [e.value for e in at.error]
    import torch

    from lens.analysis.compare import compare_models
    from lens.model.tiny import tiny_model  # noqa: F401

    lm_a, lm_b = load_model("tiny-llama"), load_model("tiny-mistral")
    a, b = local_backend(lm_a, None), local_backend(lm_b, None)
    c = a.compare_with(b, "The cat sat")
    ta, tb = a.trace("The cat sat"), b.trace("The cat sat")
    with torch.no_grad():
        la = torch.log_softmax(lm_a.adapter.readout(ta.residual).double(), -1)
        lb = torch.log_softmax(lm_b.adapter.readout(tb.residual).double(), -1)
    np.testing.assert_allclose(c.kl, (la.exp() * (la - lb)).sum(-1).numpy(), atol=1e-5)
    assert (c.agree == (la.argmax(-1) == lb.argmax(-1)).numpy()).all()
    same = compare_models(ta, ta, lm_a.tokenizer)
    assert np.abs(same.kl).max() < 1e-6 and same.agree.all()


def test_two_models_side_by_side_in_the_page():
    at = page(model="tiny-llama", other_model="tiny-mistral", clean="The cat sat on", corrupt="The dog ran on",
              patch_target="t", foil="a")
    figs = charts(at)
    a, b = local_backend(load_model("tiny-llama"), None), local_backend(load_model("tiny-mistral"), None)
    c = a.compare_with(b, "The cat sat on")
    np.testing.assert_allclose(array(figs[-3]["data"][0]["z"]), c.kl, atol=1e-5)
    np.testing.assert_allclose(array(figs[-2]["data"][0]["z"]), a.logit_lens("The cat sat on").top_probs[:, :, 0], atol=1e-5)
    np.testing.assert_allclose(array(figs[-1]["data"][0]["z"]), b.logit_lens("The cat sat on").top_probs[:, :, 0], atol=1e-5)
    assert any("pick the same top-1 token in" in m.value for m in at.markdown)
