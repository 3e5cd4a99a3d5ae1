"""The Talk page, in-process (AppTest): a five-scene talk built from pasted links (one with a question), reordered,
a scene deleted, saved and opened again from its link; a bad link named in the page; playing it shows each scene's
chart as the registry draws it, the question first, the answer on the next press, then the next scene."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.talks import load_talk, resolve
from lens.views import render_view

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "pages/talk.py"
LINKS = [  # (link, title): a tiny model's views, quick to draw
    ("http://localhost:8501/logit_lens?model=tiny-llama&prompt=abcab&metric=entropy", "Entropy"),
    ("/attention?model=tiny-llama&prompt=abcab&view=Heads&head_metric=prev_token", "Heads"),
    ("/logit_lens?model=tiny-llama&prompt=abcab&metric=target_rank&target=b", "Rank of b"),
    ("/attention?model=tiny-llama&prompt=abcab&view=Rollout+%26+flow", "Rollout"),
    ("/patching?model=tiny-llama&clean=abcab&corrupt=abdab&patch_target=c&foil=d", "Patching"),
]


def page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.switch_page(PAGE)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def box(at, prefix: str, i: int):
    """Scene ``i``'s text box ``prefix`` (its key carries a version that changes when scenes move)."""
    return next(w for w in [*at.text_input, *at.text_area]
                if w.key and w.key.startswith(prefix) and w.key.endswith(f"-{i}"))


def button(at, prefix: str, i: int):
    return next(b for b in at.button if b.key and b.key.startswith(prefix) and b.key.endswith(f"-{i}"))


def run(x) -> AppTest:
    """Run the app again (``x``: the AppTest, or a widget just clicked or set)."""
    at = x.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def titles(at) -> list[str]:
    return [s.title for s in at.session_state["talk_current"].scenes]


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_TALKS", str(tmp_path))
    return tmp_path


def build(at) -> AppTest:
    for link, title in LINKS:
        at.text_input(key="talk_link").set_value(link)
        at.text_input(key="talk_link_title").set_value(title)
        run(at.button(key="talk-add-link").click())
    return at


def test_build_reorder_delete_save_reload(saved):
    at = build(page())
    assert titles(at) == [t for _, t in LINKS]
    assert at.subheader[0].value == "Scenes (5)"
    box(at, "talk-question-", 1).set_value("Which layer holds the previous-token head?")
    run(at)
    box(at, "talk-answer-", 1).set_value("The first.")
    box(at, "talk-notes-", 0).set_value("Start at the bottom row.")
    run(at)
    run(button(at, "talk-down-", 0).click())  # Entropy below Heads
    assert titles(at) == ["Heads", "Entropy", "Rank of b", "Rollout", "Patching"]
    run(button(at, "talk-up-", 4).click())  # Patching above Rollout
    run(button(at, "talk-del-", 2).click())  # Rank of b gone
    assert titles(at) == ["Heads", "Entropy", "Patching", "Rollout"]
    assert any("Deleted scene 3 (Rank of b)" in s.value for s in at.success)
    # The boxes show the moved scenes' texts, not the old positions'.
    assert box(at, "talk-question-", 0).value == "Which layer holds the previous-token head?"
    assert box(at, "talk-notes-", 1).value == "Start at the bottom row."
    at.text_input(key=[w.key for w in at.text_input if w.key.startswith("talk-title-")][0]).set_value("Tiny talk")
    at.text_input(key="talk_name").set_value("tiny talk")
    run(at.button(key="talk-save").click())
    assert any("Saved as “tiny-talk”" in s.value for s in at.success)
    on_disk = load_talk(saved / "tiny-talk.json")
    assert on_disk == at.session_state["talk_current"] and on_disk.title == "Tiny talk"
    assert at.query_params["talk"] == "tiny-talk"

    again = page(talk="tiny-talk")  # a fresh session opens the saved talk from its link
    assert titles(again) == ["Heads", "Entropy", "Patching", "Rollout"]
    assert again.session_state["talk_current"] == on_disk
    assert box(again, "talk-answer-", 0).value == "The first."


def test_bad_link_and_missing_talk_named_in_the_page(saved):
    at = page()
    at.text_input(key="talk_link").set_value("/logit_lens?stride=lots")
    run(at.button(key="talk-add-link").click())
    assert [e.value for e in at.error] == ["That link: URL parameter stride: 'lots' is not an integer"]
    assert at.subheader[0].value == "Scenes (0)"
    at = page(talk="nobody")
    assert any("no saved talk named 'nobody'" in e.value and "an empty talk instead" in e.value for e in at.error)


def test_the_tour_opens_and_one_of_its_scenes_is_added(saved):
    at = page(talk="tour")
    assert len(titles(at)) >= 9 and titles(at)[0] == "What a logit lens is"
    at = page()
    at.selectbox(key="talk_tour_pick").set_value(3)
    run(at.button(key="talk-add-tour").click())
    assert titles(at) == ["Sure, but not yet right: KL to the final answer (nats)"]


def test_play_question_then_answer_then_next(saved):
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.talks import Scene, Talk, save_named, scene_from_url

    scenes = [scene_from_url(link, title) for link, title in LINKS[:2]]
    scenes[1] = Scene(**{**scenes[1].__dict__, "question": "Which head?", "answer": "Head 0.", "notes": "Slowly."})
    save_named(Talk("Play me", tuple(scenes)), "play")
    at = page(talk="play", present="1", scene="2")
    backend = local_backend(load_model("tiny-llama"), None)
    r = resolve(scenes[1])
    want = render_view(backend, r.view, r.texts, **r.params).figures[0]
    (fig,) = charts(at)
    np.testing.assert_allclose(array(fig["data"][0]["z"]), np.asarray(want.data[0].z, float), atol=1e-6)
    assert [i.value for i in at.info] == ["**Question.** Which head?"] and not at.success
    assert at.button(key="talk-next").label == "Reveal →"
    run(at.button(key="talk-next").click())
    assert at.query_params["reveal"] == "1" and [s.value for s in at.success] == ["**Answer.** Head 0."]
    assert at.button(key="talk-next").disabled  # the last scene, its answer shown
    run(at.button(key="talk-notes").click())
    assert [w.value for w in at.warning] == ["**Notes.** Slowly."]
    run(at.button(key="talk-prev").click())
    assert at.query_params["scene"] == "1" and "reveal" not in at.query_params
    (fig,) = charts(at)
    r0 = resolve(scenes[0])
    lens = render_view(backend, r0.view, r0.texts, **r0.params).results[0]
    np.testing.assert_allclose(array(fig["data"][0]["z"]), np.asarray(lens.entropy, float), atol=1e-5)
    assert at.button(key="talk-next").label == "Next →"
    at = page(talk="play", present="1", scene="9")
    assert any("scenes 1 to 2: here is scene 2" in c.value for c in at.caption)


def test_notes_window_follows_the_player(saved):
    """The notes window (``?notes=window&sync=KEY``, what W opens): the player's scene, its notes, question and
    answer and the next title; after → in the player, the next scene's (the two sessions share the server)."""
    from lens.talks import Scene, Talk, save_named

    scenes = (Scene("logit_lens", {"model": "tiny-llama", "prompt": "abcab", "metric": "entropy"}, "First",
                    "Say it slowly.", "Which row?", "The top one."),
              Scene("attention", {"model": "tiny-llama", "prompt": "abcab", "view": "Heads"}, "Second", "Heads now."),
              Scene("anatomy", {"model": "tiny-llama", "prompt": "abcab", "tab": "Skip & swap"}, "Third"))
    save_named(Talk("Notes", scenes), "notes")
    at = page(talk="notes", present="1", scene="1")
    link = next(b for b in at.get("link_button") if b.proto.label == "Window").proto.url
    assert link.startswith("/talk?notes=window&sync=") and link.endswith("&present=1")
    key = link.split("sync=")[1].split("&")[0]
    notes = page(notes="window", sync=key, present="1")
    said = lambda: " ".join(m.value for m in [*notes.markdown, *notes.info, *notes.success, *notes.warning])  # noqa
    assert "1/3 · First" in said() and "**Notes.** Say it slowly." in said() and "Which row?" in said()
    assert "not revealed yet" in said() and "The top one." in said() and "**Next:** Second" in said()
    run(at.button(key="talk-next").click())  # the answer
    run(notes)
    assert "(revealed)" in said()
    run(at.button(key="talk-next").click())  # scene 2
    run(notes)
    assert "2/3 · Second" in said() and "Heads now." in said() and "**Next:** Third" in said()
    assert "Say it slowly." not in said()
    other = page(notes="window", sync="nobody", present="1")  # a key no player published
    assert any("No talk is playing" in i.value for i in other.info)


def test_a_tab_of_two_charts_plays_both(saved):
    """A scene from the attribution page's first tab: both of its charts, side by side, as the page shows them."""
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.talks import Talk, save_named, scene_from_url

    s = scene_from_url("/attribution?model=tiny-llama&prompt=abcab&tab=Direct+attribution&dla_target=c", "DLA")
    save_named(Talk("Two", (s,)), "two")
    at = page(talk="two", present="1", scene="1")
    r = resolve(s)
    want = render_view(local_backend(load_model("tiny-llama"), None), r.view, r.texts, **r.params).figures
    got = charts(at)
    assert r.figures == (0, 1) and len(got) == 2
    np.testing.assert_allclose(array(got[0]["data"][0]["z"]), np.asarray(want[0].data[0].z, float), atol=1e-6)
    assert got[1]["layout"]["title"]["text"] == want[1].layout.title.text
