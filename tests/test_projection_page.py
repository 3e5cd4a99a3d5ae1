"""The projection page, run in-process with Streamlit's AppTest on the bundled model."""
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.examples import CORPORA
from lens.model.loading import load_model
from shown import as_shown

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "pages/projection.py"
PROMPT = "The capital of France is a city on the river Seine"


def run(prompt: str, geometry: bool = True, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page(PAGE)
    at.query_params["prompt"] = prompt
    if geometry:
        at.query_params["geometry"] = "true"
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def titles(at: AppTest) -> list[str]:
    return [(f["layout"].get("title") or {}).get("text", "") for f in charts(at)]


def test_page_with_a_real_prompt():
    at = run(PROMPT)
    assert not at.error
    tok = load_model("smollm2-135m").tokenizer
    tokens = [as_shown(tok, i).strip() for i in tok(PROMPT)["input_ids"]][1:]  # the first token is left out
    fig = charts(at)[0]
    assert fig["layout"]["title"]["text"].startswith("Token trajectories emb→L30")
    markers = next(t for t in fig["data"] if t.get("mode") == "markers")
    assert len(array(markers["x"])) == 31 * len(tokens)  # every kept token at every layer
    labels = next(t for t in fig["data"] if t.get("mode") == "text")
    # Each token named at its path's end, but one whose label would cover another's (left to its hover:
    # lens/figures/labels.py, tested there)
    assert len(labels["text"]) == len(tokens) and all(got in (t, "") for got, t in zip(labels["text"], tokens))
    assert sum(map(bool, labels["text"])) >= len(tokens) - 2, labels["text"]
    assert any("France" in h and "layer emb" in h for h in markers["hovertext"])
    got = titles(at)
    for expected in ("Anisotropy baseline", "Prompt entropy", "Curvature", "Norm of the residual stream",
                     "Layer × layer similarity"):
        assert any(t.startswith(expected) for t in got), (expected, got)
    sim = next(f for f in charts(at) if f["layout"]["title"]["text"].startswith("Layer × layer"))
    S = array(sim["data"][0]["z"])
    assert S.shape == (31, 31) and np.allclose(np.diag(S), 1, atol=1e-4)
    assert any("left out: the first token" in c.value for c in at.caption)


def test_page_aligned_animation_and_word_in_prompt():
    at = run("The cat sat on the mat and the cat slept", mode="Layer by layer", word="cat", color="position")
    assert not at.error
    fig = charts(at)[0]
    assert len(fig["frames"]) == 31 and fig["layout"]["sliders"][0]["steps"][0]["label"] == "emb"
    assert any(t.startswith("Self-similarity of the word") and "cat" in t for t in titles(at))


def test_page_corpus_mode():
    word, sentences = CORPORA["bank: river or money"]
    at = run("unused", source="Corpus")
    assert not at.error
    assert at.text_area(key="corpus").value.splitlines() == sentences
    got = titles(at)
    assert any(t.startswith("Self-similarity of the word") and word in t for t in got), got
    assert any(t.startswith("Word MEV") for t in got)
    assert "6 texts" in got[0]
    # The shipped corpus knows each sentence's sense: the word's six bold paths take one colour per sense, and
    # the legend names the senses and their sentences.
    fig = charts(at)[0]
    bold = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    assert len(bold) == 6 and len({t["line"]["color"] for t in bold}) == 2
    assert sorted(t["name"] for t in bold if t["showlegend"]) == [
        "“bank”, money: sentences 2, 3, 5", "“bank”, river: sentences 1, 4, 6"]
    assert not [t for t in fig["data"] if t.get("mode") == "text"] and not fig["layout"].get("annotations")
    assert any("one colour per sense" in c.value for c in at.caption)
    assert any("occurs 6 times in 6 sentences" in c.value for c in at.caption)
    # And the geometry compares the senses: same-sense pairs against different-sense pairs.
    senses = next(f for f in charts(at) if f["layout"]["title"]["text"] == f"Cosine between two “{word}”s")
    assert [t["name"] for t in senses["data"]] == ["same sense (6 pairs)", "different senses (9 pairs)"]


def test_a_corpus_of_unknown_senses_names_each_sentence():
    typed = ["The bank was closed on Monday.", "We rested on the bank of the stream.", "A bank lends money."]
    at = run("unused", source="Corpus", corpus="\n".join(typed))
    assert not at.error
    bold = [t for t in charts(at)[0]["data"] if t.get("mode") == "lines+markers"]
    assert len(bold) == 3 and all(t["showlegend"] for t in bold)
    for k, (trace, sentence) in enumerate(zip(bold, typed), start=1):
        assert trace["name"].startswith(f"bank ({k}): {sentence[:25]}")
    assert not any(f["layout"]["title"]["text"].startswith("Cosine between") for f in charts(at))


def test_presenter_mode_shows_one_measure_of_the_geometry_in_place_of_the_picture():
    at = run(PROMPT, geometry=False, present="1")
    assert not at.error and len(charts(at)) == 1 and titles(at)[0].startswith("Token trajectories")
    at = run(PROMPT, present="1")  # geometry=true: the measure box, its first measure, no picture
    assert [f["layout"]["title"]["text"] for f in charts(at)] == ["Anisotropy baseline"]
    assert at.selectbox(key="measure").value == "Anisotropy baseline"
    at.selectbox(key="measure").set_value("Curvature (degrees)").run()
    assert titles(at) == ["Curvature (degrees)"]
    # A link names the measure by its name (as the box writes it) or by itself; the senses of a shipped corpus.
    at = run("unused", source="Corpus", present="1", measure="Same sense or not")
    assert titles(at) == ["Cosine between two “bank”s"]
    at = run(PROMPT, present="1", measure="curvature")
    assert titles(at) == ["Curvature (degrees)"]
    at = run(PROMPT, present="1", measure="zebra")
    assert titles(at) == ["Anisotropy baseline"]
    assert any("measure “zebra” does not apply here: showing anisotropy baseline instead" in c.value
               for c in at.caption)


def test_page_bad_inputs_leave_the_page_usable():
    at = run("unused", source="Corpus", corpus_word="zebra")
    assert len(at.error) == 1 and "does not occur" in at.error[0].value
    assert any(t.startswith("Anisotropy baseline") for t in titles(at))  # the other metrics still show
    at = run("Hi")
    assert at.error and all("at least 2" in e.value for e in at.error)
    assert at.sidebar.text_area(key="prompt").value == "Hi"  # the sidebar is still there to fix it


def test_geometry_is_drawn_only_when_asked_for():
    at = run(PROMPT, geometry=False)
    assert not at.error and len(charts(at)) == 1  # the projection only
    assert any("Switch on" in c.value for c in at.caption)
    at.toggle(key="geometry").set_value(True).run()
    assert not at.exception and not at.error
    assert any(t.startswith("Anisotropy baseline") for t in titles(at)) and len(charts(at)) >= 9


def test_switching_to_a_corpus_colours_by_sentence():
    at = run(PROMPT, geometry=False)
    assert at.selectbox(key="color").value == "layer"
    at.segmented_control(key="source").set_value("Corpus").run()
    assert not at.exception and at.selectbox(key="color").value == "text"
    at.selectbox(key="color").set_value("layer").run()  # a colouring picked by hand stays
    assert at.selectbox(key="color").value == "layer"
    shared = run("unused", geometry=False, source="Corpus", color="position")  # and so does one from a link
    assert shared.selectbox(key="color").value == "position"


def test_link_values_the_boxes_cannot_take_are_named():
    at = run(PROMPT, geometry=False, mode="Sideways", dims="7", color="text")
    assert not at.exception and not at.error
    note = next(c.value for c in at.caption if c.value.startswith("ℹ️ Not used from the link"))
    assert "layout “Sideways” (showing Trajectories)" in note and "dimensions “7” (showing 2)" in note
    assert "colouring “text” (showing layer)" in note  # by sentence: a corpus's colouring only
    assert titles(at)[0].startswith("Token trajectories")
    at = run(PROMPT, geometry=False, source="Corpus", color="text")
    assert not any(c.value.startswith("ℹ️ Not used") for c in at.caption)


# ---------------------------------------------------------------- Save run and code under every chart
TINY = "tiny-llama"


@pytest.fixture()
def saving(tmp_path, monkeypatch):
    """Runs saved in a file of the test's own; the tiny model offered in the sidebar's box."""
    from saved_views import offer_in_model_box

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    offer_in_model_box(monkeypatch, TINY)


def keyed(at: AppTest) -> dict[str, dict]:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def fresh(model: str):
    """A backend of the test's own: a view drawn again from the saved options shares nothing with the page's."""
    from lens.engine_backend import local_backend

    return local_backend(load_model(model), None)


def test_projection_and_geometry_saved_with_every_option_shown(saving):
    from saved_views import check_saved

    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page(PAGE)
    at.query_params.update(model=TINY, prompt="the cat sat on the mat", geometry="true", word="t", dims="3",
                           color="position", skip_first="false", skip_special="false", rms="false")
    at.query_params["rows"] = ["L1", "L2"]
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert {"Python script (prints the numbers)", "Jupyter notebook"} <= {
        b.proto.label for b in at.get("download_button")}
    shown, backend = keyed(at), fresh(TINY)
    run = check_saved(at, "projection", shown["projection"], backend, "projection")
    assert {k: run.params[k] for k in ("dims", "color_by", "word", "mode", "rows", "skip_first", "skip_special",
                                       "rms_scale")} == {
        "dims": 3, "color_by": "position", "word": "t", "mode": "joint", "rows": [1, 2], "skip_first": False,
        "skip_special": False, "rms_scale": False}
    run = check_saved(at, "layer-similarity", shown["layer-similarity"], backend, "geometry")
    assert (run.params["word"], run.params["metric"], run.params["skip_first"]) == ("t", "layer_similarity", False)


def test_a_corpus_laid_out_layer_by_layer_saved_as_shown(saving):
    from saved_views import check_saved

    at = run("unused", geometry=False, model=TINY, source="Corpus", corpus="the cat sat\nthe dog sat on it",
             mode="Layer by layer")
    assert not at.error, [e.value for e in at.error]
    shown = keyed(at)["projection"]
    assert len(shown["frames"]) == 4  # emb and 3 layers, every frame compared
    run_ = check_saved(at, "projection", shown, fresh(TINY), "projection")
    assert run_.texts == ["the cat sat", "the dog sat on it"] and run_.params["mode"] == "aligned"


def test_the_senses_of_a_shipped_corpus_saved_as_shown(tmp_path, monkeypatch):
    """The bundled model: the word of the shipped corpus is one token of its vocabulary."""
    from saved_views import check_saved

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    at = run("unused", source="Corpus", skip_special="false")
    shown = keyed(at)["metric-senses"]
    run_ = check_saved(at, "metric-senses", shown, fresh("smollm2-135m"), "geometry")
    assert (run_.params["metric"], run_.params["word"], run_.params["skip_special"]) == ("senses", "bank", False)
