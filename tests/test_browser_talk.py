"""A talk in a real headless Chromium: a five-scene talk (one predict-then-reveal) played with the arrow keys in
presenter mode at 1280×720 (every scene on one screen: nothing scrolls, no label clipped, no text under 18 px),
and its deck exported from the page and opened from the file with every network request blocked: the charts are
drawn and → ← N work. In both, W opens the speaker's notes in a second window that follows → in the main one."""
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import sync_playwright

from browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, POLL_MS, clipped_labels, overflow, settle, small_text,
                     streamlit_server)
from lens.talks import Scene, Talk, save_named, scene_from_url

PROMPT = "The+capital+of+France+is"
SCENES = [  # (link, title, question, answer): the bundled model's quick views
    (f"/logit_lens?prompt={PROMPT}&metric=target_rank&target=+Paris&stride=5", "Where does Paris appear?",
     "At which layer is “ Paris” the top guess first?", "Only in the last few layers."),
    (f"/logit_lens?prompt={PROMPT}&metric=entropy&stride=3", "How sure is each layer?", "", ""),
    (f"/attention?prompt={PROMPT}&view=Rollout+%26+flow", "The attention sink", "", ""),
    (f"/attention?prompt={PROMPT}&view=Heads&head_metric=induction", "Induction heads", "", ""),
    (f"/attention?prompt={PROMPT}&view=Routes", "Routes to the answer", "", ""),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    talks = tmp_path_factory.mktemp("talks")
    import os

    os.environ["LAYERLENS_TALKS"] = str(talks)  # for save_named here and for the server below
    scenes = []
    for link, title, question, answer in SCENES:
        s = scene_from_url(link, title)
        scenes.append(Scene(s.view, s.params, title, f"Notes for {title}.", question, answer))
    save_named(Talk("Five scenes", tuple(scenes)), "five")
    with sync_playwright() as pw, streamlit_server(env={"LAYERLENS_WARM": "home", "LAYERLENS_TALKS": str(talks)}) as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser, url
        browser.close()
    os.environ.pop("LAYERLENS_TALKS", None)


def query(pg) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(pg.url).query).items()}


def fits(pg, where: str) -> None:
    assert clipped_labels(pg) == [], where
    assert small_text(pg, 18) == [], where
    assert overflow(pg) == {"down": 0, "across": 0}, where


def chart_title(pg) -> str:
    return pg.eval_on_selector(".js-plotly-plot .gtitle", "e => e.textContent")


def test_play_with_the_arrow_keys_at_1280x720(server):
    browser, url = server
    pg = browser.new_page(viewport={"width": 1280, "height": 720})
    pg.goto(f"{url}/talk?talk=five&present=1&scene=1")
    settle(pg)
    assert pg.get_by_text("Where does Paris appear?").count() == 1
    assert pg.get_by_text("At which layer is “ Paris” the top guess first?").is_visible()
    assert pg.get_by_text("Only in the last few layers.").count() == 0
    assert "target rank" in chart_title(pg)
    fits(pg, "scene 1, question")
    pg.screenshot(path=str(ARTIFACTS / "talk_present_question.png"))
    pg.keyboard.press("ArrowRight")  # predict, then reveal: the answer first
    settle(pg)
    assert query(pg).get("reveal") == "1" and query(pg)["scene"] == "1"
    assert pg.get_by_text("Only in the last few layers.").is_visible()
    fits(pg, "scene 1, answer")
    pg.screenshot(path=str(ARTIFACTS / "talk_present_answer.png"))
    titles = []
    for n in range(2, 6):
        pg.keyboard.press("ArrowRight")
        settle(pg)
        assert query(pg)["scene"] == str(n) and "reveal" not in query(pg)
        assert pg.get_by_text(SCENES[n - 1][1]).count() == 1
        titles.append(chart_title(pg))
        fits(pg, f"scene {n}")
    assert len(set(titles)) == 4  # four different charts
    pg.keyboard.press("n")
    settle(pg)
    assert pg.get_by_text("Notes for Routes to the answer.").is_visible()
    fits(pg, "scene 5 with notes")
    pg.screenshot(path=str(ARTIFACTS / "talk_present_notes.png"))
    pg.keyboard.press("ArrowLeft")
    settle(pg)
    assert query(pg)["scene"] == "4"
    pg.close()


def test_notes_window_follows_the_player(server):
    """W in the player opens the notes window (title, notes, the question and its answer, the next title); → in
    the main window moves it to the next scene's notes."""
    browser, url = server
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    pg = ctx.new_page()
    pg.goto(f"{url}/talk?talk=five&present=1&scene=1")
    settle(pg)
    with ctx.expect_page() as opened:
        pg.keyboard.press("w")
    notes = opened.value
    notes.set_viewport_size({"width": 900, "height": 700})
    notes.get_by_text("Notes for Where does Paris appear?").wait_for(timeout=60_000)
    assert "notes=window" in notes.url and notes.get_by_text("1/5 · Where does Paris appear?").is_visible()
    assert notes.get_by_text("At which layer is “ Paris” the top guess first?").is_visible()
    assert notes.get_by_text("not revealed yet").is_visible()  # the speaker sees the answer before the room does
    assert notes.get_by_text("Only in the last few layers.").is_visible()
    assert notes.get_by_text("How sure is each layer?").is_visible()  # the next scene's title
    notes.screenshot(path=str(ARTIFACTS / "talk_notes_window.png"))
    pg.bring_to_front()
    pg.keyboard.press("ArrowRight")  # the answer, in both windows
    settle(pg)
    notes.get_by_text("Answer (revealed).").wait_for(timeout=15_000)
    pg.keyboard.press("ArrowRight")
    settle(pg)
    assert query(pg)["scene"] == "2"
    notes.get_by_text("Notes for How sure is each layer?").wait_for(timeout=15_000)
    assert notes.get_by_text("2/5 · How sure is each layer?").is_visible()
    assert notes.get_by_text("The attention sink").is_visible()  # scene 3 next
    assert notes.get_by_text("Notes for Where does Paris appear?").count() == 0
    fits(pg, "scene 2 with a notes window open")  # the main window is as before
    ctx.close()


def test_deck_exported_from_the_page_works_offline(server, tmp_path):
    browser, url = server
    pg = browser.new_page(viewport={"width": 1600, "height": 1000})
    pg.goto(f"{url}/talk?talk=five")
    settle(pg)
    assert clipped_labels(pg) == []
    pg.screenshot(path=str(ARTIFACTS / "talk_build.png"))
    pg.get_by_role("button", name="Export deck (HTML)").click()
    download = pg.get_by_role("button", name="Download the deck")
    download.wait_for(timeout=300_000)
    with pg.expect_download() as got:
        download.click()
    deck = tmp_path / "deck.html"
    got.value.save_as(deck)
    pg.close()

    ctx = browser.new_context(viewport={"width": 1280, "height": 720})  # its pages, the notes window too, offline
    asked = []

    def only_the_file(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_the_file)
    off = ctx.new_page()
    off.goto(deck.as_uri())
    off.wait_for_function("() => typeof Plotly !== 'undefined'", polling=POLL_MS)
    shown = lambda: off.eval_on_selector(".scene.on", "s => s.id || 'title'")  # noqa: E731
    assert shown() == "title"
    off.keyboard.press("ArrowRight")
    off.wait_for_selector(".scene.on .js-plotly-plot .main-svg")
    assert shown() == "scene-1" and off.locator(".scene.on .question").is_visible()
    assert not off.locator(".scene.on .answer").is_visible()
    off.keyboard.press("ArrowRight")
    assert shown() == "scene-1" and off.locator(".scene.on .answer").is_visible()
    assert not off.locator(".scene.on .notes").is_visible()
    off.keyboard.press("n")
    assert off.locator(".scene.on .notes").is_visible()
    off.keyboard.press("n")
    for n in range(2, 6):
        off.keyboard.press("ArrowRight")
        off.wait_for_selector(f"#scene-{n} .js-plotly-plot .main-svg")
        off.wait_for_timeout(300)
        assert shown() == f"scene-{n}"
        assert off.locator(f"#scene-{n} .js-plotly-plot .main-svg .trace, #scene-{n} .js-plotly-plot .hm, "
                           f"#scene-{n} .js-plotly-plot .heatmaplayer image").count() > 0
        assert clipped_labels(off) == [] and overflow(off) == {"down": 0, "across": 0}
    off.screenshot(path=str(ARTIFACTS / "talk_deck_last.png"))
    off.keyboard.press("ArrowLeft")
    assert shown() == "scene-4"
    # W: the speaker's notes in a second window, written by the deck itself; → in the deck moves it on.
    with ctx.expect_page() as opened:
        off.keyboard.press("w")
    notes = opened.value
    said = lambda: notes.inner_text("#speaker")  # noqa: E731
    assert "4 / 5" in said() and "Notes for Induction heads." in said() and "Next: Routes to the answer" in said()
    notes.screenshot(path=str(ARTIFACTS / "talk_deck_notes_window.png"))
    off.keyboard.press("ArrowRight")
    assert shown() == "scene-5" and "Notes for Routes to the answer." in said()
    assert "the end of the talk" in said()
    notes.keyboard.press("Home")  # keys pressed in the notes window move the deck
    assert shown() == "title"
    notes.keyboard.press("ArrowRight")
    assert shown() == "scene-1" and "Question. At which layer" in said() and "not revealed yet" in said()
    notes.keyboard.press("ArrowRight")
    assert shown() == "scene-1" and off.locator(".scene.on .answer").is_visible() and "(revealed)" in said()
    assert asked == []  # the deck and its notes window asked for nothing beyond the file
    ctx.close()
