"""The Probes page, in-process (AppTest): the chart is the backend's accuracy per layer (itself checked in
test_probes.py), the reading names the first readable layer, the URL holds the set and options, bad link values are
named, and the direction at a layer is saved as a steering vector the steering page then offers."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import open_page
from plotly_json import array, charts

from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.probes.data import shipped
from lens.probes.options import ProbeOptions



def page(path="pages/probes.py", **params) -> AppTest:
    return open_page(path, 900, **params)


@pytest.fixture(scope="module")
def backend():
    return local_backend(load_model("smollm2-135m"), None)


def texts(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def test_probe_chart_is_the_backends_and_saves_a_vector(backend, tmp_path, monkeypatch):
    from lens.steering.store import VectorStore

    monkeypatch.setenv("LAYERLENS_VECTORS", str(tmp_path / "v.sqlite"))
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    at = page(set="reviews", folds="4", l2="2")
    want = backend.probe(shipped("reviews"), ProbeOptions(folds=4, l2=2.0))
    (fig,) = charts(at)
    acc = next(d for d in fig["data"] if d.get("name") == "cross-validated")
    np.testing.assert_allclose(array(acc["y"]), want.accuracy, atol=1e-9)
    assert f"becomes linearly readable at layer {want.readable_layer}" in texts(at)
    # the direction at layer 13 (the stream entering block 13: row 12) saved by name
    at.number_input(key="probe_layer").set_value(13)
    at.text_input(key="probe_vector_name").set_value("reviews L13")
    at.button(key="probe_save").click().run()
    assert "Saved “reviews L13” (layer 13" in texts(at)
    v = VectorStore().get("reviews L13")
    np.testing.assert_allclose(v.vector, want.directions[12])
    assert v.how["folds"] == 4 and v.how["set"] == "reviews" and v.source == "probe"
    steer = page("pages/steering.py", steer_vector="saved", steer_saved="reviews L13", steer_tokens="4")
    assert "saved “reviews L13” (the reviews probe's direction, layer 13" in texts(steer)


def test_bad_link_values_are_named(backend):
    at = page(set="poems", folds="99")
    said = texts(at)
    assert "set “poems” (showing true-false)" in said and "folds “99” (showing 5)" in said
