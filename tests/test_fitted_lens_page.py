"""The lens switch and the panels of the logit-lens page, in-process (AppTest): what they draw equals the
backend's numbers and a read-out by hand; a lens not fitted yet is offered, not an error."""
from __future__ import annotations

import numpy as np
import torch

from conftest import lens_page
from plotly_json import array, charts

PROMPT = "The capital of France is"
page = lens_page


def test_linear_lens_heatmap_is_the_read_out_by_hand(bundled_linear_lens):
    lm, lens = bundled_linear_lens.loaded, bundled_linear_lens.fitted_lens("linear")
    at = page(lens="linear", exits="true")
    assert not at.exception and not at.error, [e.value for e in at.error]
    fig = charts(at)[0]
    z = array(fig["data"][0]["z"])
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        out = lm.model(ids, output_hidden_states=True)
        for r in range(lm.n_layers):
            h = out.hidden_states[r][0] @ lens.weight[r] + lens.bias[r]
            p = torch.softmax(lm.model.lm_head(lm.model.model.norm(h)).double(), -1)
            np.testing.assert_allclose(z[r], p.max(-1).values.numpy(), atol=3e-4)
    assert "Linear-shortcut lens" in fig["layout"]["title"]["text"]
    assert fig["layout"].get("shapes"), "the early-exit lines are drawn"


def test_panels_draw_the_backend_numbers(bundled_linear_lens):
    b = bundled_linear_lens
    at = page(panel="compare")
    assert not at.exception and not at.error
    cmp = b.lens_comparison(PROMPT)
    fig = charts(at)[1]
    kl_traces = [t for t in fig["data"] if t.get("xaxis", "x") == "x"]
    assert [t["name"] for t in kl_traces] == ["logit lens", "linear shortcut"]
    for k, t in enumerate(kl_traces):
        np.testing.assert_allclose(array(t["y"]), cmp.mean_kl[k][:-1], rtol=1e-6)

    at = page(panel="exit")
    assert not at.exception and not at.error
    r = b.logit_lens(PROMPT, __import__("lens.options", fromlist=["LensOptions"]).LensOptions(top_k=1))
    bars = charts(at)[1]["data"][0]
    assert [None if np.isnan(v) else int(v) for v in array(bars["y"])] == r.exit_layer

    at = page(panel="language")
    assert not at.exception and not at.error
    at.selectbox(key="lang_example").set_value("French → Chinese: eau (water)").run()
    assert not at.exception and not at.error
    names = [t["name"] for t in charts(at)[1]["data"]]
    assert "'water'" in names and "Latin" in names


def test_a_lens_not_fitted_is_offered_not_an_error():
    """(The click that fits it is tested in a real browser: tests/test_browser_lenses.py.)"""
    at = page(lens="linear", model="tiny-qwen3")  # a model no other test fits a lens for
    assert not at.exception and not at.error
    assert any("not fitted yet" in i.value for i in at.info)
    assert at.button(key="fit-linear").label == "Fit the linear lens now"
    assert len(charts(at)) == 0
    at = page(lens="tuned", model="tiny-qwen3")
    assert any("no tuned lens" in i.value for i in at.info) and not at.error
