"""The Layer anatomy page, in-process (AppTest): its charts are the backend's numbers (themselves checked against
hooks in test_anatomy.py), the readings name them, the tab, the swap option and the amateur layer come from the
URL, and bad link values or prompts are named in the page."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.anatomy.options import AnatomyOptions, ContrastiveOptions
from lens.anatomy.readings import similarity_reading, skip_reading
from lens.engine_backend import local_backend

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "pages/anatomy.py"
PROMPT = "The Eiffel Tower is located in the city of"


def page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.switch_page(PAGE)
    at.query_params["prompt"] = PROMPT
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def backend(bundled):
    return local_backend(bundled, None)


def text(at) -> str:
    return " ".join([c.value for c in at.caption] + [m.value for m in at.markdown])


def test_first_tab_and_the_readings_are_the_backends(backend):
    at = page()
    r = backend.anatomy(PROMPT, AnatomyOptions())
    norm, change = charts(at)
    np.testing.assert_allclose(array(norm["data"][0]["y"]), r.norm, rtol=1e-5)
    np.testing.assert_allclose(array(change["data"][2]["y"]), r.block_change, rtol=1e-5)
    said = text(at)
    assert skip_reading(r).split(". ")[0] in said
    assert similarity_reading(r.rows, r.cka).split(". ")[0] in said
    assert "is the outlier" in said


def test_skip_tab_with_swap_from_a_link(backend):
    at = page(tab="Skip & swap", swap="true")
    (fig,) = charts(at)
    r = backend.anatomy(PROMPT, AnatomyOptions(swap=True))
    np.testing.assert_allclose(array(fig["data"][0]["y"]), r.skip_kl, rtol=1e-5)
    np.testing.assert_allclose(array(fig["data"][1]["y"]), r.swap_kl, rtol=1e-5)


def test_similarity_and_outlier_tabs(backend):
    r = backend.anatomy(PROMPT, AnatomyOptions())
    (cka,) = charts(page(tab="Similarity"))
    np.testing.assert_allclose(array(cka["data"][0]["z"]), r.cka, atol=1e-6)
    heat, lines = charts(page(tab="Outliers"))
    np.testing.assert_allclose(array(heat["data"][0]["z"]), r.dim_mean_abs, rtol=1e-5)
    np.testing.assert_allclose(array(lines["data"][0]["y"]), r.max_abs, rtol=1e-5)


def test_contrastive_tab_amateur_from_the_link_and_a_bad_one_named(backend):
    at = page(tab="Autocontrastive", amateur="8")
    (fig,) = charts(at)
    r = backend.contrastive(PROMPT, ContrastiveOptions(amateur_layer=8))
    np.testing.assert_allclose(array(fig["data"][0]["x"]), r.plain_prob, rtol=1e-5)
    assert "With L8 as the amateur" in text(at)
    at = page(tab="Autocontrastive", amateur="99")
    assert "amateur layer “99” (showing 10)" in text(at)
    assert "With L10 as the amateur" in text(at)


def test_bad_tab_and_short_prompt_named():
    at = page(tab="Nowhere")
    assert "tab Nowhere is not one of this page's tabs" in text(at)
    at = AppTest.from_file(APP, default_timeout=600)
    at.switch_page(PAGE)
    at.query_params["prompt"] = "Hi"
    at.run()
    assert not at.exception
    assert any("at least three tokens" in e.value for e in at.error)


def test_two_models_cka_from_a_link_and_a_model_not_on_offer_named():
    from lens.model.loading import load_model

    prompt = "hello there, the end; see me"
    at = AppTest.from_file(APP, default_timeout=600)
    at.switch_page(PAGE)
    for k, v in {"prompt": prompt, "model": "tiny-llama", "tab": "Similarity", "other_model": "tiny-qwen2"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    own, pair = charts(at)
    a, b = local_backend(load_model("tiny-llama"), None), local_backend(load_model("tiny-qwen2"), None)
    np.testing.assert_allclose(array(pair["data"][0]["z"]), a.cka_with(b, prompt).cka, atol=1e-6)
    assert "tiny-llama's last row L3 is most like tiny-qwen2's" in text(at)
    at = page(other_model="no-such-model")
    assert "second model “no-such-model” (showing none)" in text(at)


def suite_page(**params) -> AppTest:
    """The page in suite mode on the tiny model (each prompt runs once per block skipped: the bundled model's suite
    is checked in test_anatomy.py)."""
    at = AppTest.from_file(APP, default_timeout=600)
    at.switch_page(PAGE)
    for k, v in {"model": "tiny-llama", "source": "suite", **params}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def tiny_suite():
    from lens.model.loading import load_model
    from lens.suites.suite import example

    return local_backend(load_model("tiny-llama"), None).anatomy_suite(example("multilingual"), AnatomyOptions())


def test_suite_mode_from_a_link_charts_the_means(tiny_suite):
    from lens.anatomy.readings import suite_similarity_reading, suite_skip_reading
    from lens.anatomy.spread import spread

    s = tiny_suite
    at = suite_page(suite="multilingual")
    norm, change = charts(at)
    band, mean = norm["data"][:2]
    np.testing.assert_allclose(array(mean["y"]), spread(s.norm)["mean"], rtol=1e-6)
    np.testing.assert_allclose(array(band["y"]), [*spread(s.norm)["p90"], *spread(s.norm)["p10"][::-1]], rtol=1e-6)
    np.testing.assert_allclose(array(change["data"][2]["y"]), s.block_change.mean(0), rtol=1e-6)
    said = text(at)
    assert suite_skip_reading(s).split(". ")[0] + "." in said and "Across the 12 prompts" in said
    assert suite_similarity_reading(s).split(". ")[0] in said and "is the outlier" in said
    (skip,) = charts(suite_page(suite="multilingual", tab="Skip & swap"))
    np.testing.assert_allclose(array(skip["data"][0]["y"]), s.skip_kl.mean(0), rtol=1e-6)
    np.testing.assert_allclose(array(skip["data"][0]["error_y"]["array"]),
                               np.percentile(s.skip_kl, 90, axis=0) - s.skip_kl.mean(0), rtol=1e-6, atol=1e-9)
    (cka,) = charts(suite_page(suite="multilingual", tab="Similarity"))
    np.testing.assert_allclose(array(cka["data"][0]["z"]), s.cka.mean(0), atol=1e-9)
    at = suite_page(suite="multilingual", tab="Autocontrastive")
    assert not charts(at) and any("one prompt" in i.value for i in at.info)


def test_suite_mode_bad_link_values_named():
    at = suite_page(suite="no-such-suite", tab="Outliers")
    assert "suite “no-such-suite” (showing capitals)" in text(at)
    assert "Across the 32 prompts" in text(at) and len(charts(at)) == 2
    at = page(source="elsewhere")
    assert "measure on “elsewhere” (showing This prompt)" in text(at)
