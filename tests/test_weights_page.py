"""The Neurons & heads page, in-process (AppTest): the neurons list and the heads' charts are the backend's numbers
(themselves checked in test_weights.py), the URL holds the token, the tab, the composition and the head, and bad
link values are named in the page. (A neuron's own page reads the whole corpus once: test_weights.py checks it.)"""

import numpy as np
from streamlit.testing.v1 import AppTest

from apptest import open_page
from plotly_json import array, charts

from lens.weights.options import HeadWeightOptions, NeuronOptions

PAGE = "pages/neurons.py"


def page(**params) -> AppTest:
    return open_page(PAGE, 600, **params)


def caption(at) -> str:
    return " ".join(c.value for c in at.caption)


def test_the_neurons_of_a_token_are_the_backends(backend):
    at = page(token=" Paris", top="6")
    (bars,) = charts(at)
    want = backend.neurons(NeuronOptions(token=" Paris", top=6))
    x = array(bars["data"][0]["x"])
    np.testing.assert_allclose(x[-6:][::-1], [n["score"] for n in want.neurons], atol=1e-5)
    np.testing.assert_allclose(x[:6], [n["score"] for n in want.suppressors][::-1], atol=1e-5)
    assert bars["data"][0]["y"][-1].strip() == f"L{want.neurons[0]['layer']} N{want.neurons[0]['neuron']}"
    assert "Click a bar" in caption(at)


def test_presenting_the_table_lists_the_neurons_the_chart_shows(backend):
    """On a slide the chart shows the first 5 writers and the first 5 suppressors: the table beside it lists those
    same 10 (it once listed the writers only)."""
    import re

    for top, n in (("10", 10), ("3", 6)):  # (3: three of each, none listed twice)
        at = page(token=" Paris", top=top, present="1")
        (bars,) = charts(at)
        shown = {y.strip() for y in bars["data"][0]["y"]}
        listed = re.findall(r"L\d+ N\d+", " ".join(m.value for m in at.markdown))
        assert len(shown) == n and len(listed) == n and set(listed) == shown, (top, listed, shown)
    want = backend.neurons(NeuronOptions(token=" Paris", top=10))
    at = page(token=" Paris", top="10", present="1")
    listed = re.findall(r"L\d+ N\d+", " ".join(m.value for m in at.markdown))
    assert {f"L{n['layer']} N{n['neuron']}" for n in want.suppressors[:5]} <= set(listed)


def test_heads_tab_from_a_link_and_bad_values_named(backend, widget_state_warnings):
    at = page(tab="Heads", comp="q", head="L20H0")
    assert not widget_state_warnings  # the link's composition goes into the box through session state
    figs = charts(at)
    want = backend.head_weights(HeadWeightOptions(composition="q"))
    np.testing.assert_allclose(array(figs[0]["data"][0]["z"]), want.copy_score, atol=1e-5)
    z = array(figs[1]["data"][0]["z"])
    iu = np.triu_indices(want.n_layers, 1)
    np.testing.assert_allclose(z[iu], want.layer_scores[iu], atol=1e-6)
    assert len(figs) == 3 and "L20H0" in figs[2]["layout"]["title"]["text"]
    at = page(tab="Heads", head="L99H0")
    assert "head “L99H0” (showing none)" in caption(at)
    at = page(token="xyzzy")
    assert any("is 2 tokens here" in e.value for e in at.error)
