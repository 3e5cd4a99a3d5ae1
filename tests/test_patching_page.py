"""The Compare & patch page, in-process (AppTest) on the bundled model: the heatmap shows the backend's
patching grid (itself checked cell by cell in test_patching.py), the URL holds the experiment, and bad
input is a message in the page."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.examples import PATCH_PAIRS
from lens.local_backend import LocalBackend
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
    return LocalBackend(load_model("smollm2-135m"), None)


def test_default_pair_shows_the_patching_grid(backend):
    at = page()
    (fig,) = charts(at)
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
