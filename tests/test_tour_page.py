"""The tour page in-process (Streamlit's AppTest): steps from the URL, a step out of range, and a
speaker's own prompt on a step, with the reset back to the step's preset."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

from plotly_json import charts

from lens.tour import STEPS

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_step(step: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/tour.py")
    at.query_params["step"] = step
    at.run()
    assert not at.exception, at.exception
    return at


def heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Tour"))


def test_a_step_from_the_url_and_the_nearest_one_when_out_of_range():
    at = open_step("2")
    assert heading(at) == f"#### Tour · step 2 of {len(STEPS)} · {STEPS[1].title}"
    assert len(charts(at)) == len(STEPS[1].shows)
    for bad, shown in (("99", len(STEPS)), ("0", 1), ("two", 1)):
        at = open_step(bad)
        assert heading(at).startswith(f"#### Tour · step {shown} of")
        assert any("step" in c.value and ("nearest" in c.value or "not a step number" in c.value) for c in at.caption)


def test_a_speakers_own_prompt_and_the_reset():
    at = open_step("1")
    box = at.text_input(key="tour-prompt-1")
    assert box.value == STEPS[0].shows[0].texts
    box.set_value("The capital of Italy is").run()
    assert not at.exception
    assert any("On your prompt “The capital of Italy is”" in c.value for c in at.caption)
    ticks = charts(at)[0]["layout"]["xaxis"]
    assert "Italy" in str(charts(at)[0]["data"][0]["x"]) or "Italy" in str(ticks)
    at.button(key="tour-reset-1").click().run()
    assert at.text_input(key="tour-prompt-1").value == STEPS[0].shows[0].texts
    assert not any("On your prompt" in c.value for c in at.caption)
