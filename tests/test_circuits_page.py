"""The Attribution & circuits page, in-process (AppTest) on the bundled model: the AtP grid, the real grid and the
scatter show the backend's numbers (themselves checked in test_atp.py), the circuit's graph and curve the
backend's circuit (test_circuits.py); links hold the experiment; bad input is a message in the page; both views
saved and exported."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import open_page
from plotly_json import array, charts

from lens.circuits.options import AttributeOptions, CircuitOptions
from lens.engine_backend import local_backend
from lens.examples import PATCH_PAIRS
IOI = "Indirect object: who gets the drink"  # the page starts at this pair
from lens.model.loading import load_model

PAGE = "pages/circuits.py"


def page(**params) -> AppTest:
    return open_page(PAGE, 300, **params)


def test_attribution_is_the_default_tab_with_the_real_grid_beside_it(backend):
    at = page()
    grid, scatter = charts(at)[:2]
    clean, corrupt, target, foil = PATCH_PAIRS[IOI]
    want = backend.attribute(clean, corrupt, AttributeOptions(target, foil, "resid", verify=True))
    np.testing.assert_allclose(array(grid["data"][0]["z"]), want.estimate, atol=1e-5)
    np.testing.assert_allclose(array(grid["data"][1]["z"]), want.actual, atol=1e-5)
    np.testing.assert_allclose(array(scatter["data"][1]["x"]), want.actual.ravel(), atol=1e-5)
    np.testing.assert_allclose(array(scatter["data"][1]["y"]), want.estimate.ravel(), atol=1e-5)
    assert f"Pearson r = {want.correlation:.2f}" in scatter["layout"]["title"]["text"]
    assert any(f"Pearson r = {want.correlation:.3f} over every cell" in c.value for c in at.caption)


def test_a_link_holds_the_grid_and_the_qk_fix(backend):
    clean, corrupt, target, foil = PATCH_PAIRS["A capital: France / Italy"]
    at = page(clean=clean, corrupt=corrupt, patch_target=target, foil=foil, site="Heads", qk_fix="true")
    grid = charts(at)[0]
    z = array(grid["data"][0]["z"])
    assert z.shape == (30, 9)
    want = backend.attribute(clean, corrupt, AttributeOptions(target, foil, "head", qk_fix=True, verify=True))
    np.testing.assert_allclose(z, want.estimate, atol=1e-5)
    assert "QK fix" in grid["layout"]["annotations"][0]["text"]


def test_the_circuit_tab_shows_the_graph_and_the_curve(backend):
    clean, corrupt, target, foil = PATCH_PAIRS[IOI]
    at = page(tab="Circuit", edges="12")
    graph, curve = charts(at)[:2]
    want = backend.circuit(clean, corrupt, CircuitOptions(target, foil, 12))
    assert graph["layout"]["title"]["text"].startswith(f"First 12 edges, {len(want.kept)} once pruned")
    np.testing.assert_allclose(array(curve["data"][0]["x"]), want.curve_edges)
    np.testing.assert_allclose(array(curve["data"][0]["y"]), want.curve_faithfulness, atol=1e-9)
    nodes = graph["data"][-1]
    drawn = {t for t in nodes["hovertext"]}
    for u, v, s in want.kept:  # every kept edge is in its writer's hover text
        assert any(f"{s:+.3f}" in t for t in drawn)


@pytest.mark.parametrize("params, message", [
    (dict(clean="The capital of France is", corrupt="The capital of the United Kingdom is"), "same count"),
    (dict(patch_target=" Parisian"), "not one"),
    (dict(tab="Circuit", clean="The capital of France is", corrupt="The capital of France is"), "nothing to restore"),
])
def test_bad_input_is_a_message_in_the_page(params, message):
    at = page(**params)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not charts(at)


@pytest.mark.parametrize("params, message", [
    (dict(tab="Circuit", edges="7"), "The link's edge count '7' is not one the slider offers"),
    (dict(tab="nonsense"), "tab nonsense is not one of this page's tabs"),
])
def test_a_link_value_that_does_not_apply_is_named(params, message):
    at = page(**params)
    assert any(message in c.value for c in at.caption), [c.value for c in at.caption]
    assert len(charts(at)) == 2


@pytest.mark.parametrize("params, key, view", [
    (dict(site="MLP"), "atp-grid", "attribute"),
    (dict(tab="Circuit", edges="5", ig="true"), "circuit-graph", "circuit"),
])
def test_each_view_saved_and_exported_with_the_experiment_shown(tmp_path, monkeypatch, params, key, view):
    from saved_views import check_saved, offer_in_model_box

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    offer_in_model_box(monkeypatch, "tiny-llama")
    at = page(model="tiny-llama", clean="The cat sat on", corrupt="The dog ran on", patch_target="t", foil="a",
              **params)
    assert not at.error, [e.value for e in at.error]
    assert {"Python script (prints the numbers)", "Jupyter notebook"} <= {b.proto.label for b in
                                                                          at.get("download_button")}
    shown = charts(at)[0]
    run = check_saved(at, key, shown, local_backend(load_model("tiny-llama"), None), view)
    assert run.texts == ["The cat sat on", "The dog ran on"]
    assert (run.params["target"], run.params["foil"]) == ("t", "a")
    if view == "circuit":
        assert (run.params["edges"], run.params["ig_steps"]) == (5, 5)
    else:
        assert (run.params["site"], run.params["qk_fix"]) == ("mlp", False)
