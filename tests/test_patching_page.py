"""The Compare & patch page, in-process (AppTest) on the bundled model: the heatmap shows the backend's
patching grid (itself checked cell by cell in test_patching.py), the URL holds the experiment, and bad
input is a message in the page."""
from lens.options import CellPatchOptions

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import open_page
from plotly_json import array, charts

from lens.examples import PATCH_PAIRS
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.options import PatchOptions

PAGE = "pages/patching.py"


def page(**params) -> AppTest:
    return open_page(PAGE, 300, **params)


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
    at = page(tab="The lens of both prompts")
    rows, = charts(at)
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
    at = page(tab="Patch one cell", cell_row="L5", cell_pos="2")
    fig, = charts(at)  # only the open tab is drawn
    want = backend.patched_lens(clean, corrupt, CellPatchOptions(5, 2))
    np.testing.assert_allclose(array(fig["data"][0]["z"]), want.top_probs[:, :, 0], atol=1e-5)
    shape = fig["layout"]["shapes"][0]
    assert (shape["x0"], shape["y0"]) == (1.5, 4.5)  # the patched cell's corner: what it can reach is outlined
    text = " ".join(m.value for m in at.markdown)
    assert "with this cell from the clean run: **␣Paris**" in text  # the tower's subject restored at layer 5 brings back Paris


def test_ablate_tab_shows_the_modified_models_lens(backend):
    from lens.options import Ablation

    clean = next(iter(PATCH_PAIRS.values()))[0]
    at = page(tab="ablate", ablate_skip="1")  # a tab by its short name as well as by its label
    fig, = charts(at)
    want = backend.ablated_lens(clean, Ablation(skip=(1,)))
    np.testing.assert_allclose(array(fig["data"][0]["z"]), want.top_probs[:, :, 0], atol=1e-5)
    at = page(tab="Ablate", ablate_heads="2,3")
    assert any("heads are LAYER.HEAD pairs" in e.value for e in at.error)


def test_two_models_tab_offers_only_comparable_models(backend):
    """Beside the bundled model, the only other bundled one is an encoder without a language-model head: the tab
    offers nothing and says why and how to add a model; a link naming the encoder gets the reason, not an error."""
    at = page(tab="models")
    box = at.selectbox(key="other_model")
    assert box.options == [] and box.value is None
    text = " ".join(m.value for m in at.markdown)
    assert "No model on this server can be compared with **smollm2-135m**" in text
    assert "49,152 tokens" in text and "30 layers" in text
    assert "minilm-l6 is an encoder without a language-model head" in text
    assert "Type the folder" in text
    assert not at.error and not charts(at)
    at = page(tab="models", other_model="minilm-l6")
    assert any("Minilm-l6 is an encoder without a language-model head: it cannot be compared with smollm2-135m"
               in w.value for w in at.warning), [w.value for w in at.warning]
    assert not at.error and not charts(at)


def test_two_models_compare_the_lenses_cell_by_cell():
    import torch

    from lens.analysis.compare import compare_models

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
    experiment = dict(model="tiny-llama", other_model="tiny-mistral", clean="The cat sat on", corrupt="The dog ran on",
                      patch_target="t", foil="a", tab="Two models")
    at = page(**experiment)
    # The tiny models share one tokenizer and their depth: each is offered beside the others; minilm is not.
    from lens.model.registry import TINY_ARCHS

    assert set(at.selectbox(key="other_model").options) == {f"tiny-{a}" for a in TINY_ARCHS} - {"tiny-llama"}
    a, b = local_backend(load_model("tiny-llama"), None), local_backend(load_model("tiny-mistral"), None)
    c = a.compare_with(b, "The cat sat on")
    diff, = charts(at)
    np.testing.assert_allclose(array(diff["data"][0]["z"]), c.kl, atol=1e-5)
    assert any("pick the same top-1 token in" in m.value for m in at.markdown)
    lens_a, lens_b = charts(page(**experiment, models_show="Both lenses"))
    np.testing.assert_allclose(array(lens_a["data"][0]["z"]), a.logit_lens("The cat sat on").top_probs[:, :, 0],
                               atol=1e-5)
    np.testing.assert_allclose(array(lens_b["data"][0]["z"]), b.logit_lens("The cat sat on").top_probs[:, :, 0],
                               atol=1e-5)


def test_an_example_pair_fills_the_boxes_without_a_streamlit_warning(caplog):
    """The four boxes have no default of their own (the page starts them at the first pair), so that picking a
    pair, which sets them through the session state, draws no "default value … also set" warning."""
    import logging

    from streamlit.elements.lib import policies

    name = "A capital: France / Italy"
    at = page()
    policies._shown_default_value_warning = False  # Streamlit warns once per process: make this run count
    with caplog.at_level(logging.WARNING):
        at.selectbox(key="pair").set_value(name).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [at.text_input(key=k).value for k in ("clean", "corrupt", "patch_target", "foil")] == list(PATCH_PAIRS[name])
    assert not [r for r in caplog.records if "default value" in r.getMessage()], caplog.text
    # The link holds the pair's prompts.
    assert at.query_params["clean"] in ("The capital of France is", ["The capital of France is"])
    z = array(charts(at)[0]["data"][0]["z"])
    assert z.shape[1] == 5  # the grid redrawn for the new pair's five tokens


def test_an_empty_foil_stays_empty():
    """No foil: the metric is the target's log-probability, and the link keeps the empty box."""
    at = page(foil="")
    assert at.text_input(key="foil").value == ""
    assert "log p(␣Paris)" in charts(at)[0]["layout"]["title"]["text"]


@pytest.mark.parametrize("params, message", [
    (dict(tab="Patch one cell", cell_row="L99"), "row L99 is past the rows emb, L1–L30: patching row L10."),
    (dict(tab="cell", cell_pos="99"), "position 99 is past the prompts' 10 tokens: patching position 1."),
    (dict(tab="nonsense"), "tab nonsense is not one of this page's tabs: showing “Patching grid”."),
])
def test_a_link_value_out_of_range_is_named_with_what_is_shown(params, message):
    at = page(**params)
    assert any(message in c.value for c in at.caption), [c.value for c in at.caption]
    assert len(charts(at)) == 1


def test_the_grid_names_its_rows_under_it():
    at = page()
    fig = charts(at)[0]
    assert fig["layout"]["yaxis"]["title"]["text"] == "row"  # short enough to stay whole on a slide
    assert any("Rows: emb is the input of layer 1, Ln the output of layer n." in c.value for c in at.caption)


def test_the_grid_saved_and_exported_with_the_experiment_shown(tmp_path, monkeypatch):
    """Save run under the grid: the saved options, drawn again by a fresh backend, and the run reopened from its
    numbers give the page's grid; the Export menu offers the code. (The other tabs have no view: no menu.)"""
    from saved_views import check_saved, offer_in_model_box

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    offer_in_model_box(monkeypatch, "tiny-llama")
    at = page(model="tiny-llama", clean="The cat sat on", corrupt="The dog ran on", patch_target="t", foil="a",
              site="MLP")
    assert not at.error, [e.value for e in at.error]
    code = {"Python script (prints the numbers)", "Jupyter notebook"}
    assert code <= {b.proto.label for b in at.get("download_button")}
    run = check_saved(at, "patch", charts(at)[0], local_backend(load_model("tiny-llama"), None), "patch")
    assert run.texts == ["The cat sat on", "The dog ran on"]
    assert (run.params["target"], run.params["foil"], run.params["site"]) == ("t", "a", "mlp")
