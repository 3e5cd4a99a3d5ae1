"""The tour page in-process (Streamlit's AppTest): steps from the URL (and a note when the URL's step is odd),
a speaker's own prompt that the chart, the notice, the URL and the links follow, the reset, no "Try it" where
the chart does not read the prompt, and the exports: an Export menu per chart and the handout."""
import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from streamlit.testing.v1 import AppTest

from plotly_json import charts

from lens.tour import FACTUAL, STEPS

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_step(step: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/tour.py")
    at.query_params["step"] = step
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Tour"))


def links(at: AppTest) -> list[dict[str, str]]:
    """The query of each "explore" link on the page."""
    line = next(m.value for m in at.markdown if "explore" in m.value.lower() and "href=" in m.value)
    hrefs = [part.split('"', 1)[0].replace("&amp;", "&") for part in line.split('href="')[1:]]
    return [{k: v[0] for k, v in parse_qs(urlparse(h).query).items()} for h in hrefs]


def buttons(at: AppTest, kind: str) -> list[str]:
    return [b.proto.label for b in at.get(kind)]


def test_a_step_from_the_url_and_the_nearest_one_when_odd():
    at = open_step("2")
    assert heading(at) == f"#### Tour · step 2 of {len(STEPS)} · {STEPS[1].title}"
    assert len(charts(at)) == len(STEPS[1].shows)
    assert not at.caption or not any(c.value.startswith("ℹ️") for c in at.caption)
    for bad, shown, says in (("99", len(STEPS), f"here is step {len(STEPS)}, the nearest to 99"),
                             ("0", 1, "here is step 1, the nearest to 0"),
                             ("two", 1, "“two” is not a step number: here is step 1."),
                             ("2.5", 2, "“2.5” is not a whole step: here is step 2.")):
        at = open_step(bad)
        assert heading(at).startswith(f"#### Tour · step {shown} of"), bad
        assert any(says in c.value for c in at.caption), (bad, [c.value for c in at.caption])


def test_one_arrow_on_each_button():
    at = open_step("3")
    assert [at.button(key="tour-prev").label, at.button(key="tour-next").label] == ["← Previous", "Next →"]
    at.button(key="tour-next").click().run()
    assert heading(at).startswith("#### Tour · step 4 of")


def test_a_speakers_own_prompt_goes_in_the_url_and_the_links_and_the_reset():
    at = open_step("1")
    box = at.text_input(key="tour-prompt-1")
    assert box.value == FACTUAL
    box.set_value("The capital of Italy is").run()
    assert not at.exception
    assert at.query_params["try"] in ("The capital of Italy is", ["The capital of Italy is"])
    fig = charts(at)[0]
    assert fig["layout"]["title"]["text"].startswith("Rank of “ Rome”")  # the new answer, not “ Paris”
    assert "Italy" in str(fig["data"][0]["x"])
    assert any(m.value.startswith("**“Rome” ranks") for m in at.markdown)  # the fact, computed on it
    notice = next(a.value for a in at.info if "What to notice" in a.value)
    assert f"Written for the step's own prompt “{FACTUAL}”" in notice
    link = links(at)[0]
    assert (link["prompt"], link["target"], link["metric"], link["stride"]) == (
        "The capital of Italy is", " Rome", "target_rank", "5")
    at.button(key="tour-reset-1").click().run()
    assert at.text_input(key="tour-prompt-1").value == FACTUAL
    assert "try" not in at.query_params
    assert charts(at)[0]["layout"]["title"]["text"].startswith("Rank of “ Paris”")
    # A link to the edited step opens it edited.
    at = open_step("1", **{"try": "The capital of Italy is"})
    assert at.text_input(key="tour-prompt-1").value == "The capital of Italy is"
    assert charts(at)[0]["layout"]["title"]["text"].startswith("Rank of “ Rome”")
    at.button(key="tour-next").click().run()  # another step runs on its own prompt
    assert "try" not in at.query_params and links(at)[0]["prompt"] == STEPS[1].shows[0].texts


def test_no_try_it_where_the_chart_ignores_the_prompt():
    n = next(i for i, s in enumerate(STEPS, start=1) if s.shows[0].view == "heads")
    at = open_step(str(n), **{"try": "The capital of Italy is"})
    assert not [t for t in at.text_input if t.key and t.key.startswith("tour-prompt")]
    assert any("is not used" in c.value for c in at.caption)
    assert links(at)[0]["head_metric"] == "induction"


def test_exports_and_the_handout():
    at = open_step("3")
    labels = buttons(at, "download_button")
    assert labels.count("HTML (interactive, offline)") == len(STEPS[2].shows)  # an Export menu per chart
    handout = [b for b in labels if b.startswith("Download the handout")]
    assert len(handout) == 1
    size = float(handout[0].split("HTML, ")[1].split(" MB")[0])
    button = next(b for b in at.get("download_button") if b.proto.label == handout[0])
    assert 1 < size < 50 and button.proto.url  # the file is there to download, its size stated
    assert all(link["present"] == "1" for link in links(open_step("3", present="1")))
    assert not buttons(open_step("3", present="1"), "download_button")  # a projector shows no downloads


def test_every_steps_chart_is_saved_with_its_view_and_options(tmp_path, monkeypatch):
    """Save run under each chart of each step: the run is the step's view with the step's options, drawn again
    from them (on the results the page computed: the test session's cache) and reopened, the page's chart."""
    from lens.cache import ResultCache
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.model.registry import DEFAULT_MODEL, default_cache_root
    from lens.tour import chart_params
    from saved_views import check_saved

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    backend = local_backend(load_model(DEFAULT_MODEL), ResultCache(default_cache_root() / "results"))
    code = {"Python script (prints the numbers)", "Jupyter notebook"}
    for n, step in enumerate(STEPS, 1):
        at = open_step(str(n))
        assert code <= set(buttons(at, "download_button")), n
        shown = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
        for i, s in enumerate(step.shows):
            # The tour retitles its charts (the view's own title is compared on the other pages).
            run = check_saved(at, f"tour-{n}-{i}", shown[f"tour-{n}-{i}"], backend, s.view, titled=False)
            assert run.params == chart_params(s), (n, i)
            assert run.texts == (list(s.texts) if isinstance(s.texts, tuple) else s.texts), (n, i)
