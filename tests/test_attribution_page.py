"""The Who writes the answer page, in-process (AppTest): each tab shows the backend's numbers (themselves checked in
test_attribution.py), the URL holds the target, foil, tab, head and knockout options, bad input is a message in the
page, and each chart is saved with the options shown."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import open_page
from plotly_json import array, charts

from lens.attribution.options import DLAOptions, KnockoutOptions, SublayerOptions
from lens.engine_backend import local_backend
from lens.examples import DEFAULT_PROMPT
from lens.model.loading import load_model

PAGE = "pages/attribution.py"
IOI = "When Mary and John went to the store, John gave a drink to"


def page(**params) -> AppTest:
    return open_page(PAGE, 600, **params)


def caption(at) -> str:
    return " ".join(c.value for c in at.caption)


def test_direct_attribution_is_the_default_tab(backend):
    at = page()
    heads, bars = charts(at)  # only the open tab is computed
    want = backend.dla(DEFAULT_PROMPT, DLAOptions())
    np.testing.assert_allclose(array(heads["data"][0]["z"]), want.heads, atol=1e-6)
    np.testing.assert_allclose(array(bars["data"][0]["x"]), want.attn, atol=1e-6)
    np.testing.assert_allclose(array(bars["data"][1]["x"]), want.mlp, atol=1e-6)
    assert f"The parts add up to {want.total:.3f}" in caption(at) and f"is {want.logit_diff:.3f}" in caption(at)
    assert "(the model's top-1)" in caption(at) and want.target == " Paris"


def test_a_linked_head_shows_its_attention_and_tokens(backend):
    at = page(prompt=IOI, dla_target=" Mary", dla_foil=" John", dla_head="L24.H4")
    figs = charts(at)
    assert len(figs) == 4
    want = backend.dla(IOI, DLAOptions(target=" Mary", foil=" John"))
    np.testing.assert_allclose(array(figs[2]["data"][0]["y"]), want.head_attention[23, 4], atol=1e-6)
    tokens = figs[3]["data"][0]["y"]
    assert tokens[-1].strip() == want.head_top_tokens[23][4][0].replace(" ", "␣")
    assert "logit(␣Mary) − logit(␣John)" in caption(at)
    at = page(dla_head="L99.H0")
    assert "ℹ️ The link's head L99.H0 is" in caption(at)


def test_sublayer_lens_tab_shows_both_heatmaps(backend):
    at = page(tab="Sub-layer lens", dla_target=" Rome")
    attn, mlp = charts(at)
    want = backend.sublayer_lens(DEFAULT_PROMPT, SublayerOptions(target=" Rome"))
    np.testing.assert_allclose(array(attn["data"][0]["z"]), want.attn_target, atol=1e-6)
    np.testing.assert_allclose(array(mlp["data"][0]["z"]), want.mlp_target, atol=1e-6)
    top = want.attn_top_tokens[-1][-1][0].replace(" ", "␣")
    assert attn["data"][0]["text"][-1][-1] == (top if len(top) <= 6 else top[:5] + "…")  # the cell's top token


def test_knockout_tab_holds_its_options_in_the_link(backend, widget_state_warnings):
    at = page(tab="Attention knockout", ko_sources="3", ko_window="5", ko_align="start")
    assert not widget_state_warnings  # the link's window place goes into the box through session state
    fig, = charts(at)
    want = backend.knockout(DEFAULT_PROMPT, KnockoutOptions(sources=(3,), window=5, align="start"))
    np.testing.assert_allclose(array(fig["data"][0]["z"]), 100 * want.change, atol=1e-6)
    assert fig["data"][0]["y"][0] == "sources 3·␣France" and "5-layer window from" in fig["layout"]["xaxis"]["title"]["text"]


@pytest.mark.parametrize("params, message", [
    (dict(dla_target=" Parisian"), "not one"),
    (dict(dla_target=" Paris", dla_foil=" Paris"), "same token"),
    (dict(tab="Attention knockout", ko_sources="2,x"), "ranges"),
    (dict(tab="Attention knockout", ko_sources="40"), "outside the prompt"),
])
def test_bad_input_is_a_message_in_the_page(params, message):
    at = page(**params)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not charts(at)


def test_link_values_that_do_not_apply_are_named(backend):
    at = page(dla_position="x")
    assert "Not used from the link: position “x” (showing the last)" in caption(at)
    at = page(dla_position="99")
    assert "position “99”" in caption(at)
    at = page(tab="Attention knockout", ko_window="99")
    assert "window “99”" in caption(at)


def test_each_chart_is_saved_with_the_options_shown(tmp_path, monkeypatch):
    from saved_views import check_saved, offer_in_model_box

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    offer_in_model_box(monkeypatch, "tiny-llama")
    fresh = local_backend(load_model("tiny-llama"), None)
    at = page(model="tiny-llama", prompt="the cat sat on", dla_target="t", dla_foil="a", dla_position="-2")
    run = check_saved(at, "dla", charts(at)[0], fresh, "dla")
    assert run.params == {"target": "t", "foil": "a", "position": -2}
    at = page(model="tiny-llama", prompt="the cat sat on", tab="Sub-layer lens")
    run = check_saved(at, "sublayer-attn", charts(at)[0], fresh, "sublayer-lens")
    assert run.params == {"target": None}
    at = page(model="tiny-llama", prompt="the cat sat on", tab="Attention knockout", ko_sources="1-2", ko_window="2")
    run = check_saved(at, "knockout", charts(at)[0], fresh, "knockout")
    assert run.params == {"target": None, "sources": "1,2", "window": 2, "align": "centre"}
