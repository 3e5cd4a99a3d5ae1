"""The steering page, in-process (AppTest): the lens difference and both lenses are the backend's (checked against a
hook in test_steering_lens.py), the tab and the vector source come from the URL, a vector is saved from the page and
picked again, and a saved vector that is not there is named."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import open_page
from plotly_json import array, charts

from lens.model.tokens import visible
from lens.steering.options import SteerOptions

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PROMPT = "I think that you are"
LINK = dict(prompt=PROMPT, steer_tokens="5")


def page(**params) -> AppTest:
    return open_page("pages/steering.py", 900, **params)


@pytest.fixture(autouse=True)
def vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_VECTORS", str(tmp_path / "v.sqlite"))


def texts(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def want(backend, **kw):
    o = dict(positive=("I love talking about love",), negative=("I hate talking about hate",), layer=8, coef=0.8,
             unit="norm", max_new_tokens=5)
    return backend.steer(PROMPT, SteerOptions(**{**o, **kw}))


def test_lens_difference_and_both_lenses_are_the_backends(backend):
    r = want(backend)
    (diff,) = charts(page(**LINK))
    np.testing.assert_allclose(array(diff["data"][0]["z"]), r.grid_difference, atol=1e-9)
    assert "steered − plain" in diff["layout"]["title"]["text"]
    plain, steered = charts(page(**LINK, steer_tab="Both lenses"))
    np.testing.assert_allclose(array(plain["data"][0]["z"]), r.grid_plain_top_prob, atol=1e-9)
    np.testing.assert_allclose(array(steered["data"][0]["z"]), r.grid_steered_top_prob, atol=1e-9)
    # each cell names its run's top-1 token (the hover keeps the whole token)
    hover = steered["data"][0]["customdata"]
    assert [c[0] for c in hover[-1]] == [visible(t) for t in r.grid_steered_top[-1]]


def test_token_vector_from_the_link_and_saved_then_picked(backend):
    at = page(**LINK, steer_vector="token", steer_token=" love", steer_layer="6", steer_coef="4", steer_unit="raw")
    r = want(backend, vector="token", token=" love", positive=(), negative=(), layer=6, coef=4.0, unit="raw")
    (diff,) = charts(at)
    np.testing.assert_allclose(array(diff["data"][0]["z"]), r.grid_difference, atol=1e-9)
    at.text_input(key="steer_save_name").set_value("love row")
    at.button(key="steer_save").click().run()
    assert "Saved “love row” (layer 6" in texts(at)
    again = page(**LINK, steer_vector="saved", steer_saved="love row", steer_layer="6", steer_coef="4",
                 steer_unit="raw")
    (d2,) = charts(again)
    np.testing.assert_allclose(array(d2["data"][0]["z"]), r.grid_difference, atol=1e-6)
    missing = page(**LINK, steer_vector="saved", steer_saved="nope")
    assert "saved vector “nope” (showing none: no vector of that name is saved)" in texts(missing)


def test_a_preset_runs_what_the_warm_start_computes(backend):
    """Picking a preset (nothing else changed) asks the backend for exactly ``preset_options``: the warm start's
    result is the page's, so a speaker's first pick is served from the cache."""
    from dataclasses import replace

    from lens.views.steering import PRESETS, preset_options

    asked = []
    real = type(backend).steer

    def spy(self, text, options, *a, **k):
        asked.append((text, options))
        return real(self, text, options, *a, **k)
    at = AppTest.from_file(APP, default_timeout=900)
    at.switch_page("pages/steering.py")
    at.query_params["steer_tokens"] = "5"
    at.run()
    name = next(iter(PRESETS))
    import pytest as _pytest
    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(backend), "steer", spy)
        at.selectbox(key="steer_preset").set_value(name).run()
    assert not at.exception, [e.value for e in at.exception]
    prompt, options = preset_options(name, 30)
    assert (prompt, replace(options, max_new_tokens=5)) in asked
