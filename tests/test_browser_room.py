"""Room-ready: every page, every view option and every tour step, as a class and a researcher see them.

At 1600×1000 no chart label may reach outside its chart, no axis's tick labels run together, and no choice box
cuts its choice; at 1280×720 in presenter mode, in addition, no text is under 18 px (as drawn: a chart's text may
be scaled), nothing scrolls, and the Leave presenter mode button is on the screen. The server logs no traceback or
warning while all of it is drawn. A URL taken after a widget change opens the same chart in a fresh browser, and
the tour's links open the chart the step shows. One server; pages load in parallel tabs.
"""
from __future__ import annotations

import os
import time
import warnings
from urllib.parse import quote

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, POLL_MS, SETTLED_JS, STILL_S, charts, clipped_labels,
                     crowded_ticks, cut_choices, exit_button_shown, overflow, overlapping_labels,
                     same_charts, server_warnings, settle, small_text, streamlit_server, under_exit_button, unsettled)

PLOT = ".js-plotly-plot"
NORMAL = {"width": 1600, "height": 1000}
PRESENT = {"width": 1280, "height": 720}
ROOM = ARTIFACTS / "room"
TABS = int(os.environ.get("ROOM_TABS", "4"))  # pages loading at once
SETTLE_S = 240  # a screen not drawn by then is loaded once more
SHOTS = os.environ.get("LAYERLENS_SCREENSHOTS") == "1"  # every screen's screenshot, not only a defective one's


def screens() -> list[str]:
    """Every page, every view option a URL opens (the registry's views, the tabs) and every tour step."""
    from lens.tour import STEPS
    from lens.views import PAGES, VIEWS

    out = [""] + [p for p in PAGES if p != "tour"]
    out += [v.page for v in VIEWS.values() if v.page not in out]
    out += [f"patching?tab={quote(t)}" for t in ("The lens of both prompts", "Patch one cell", "Ablate", "Two models",
                                                   "Noise on the subject")]
    out += [f"patching?tab=Ablate&ablate_heads={quote('20.3, 21.0')}&ablate_skip=15"]
    out += [f"generate?tab={quote(t)}" for t in ("Where each token looked", "Text, token by token")]
    out += ["projection?source=Corpus", "projection?mode=Layer+by+layer"]
    out += ["attribution?dla_head=L24.H4", "attribution?tab=Attention+knockout&ko_sources=3&ko_align=start"]
    out += ["circuits?tab=Attribution+patching&site=Heads&qk_fix=true", "circuits?tab=Circuit&edges=200"]
    out += ["neurons?tab=Heads&comp=q&head=L20H0", "neurons?tab=Neurons&token=+Rome&top=5"]
    out += [f"suites?tab={quote(t)}&by=continent" for t in ("Where answers settle", "Each prompt")]
    out += ["suites?suite=indirect-object&tab=Patching+over+pairs&patched=true", "suites?source=File",
            "suites?source=Template&as_pairs=true&tab=Patching+over+pairs&patched=true",
            "suites?source=Paste&pasted=" + quote("The capital of France is\t Paris\nThe capital of Peru is\t Lima")]
    out += ["steering?steer_mode=cap&steer_positions=after-prompt&steer_unit=raw&steer_coef=2&steer_layer=99"]
    out += ["circuits?tab=Attribution+patching&grad_drop=true", "circuits?tab=Circuit&rank=size"]
    out += [f"anatomy?tab={quote(t)}" for t in ("Skip & swap", "Similarity", "Outliers", "Token erasure",
                                                "Autocontrastive")]
    out += ["anatomy?source=suite&suite=multilingual", f"anatomy?source=suite&suite=multilingual&tab={quote('Similarity')}"]
    out += ["logit_lens?panel=work", "attention?view=Heads&w_query=4&w_key=2",
            f"generate?tab={quote('Sampling on the spot')}"]
    out += ["talk?talk=tour&scene=3"]
    out += [f"tour?step={n}" for n in range(1, len(STEPS) + 1)]
    return out


@pytest.fixture(scope="module")
def room():
    ROOM.mkdir(parents=True, exist_ok=True)
    # The home page warm only: the walk computes each screen's charts itself, and the rest of a full warm (the
    # sidebar's examples, UMAP's compilation, every steering preset) is work no screen here asks for.
    with sync_playwright() as pw, streamlit_server(env={"LAYERLENS_WARM": "home"}) as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        browser.base_url = url
        browser.log = ARTIFACTS / f"streamlit-{url.rsplit(':', 1)[1]}.log"
        yield browser
        browser.close()


def url_of(base: str, path: str, present: bool) -> str:
    sep = "&" if "?" in path else "?"
    return f"{base}/{path}" + (f"{sep}present=1" if present else "")


def defects(pg, present: bool) -> list[str]:
    found = [f"label cut: {t!r} {px} px outside its chart" for t, px in clipped_labels(pg)]
    found += [f"tick labels run together: {a!r} and {b!r} {px:g} px apart" for a, b, px in crowded_ticks(pg)[:3]]
    found += [f"choice cut: {t!r} ({px} px of it hidden)" for t, px in cut_choices(pg)]
    if pg.locator("[data-testid=stException]").count() or pg.get_by_text("Traceback").count():
        found.append("a traceback on the page")
    if present:
        small = small_text(pg, 18)
        found += [f"{len(small)} texts under 18 px, e.g. " + "; ".join(f"{t!r} {px:g} px" for t, px in small[:4])] \
            if small else []
        if not exit_button_shown(pg):
            found.append("no Leave presenter mode button on the screen")
        covered = under_exit_button(pg)
        if covered:
            found.append("under the Leave presenter mode button: " + "; ".join(f"{t!r}" for t, _ in covered[:3]))
        o = overflow(pg)
        if o["down"] > 0 or o["across"] > 0:
            found.append(f"scrolls {o['down']} px down, {o['across']} px across")
    return found


# Moves a tab to another URL as the browser's Back and Forward buttons do (the app shows what the URL shows a first
# visit: ui/routing.py), with no new load of Streamlit's scripts: a full load costs Chromium ~3 CPU-s a screen, most
# of this test's time, a move ~0.5.
MOVE_JS = """(url) => { history.pushState({}, '', url); dispatchEvent(new PopStateEvent('popstate')); }"""


def count_runs(pg) -> None:
    """``pg.runs`` counts the app's script runs that started in this tab: Streamlit's "new session" message, which
    begins each run. (The app's running state in the page is no witness: a short run under load can start and end
    within one render, and the attribute never changes.)"""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    pg.runs = 0

    def frame(payload) -> None:
        if isinstance(payload, (bytes, bytearray)):
            msg = ForwardMsg()
            msg.ParseFromString(bytes(payload))
            if msg.WhichOneof("type") == "new_session":
                pg.runs += 1
    pg.on("websocket", lambda ws: ws.on("framereceived", frame))


def move(pg, url: str) -> int:
    """``url`` in this tab as Back or Forward would open it; returns the runs seen before (its run is one more)."""
    before = pg.runs
    pg.evaluate(MOVE_JS, url)
    return before


def visit(pg, url: str) -> None:
    """``url`` in this tab, drawn: loaded the first time, afterwards moved to as Back and Forward do (``move``)."""
    if getattr(pg, "runs", None) is None:
        count_runs(pg)
        pg.goto(url)
        settle(pg)
    else:
        arrived(pg, move(pg, url))


def arrived(pg, runs: int) -> None:
    """Until this tab has started a run after the first ``runs`` and then settled."""
    deadline = time.monotonic() + 120
    while pg.runs <= runs and time.monotonic() < deadline:
        pg.wait_for_timeout(POLL_MS)  # (Playwright hands the tab's messages over while it waits)
    settle(pg)


def walk(room, present: bool) -> dict[str, list[str]]:
    """Each screen's defects, TABS screens loading at a time: a tab whose screen has finished drawing (and stayed
    so for a moment) is checked and moves on to the next screen (its first one it loads; the others it opens as
    Back and Forward do, which the app draws as a first visit to the URL: tested below). A screen that does not
    finish drawing, even after a reload, is a defect of its own, named with what it waited for; every screen's
    time goes to the artifacts, and the screenshot of each screen with a defect (of every screen with
    LAYERLENS_SCREENSHOTS=1)."""
    ctx = room.new_context(viewport=PRESENT if present else NORMAL)
    todo, out, times, reloaded = list(screens()), {}, [], []
    busy = {}  # tab → [path, started, settled since (or None), reloaded once, what it first waited for,
    #                runs seen before it was asked for (its own run is a later one; -1: a load)]

    def shot(path: str) -> str:
        name = (path or "home").replace("?", "-").replace("&", "-").replace("=", "_").replace("%", "")
        return str(ROOM / f"{name}{'-present' if present else ''}.png")

    def drawn(pg) -> bool:
        try:
            return bool(pg.evaluate(SETTLED_JS)) and pg.runs > busy[pg][5]
        except PlaywrightError:  # between two documents
            return False

    try:
        tabs = [ctx.new_page() for _ in range(TABS)]
        for pg in tabs:
            count_runs(pg)
        loaded = set()
        while todo or busy:
            for pg in tabs:
                if pg not in busy and todo:
                    path = todo.pop(0)
                    if pg in loaded:
                        runs = move(pg, url_of(room.base_url, path, present))
                    else:
                        pg.goto(url_of(room.base_url, path, present), wait_until="commit")
                        loaded.add(pg)
                        runs = -1
                    busy[pg] = [path, time.perf_counter(), None, False, "", runs]
            time.sleep(POLL_MS / 1000)
            for pg, state in list(busy.items()):
                path, started, since, again, why, _ = state
                now = time.perf_counter()
                if not drawn(pg):
                    state[2] = None
                    if now - started > SETTLE_S:
                        if again:  # a screen that does not draw twice is a defect, with what it waited for
                            out[path or "/"] = [f"never finished drawing: {why}; after a reload: {unsettled(pg)}"]
                            del busy[pg]
                        else:
                            # Once more from a reload (a page starved under the suite's load), said in the
                            # warnings and the times.
                            waited = unsettled(pg) if pg.runs > state[5] else "its run for the new URL to start"
                            state[3], state[4], state[1], state[5] = True, waited, now, -1
                            pg.screenshot(path=shot(path))
                            pg.reload(wait_until="commit")
                    continue
                if since is None:
                    state[2] = now
                    continue
                if now - since < STILL_S:  # drawn, and staying so for a moment (plotly's automargin redraws once)
                    continue
                found = defects(pg, present)
                if found and state[5] >= 0:
                    # Found on a screen the tab moved to: judged as a first visit sees it, from a load of its own
                    # (a chart the move reused may be caught mid-resize to its new place).
                    state[2], state[5] = None, -1
                    pg.goto(url_of(room.base_url, path, present), wait_until="commit")
                    continue
                del busy[pg]
                if again:
                    warnings.warn(f"/{path} drew only after a reload (first it waited for: {why})")
                    reloaded.append(f"/{path}: drew only after a reload; first it waited for: {why}")
                times.append((now - started, path))
                out[path or "/"] = found
                if out[path or "/"] or SHOTS:  # 0.7 s a screen: taken where there is something to see
                    pg.screenshot(path=shot(path))
    finally:
        ctx.close()
        (ROOM / f"times{'-present' if present else ''}.txt").write_text(
            "".join(f"{t:6.1f} s  /{p}\n" for t, p in sorted(times, reverse=True))
            + "".join(f"{r}\n" for r in reloaded))
    return out


def report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"/{path}: " + " | ".join(d) for path, d in found.items() if d)


def test_every_screen_has_whole_labels_at_1600(room):
    assert report(walk(room, present=False)) == ""


def test_every_screen_fits_a_projector_with_large_text(room):
    assert report(walk(room, present=True)) == ""


def test_a_tour_edit_still_fits_and_goes_in_the_url(room):
    """Step 1's "Try it" on another prompt: the chart follows the new answer, the page still fits, and the
    URL carries the prompt (so the link shows the edited step)."""
    pg = room.new_context(viewport=PRESENT).new_page()
    try:
        pg.goto(url_of(room.base_url, "tour?step=1", True))
        settle(pg)
        pg.get_by_role("button", name="Try it").click()
        box = pg.get_by_role("textbox", name="Prompt")
        box.fill("The capital of Italy is")
        box.press("Enter")
        settle(pg)
        pg.keyboard.press("Escape")
        pg.wait_for_timeout(500)
        pg.screenshot(path=str(ROOM / "tour-step_1-edited-present.png"))
        assert "Italy" in pg.url, pg.url
        assert "Rome" in " ".join(c["title"] for c in charts(pg)), [c["title"] for c in charts(pg)]
        assert defects(pg, True) == []
    finally:
        pg.context.close()


# A widget changed on a page: (page, what to do with it). The URL afterwards must draw the same charts.
def _select(label: str, option: str):
    """Streamlit's select box: open the box under ``label``, pick ``option`` from its list. Where a live chart's
    own box stands in for it (the lens heatmap's "Colour by"), that one, as a person would: the browser recolours
    and the URL follows a moment later."""
    def act(pg):
        live = pg.locator("select.ll-select", has=pg.get_by_role("option", name=option, exact=True))
        if live.count() and live.first.is_visible():
            before = pg.url
            live.first.select_option(label=option)
            heard(pg, before)
            return
        box = pg.get_by_role("combobox", name=label, exact=True).first
        box.click()
        if not pg.get_by_role("option").count():
            box.press("ArrowDown")  # a box with no choice yet opens its list on a key
        pg.get_by_role("option", name=option, exact=True).click()
    return act


def _type(label: str, value: str):
    """The box under ``label`` that a person sees (a live chart's own box where it stands in for Streamlit's):
    typed into, then Enter."""
    def act(pg):
        box = pg.get_by_label(label, exact=True).filter(visible=True).first
        before = pg.url
        box.fill(value)
        box.press("Enter")
        if box.evaluate("e => !!e.closest('.ll-live-control')"):
            heard(pg, before)
    return act


def heard(pg, before: str) -> None:
    """A live control's change has reached the server: the browser draws it at once, the server hears of it 0.7 s
    after the last change and its run puts it in the URL. (A fixed wait read, under load, a page whose run for the
    change had not started yet, and then its charts in the middle of that run.)"""
    pg.wait_for_function("u => location.href !== u", arg=before, timeout=120_000, polling=POLL_MS)


def _press(name: str):
    """A button, or one of a segmented control's or pills' options (buttons whose text is ``name``)."""
    import re

    exact = re.compile(f"^{re.escape(name)}$")
    return lambda pg: pg.locator("[data-testid=stMain] button").filter(has_text=exact).first.click()


def _head(n: int):
    """Head ``n``: a pill in the normal view, a box in presenter mode (where nine pills would not fit)."""
    def act(pg):
        pill = pg.locator("[data-testid=stButtonGroup] button").filter(has_text=f"head {n}")
        if pill.count():
            pill.first.click()
        else:
            _select("Head", f"head {n}")(pg)
    return act


def _tab(name: str):
    return lambda pg: pg.get_by_role("tab", name=name, exact=True).first.click()


CHANGES = (
    ("logit_lens", _select("Colour by", "KL to final")),
    ("logit_lens", _type("Layer stride", "3")),
    ("logit_lens", _type("Target token", " Paris")),
    ("attention?view=Heads", _select("Score", "induction")),
    ("attention?view=Heads&head_metric=induction", _type("Layer", "3")),
    ("attention?view=Heads", _head(2)),
    ("attention", _press("Rollout & flow")),
    ("patching", _press("MLP")),
    ("patching", _tab("The lens of both prompts")),
    ("generate", _select("Colour by", "entropy")),
    ("projection", _select("Layout", "Layer by layer")),
    ("suites", _select("Measure", "p(target)")),
    ("suites", _select("Facet by", "continent")),
)


@pytest.mark.parametrize("present", [False, True], ids=["normal", "present"])
def test_the_url_after_a_change_draws_the_same_chart(room, present):
    ctx = room.new_context(viewport=PRESENT if present else NORMAL)
    failed = []
    try:
        pg = ctx.new_page()
        last = None
        for path, change in CHANGES:
            # Moved to as Back and Forward do (``visit``: a full load costs Chromium ~4 CPU-s, a move ~0.5), by way
            # of the home page when the last change was on the same page: a box the last change typed into would
            # keep its text in the browser when the tab moves within one page, and the next change would send it.
            page = path.split("?")[0]
            if page == last:
                visit(pg, url_of(room.base_url, "", present))
            visit(pg, url_of(room.base_url, path, present))
            last = page
            before = pg.url
            change(pg)
            settle(pg)
            shown, link = charts(pg), pg.url
            # A new tab (a session of its own; the browser's cache kept, as a person's browser keeps it).
            other = ctx.new_page()
            try:
                other.goto(link)
                settle(other)
                again = charts(other)
                if not same_charts(again, shown):
                    failed.append(f"{path}: {before} → {link} draws other charts when opened afresh: "
                                  f"{[c['title'] for c in again]} against {[c['title'] for c in shown]}")
            finally:
                other.close()
    finally:
        ctx.close()
    assert failed == []


def test_the_tours_links_open_the_chart_the_step_shows(room):
    """In presenter mode, each step's "explore it" link stays in the tab and in presenter mode, and the
    page it opens draws the step's chart (same traces, same numbers)."""
    from lens.tour import STEPS

    pg = room.new_context(viewport=PRESENT).new_page()
    failed = []
    try:
        for n in range(1, len(STEPS) + 1):
            visit(pg, url_of(room.base_url, f"tour?step={n}", True))
            step_charts = charts(pg)
            links = pg.locator("[data-testid=stMain] a", has_text="xplore")
            for i in range(links.count()):
                if i:  # back to the step for its next link (the first is on the page just read)
                    visit(pg, url_of(room.base_url, f"tour?step={n}", True))
                link = pg.locator("[data-testid=stMain] a", has_text="xplore").nth(i)
                if link.get_attribute("target") == "_blank":
                    failed.append(f"step {n}: link {i + 1} opens a new tab")
                link.click()
                pg.wait_for_url(lambda u: "/tour" not in u, timeout=60_000)
                settle(pg)
                if "present=1" not in pg.url:
                    failed.append(f"step {n}: link {i + 1} leaves presenter mode ({pg.url})")
                want = [{k: t[k] for k in ("type", "x", "y", "z")} for t in step_charts[i]["data"]]
                got = [[{k: t[k] for k in ("type", "x", "y", "z")} for t in c["data"]] for c in charts(pg)]
                if not any(same_charts(want, g) for g in got):
                    failed.append(f"step {n}: link {i + 1} ({pg.url}) draws another chart than the step's")
    finally:
        pg.context.close()
    assert failed == []


def test_the_server_logged_no_warning(room):
    """Last in this module: everything above was drawn without a traceback or warning in the server's log."""
    assert server_warnings(room.log.read_text()) == []


@pytest.mark.parametrize("present", [False, True], ids=["normal", "present"])
def test_the_projections_point_labels_do_not_cover_one_another(room, present):
    """The tokens' labels at the ends of their paths, and in each layer's frame, each stand clear of the others
    ("France" and "capital" once ran into each other on the home prompt, in presenter mode)."""
    pg = room.new_context(viewport=PRESENT if present else NORMAL).new_page()
    try:
        found = {}
        for path in ("projection", "projection?mode=Layer+by+layer",
                     "projection?prompt=" + quote("The Eiffel Tower is located in the city of")):
            visit(pg, url_of(room.base_url, path, present))
            assert pg.locator(".textpoint text").count() >= 4, path  # labels drawn, to be compared
            if overlapping_labels(pg):
                found[path] = overlapping_labels(pg)
        assert found == {}
    finally:
        pg.context.close()


def test_right_to_left_tokens_keep_their_order_on_the_home_page(room):
    """Each token chip is isolated in its own direction: Hebrew and Arabic tokens are not reordered among their
    neighbours, so the chips read left to right in the model's order."""
    pg = room.new_context(viewport=NORMAL).new_page()
    try:
        pg.goto(f"{room.base_url}/?prompt={quote('שלום עולם and مرحبا بالعالم')}")
        settle(pg)
        xs = pg.eval_on_selector_all(".token-chips code", "els => els.map(e => [e.getBoundingClientRect().left, "
                                                          "e.getBoundingClientRect().top])")
        assert len(xs) >= 4
        for (x0, y0), (x1, y1) in zip(xs, xs[1:]):
            assert x1 > x0 or y1 > y0, xs  # the next chip is to the right, or on the next line
    finally:
        pg.context.close()


def test_a_link_naming_options_by_key_keeps_them_in_the_url(room):
    """``?metric=kl`` (the tour's links name options so) draws KL, and the address bar then holds the option
    (as the box's label), so that copying it reproduces the chart; it once dropped it."""
    ctx = room.new_context(viewport=NORMAL)
    try:
        pg = ctx.new_page()
        for path, kept in (("logit_lens?metric=kl", "metric=KL+to+final"),
                           ("generate?gen_metric=entropy&new_tokens=3", "gen_metric=entropy"),
                           ("attention?view=Heads&head_metric=prev_token", "head_metric=previous+token")):
            pg.goto(url_of(room.base_url, path, False))
            settle(pg)
            assert kept in pg.url, (path, pg.url)
            shown = charts(pg)
            other = ctx.new_page()
            other.goto(pg.url)
            settle(other)
            assert same_charts(charts(other), shown), path
            other.close()
    finally:
        ctx.close()


def test_back_and_forward_show_what_their_url_shows(room):
    """The browser's Back and Forward buttons: the page shows what its URL shows a first visit (it once showed the
    options of the view it came from, under the other view's URL: the patching page's other tab empty, a link's
    colour metric dropped). Each screen is compared with a fresh tab opened at the same URL."""
    ctx = room.new_context(viewport=NORMAL)
    failed = []

    def same_as_fresh(pg, what: str) -> None:
        shown, link = charts(pg), pg.url
        other = ctx.new_page()
        try:
            other.goto(link)
            settle(other)
            if not same_charts(charts(other), shown):
                failed.append(f"{what} ({link}): {[c['title'] for c in shown]}, against a fresh tab's "
                              f"{[c['title'] for c in charts(other)]}")
        finally:
            other.close()

    try:
        pg = ctx.new_page()
        count_runs(pg)
        for first, then in (("patching?tab=Ablate", f"patching?tab={quote('Patch one cell')}"),
                            ("logit_lens", "logit_lens?metric=kl")):
            pg.goto(url_of(room.base_url, first, False))
            settle(pg)
            arrived(pg, move(pg, url_of(room.base_url, then, False)))
            same_as_fresh(pg, f"/{first} → /{then}")
            runs = pg.runs
            pg.go_back()
            arrived(pg, runs)
            same_as_fresh(pg, f"Back to /{first}")
            runs = pg.runs
            pg.go_forward()
            arrived(pg, runs)
            same_as_fresh(pg, f"Forward to /{then}")
    finally:
        ctx.close()
    assert failed == []
