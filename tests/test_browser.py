"""The dashboard in a real headless Chromium: type a prompt, see the heatmap."""
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, POLL_MS, clipped_labels, streamlit_server

PLOT = ".js-plotly-plot"


@pytest.fixture(scope="module")
def pw():
    """One Playwright per module: the sync API allows only one running at a time."""
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(pw):
    with streamlit_server() as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.base_url = url
        yield pg
        browser.close()


def wait_idle(pg, timeout=120_000):
    """Streamlit shows a 'running' status widget while a script runs."""
    pg.wait_for_timeout(300)
    pg.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout, polling=POLL_MS
    )


def test_type_prompt_and_see_logit_lens(page):
    page.goto(page.base_url + "/logit_lens")
    wait_idle(page)
    box = page.get_by_role("textbox", name="Prompt", exact=True)
    box.fill("The opposite of hot is cold. The opposite of up is")
    box.press("Control+Enter")
    wait_idle(page)
    page.wait_for_selector(f"{PLOT} .heatmaplayer, {PLOT} .hm", timeout=120_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "logit_lens.png"), full_page=True)
    # The heatmap's cells carry the top-1 tokens; the x axis carries the typed prompt's tokens.
    ticks = page.eval_on_selector_all(f"{PLOT} .xtick text", "els => els.map(e => e.textContent)")
    cells = page.eval_on_selector_all(f"{PLOT} .heatmaplayer text, {PLOT} .hm text", "els => els.map(e => e.textContent)")
    assert len(cells) >= 10, "the heatmap cells show no tokens"
    assert any("opposite" in t for t in ticks), ticks
    assert any(t.endswith("up") for t in ticks), ticks
    assert "prompt=" in page.url and "opposite" in page.url
    assert page.locator("text=Traceback").count() == 0


def test_lens_hover_and_download_state_the_same_numbers(page):
    """After the test above: the hover over the top-right cell (last layer, last position) and the
    downloaded JSON give the same top-1 token and probability."""
    import json
    from pathlib import Path

    area = page.locator(f"{PLOT} .nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + area["width"] - 3, area["y"] + 3)
    hover = page.wait_for_selector(f"{PLOT} .hovertext", timeout=10_000).text_content()
    assert "layer L" in hover and "entropy" in hover and "KL→final" in hover, hover
    with page.expect_download() as got:
        page.get_by_role("button", name="Download the numbers (JSON)").click()
    data = json.loads(Path(got.value.path()).read_text())
    top_token, top_prob = data["top_tokens"][-1][-1][0], data["top_probs"][-1][-1][0]
    assert f"layer L{data['layers'][-1]}" in hover, hover
    assert f"1. {top_token.replace(' ', '␣')}  {top_prob:.3f}" in hover, (hover, top_token, top_prob)
    # The chart's Export menu: one offline HTML file with the same numbers, and a vector image.
    wait_idle(page)
    page.get_by_role("button", name="Export").first.click()
    with page.expect_download() as got:
        page.get_by_role("button", name="HTML (interactive, offline)").click()
    html = Path(got.value.path()).read_text(encoding="utf-8")
    assert "Logit lens" in html and "opposite" in html and "<script src" not in html
    assert f'"top_probs": [' in html and json.dumps(top_token, ensure_ascii=False) in html
    with page.expect_download(timeout=60_000) as got:
        page.get_by_role("button", name="SVG (vector)").click()
    assert Path(got.value.path()).read_bytes().startswith(b"<svg")
    page.keyboard.press("Escape")


def test_the_launch_warms_the_model_and_the_tour(page):
    """``python -m ui.launch`` (what ``make run`` starts) loads the model and computes the home page,
    the tour and UMAP's compilation in the background, and says so on stderr."""
    import time
    from lens.tour import STEPS

    log = ARTIFACTS / f"streamlit-{page.base_url.rsplit(':', 1)[1]}.log"
    deadline = time.time() + 300
    while "UMAP compiled" not in log.read_text() and time.time() < deadline:
        time.sleep(1)
    text = log.read_text()
    assert "smollm2-135m loaded and the home page computed" in text, text[-2000:]
    assert f"the tour's {len(STEPS)} steps, the examples and the steering presets computed, UMAP compiled" in text, text[-2000:]
    assert "failed" not in text


def test_home_page_shows_prediction_and_links(page):
    page.goto(page.base_url + "/?prompt=" + quote("The capital of France is"))
    wait_idle(page)
    page.wait_for_selector(PLOT, timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)
    body = page.inner_text("body")
    assert "What it predicts next" in body
    bars = page.eval_on_selector_all(f"{PLOT} .ytick text", "els => els.map(e => e.textContent)")
    assert any("Paris" in t for t in bars), bars
    assert page.get_by_role("link", name="Logit lens").count() >= 1
    from lens.views import sections

    nav = page.locator("[data-testid=stSidebarNav]").inner_text()  # the pages, grouped by the registry's sections
    for section, pages in sections().items():
        assert section in nav and all(p.title in nav for p in pages), (section, nav)
    assert nav.index("Read the layers") < nav.index("Logit lens") < nav.index("Geometry")


def test_the_home_chart_shows_every_label_whole_at_every_width(page):
    """Its token labels were once cut to their last letter: the bars' labels started left of the chart."""
    try:
        for width, present in ((1280, ""), (1600, ""), (1920, ""), (1280, "&present=1")):
            page.set_viewport_size({"width": width, "height": 1000 if not present else 720})
            page.goto(page.base_url + "/?prompt=" + quote("The capital of France is") + present)
            wait_idle(page)
            page.wait_for_selector(f"{PLOT} .ytick text", timeout=120_000)
            page.wait_for_timeout(500)  # plotly's automargin redraw
            assert clipped_labels(page) == [], (width, present)
            page.screenshot(path=str(ARTIFACTS / f"home-{width}{'-present' if present else ''}.png"))
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


def test_projection_page_draws_token_trajectories(page):
    prompt = quote("The capital of France is a city on the river Seine")
    page.goto(f"{page.base_url}/projection?geometry=true&prompt={prompt}")
    wait_idle(page)
    page.wait_for_selector(f"{PLOT} .scatterlayer .point", timeout=120_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "projection.png"), full_page=True)
    first = page.locator(PLOT).first
    # 10 kept tokens (the first is left out) at 31 rows of the lens, and each token named at its last point.
    assert first.locator(".scatterlayer .point").count() >= 10 * 31
    labels = first.locator(".scatterlayer .textpoint").all_text_contents()
    assert "France" in labels and "river" in labels, labels
    body = page.inner_text("body")
    assert "Geometry through depth" in body and "Anisotropy baseline" in body
    assert page.locator(f"{PLOT}").count() >= 8  # the trajectories, the metric charts and the similarity matrix
    assert page.locator("text=Traceback").count() == 0


def test_attention_page_draws_routes_and_rollout(page):
    page.goto(page.base_url + "/attention?prompt=" + quote("The capital of France is"))
    wait_idle(page)
    page.wait_for_selector(f"{PLOT} .scatterlayer", timeout=120_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "attention_routes.png"), full_page=True)
    titles = page.eval_on_selector_all(f"{PLOT} .gtitle", "els => els.map(e => e.textContent)")
    assert any("Routes to the prediction" in t and "Paris" in t for t in titles), titles
    ticks = page.eval_on_selector_all(f"{PLOT} .xtick text", "els => els.map(e => e.textContent)")
    assert any("France" in t for t in ticks), ticks
    assert "Drill down into one node" in page.inner_text("body")
    page.get_by_text("Rollout & flow", exact=True).click()
    wait_idle(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].some(e => e.textContent.includes('rollout'))",
        timeout=120_000, polling=POLL_MS)
    assert "view=Rollout" in page.url
    assert page.locator("text=Traceback").count() == 0


COLD_LINKS = {  # path -> (prompt, the page's title): each opened at once on a server that has served nothing yet
    "/logit_lens": ("The opposite of hot is", "Logit lens"),
    "/attention": ("The capital of France is", "Attention flow"),
    "/projection": ("One two three four five", "Projections"),
    "/": ("The capital of Italy is", "LayerLens"),
}


def test_shared_links_on_a_cold_server_keep_their_view(pw):
    """Deep links opened together on a freshly started server: each shows its own view, with the shared
    sidebar holding the link's prompt. (Streamlit serves pages/ files directly until the router has run once:
    this fails if the rerouting in ui/routing.py stops working.) The server warms only the home page: the tour's
    charts would compete with the links for the model worker."""
    with streamlit_server(env={"LAYERLENS_WARM": "home"}) as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        tabs = {}
        for path, (prompt, _) in COLD_LINKS.items():
            tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            tab.goto(f"{url}{path}?prompt={quote(prompt)}", wait_until="commit")  # all four in flight at once
            tabs[path] = tab
        for path, tab in tabs.items():
            prompt, title = COLD_LINKS[path]
            tab.wait_for_selector(PLOT, timeout=240_000)
            wait_idle(tab, timeout=240_000)
            name = path.strip("/") or "home"
            tab.screenshot(path=str(ARTIFACTS / f"cold_{name}.png"))
            box = tab.get_by_role("textbox", name="Prompt", exact=True)
            assert box.input_value() == prompt, (path, box.input_value())
            assert tab.get_by_role("heading", name=title).count() >= 1, path
            assert tab.locator("[data-testid=stSidebar]").get_by_text("Model", exact=True).count() == 1, path
            alerts = " ".join(tab.locator("[data-testid=stAlert]").all_inner_texts())
            assert "Type a prompt" not in alerts, (path, alerts)
            assert tab.locator("text=Traceback").count() == 0, path
        browser.close()


def _fits(pg, selector: str, height: int = 720) -> float:
    """The bottom edge (px) of the last element matching ``selector``, page scrolled to the top."""
    return pg.evaluate("""(sel) => { window.scrollTo(0, 0);
        const els = [...document.querySelectorAll(sel)];
        return Math.max(...els.map(e => e.getBoundingClientRect().bottom)); }""", selector)


def test_tour_in_presenter_mode_fits_the_screen_and_walks_with_the_arrow_keys(page):
    from lens.tour import STEPS

    pg = page.context.browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        pg.goto(page.base_url + "/tour?step=1&present=1")
        for n in range(1, len(STEPS) + 1):
            wait_idle(pg)
            pg.wait_for_selector(f"text=step {n} of {len(STEPS)}", timeout=120_000)
            # The step's own charts (not the previous step's): their titles are the step's.
            pg.wait_for_function("""(titles) => { const got = [...document.querySelectorAll('.js-plotly-plot .gtitle')]
                .map(e => e.textContent); return titles.every(t => got.includes(t)); }""",
                                 arg=[s.title for s in STEPS[n - 1].shows], timeout=120_000, polling=POLL_MS)
            pg.wait_for_timeout(400)
            pg.screenshot(path=str(ARTIFACTS / f"tour-step-{n}.png"))
            assert not pg.locator('[data-testid="stSidebar"]').is_visible()
            assert f"step={n}" in pg.url and "present=1" in pg.url
            bottom = _fits(pg, f"{PLOT}, [data-testid='stAlert']")
            assert bottom <= 720, f"step {n}: its chart and notice end at {bottom:.0f} px, below a 720 px screen"
            sizes = pg.eval_on_selector_all(f"{PLOT} .xtick text, {PLOT} .ytick text",
                                            "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
            assert sizes and min(sizes) >= 18, f"step {n}: axis text {min(sizes)} px"
            assert pg.locator("text=Traceback").count() == 0
            if n < len(STEPS):
                pg.locator("body").press("ArrowRight")
        pg.locator("body").press("ArrowLeft")
        pg.wait_for_selector(f"text=step {len(STEPS) - 1} of {len(STEPS)}", timeout=120_000)
        wait_idle(pg)
        pg.locator("body").press("Escape")  # leaves presenter mode
        pg.wait_for_function("() => !location.search.includes('present=1')", timeout=30_000, polling=POLL_MS)
        pg.goto(page.base_url + "/tour?step=99")
        wait_idle(pg)
        pg.wait_for_selector(f"text=here is step {len(STEPS)}, the nearest to 99", timeout=60_000)
    finally:
        pg.close()


def test_an_exported_view_opens_offline(page, tmp_path):
    """The HTML export draws its chart with the network off and asks for nothing outside the file."""
    from lens.export import export_view
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.views import render_view

    rendered = render_view(local_backend(load_model("tiny-llama"), None), "routes", "hello there, the end")
    (path,) = export_view(rendered, tmp_path / "routes.html")
    ctx = page.context.browser.new_context(offline=True)
    requests = []
    ctx.on("request", lambda r: requests.append(r.url))
    try:
        pg = ctx.new_page()
        pg.goto(path.as_uri())
        pg.wait_for_selector(f"{PLOT} .main-svg", timeout=30_000)
        assert pg.locator("text=Information-flow routes").count() >= 1
        assert pg.locator("a.numbers").get_attribute("href").startswith("blob:")
        pg.screenshot(path=str(ARTIFACTS / "export-offline.png"), full_page=True)
    finally:
        ctx.close()
    assert [u for u in requests if not u.startswith("file:")] == []


def test_watch_it_generate_plays_in_the_browser(page):
    """▶ Play steps the lens through the new tokens without the server: the title names each one."""
    from urllib.parse import quote

    page.goto(page.base_url + "/generate?new_tokens=4&prompt=" + quote("The capital of France is"))
    wait_idle(page)
    page.wait_for_selector(f"{PLOT} .gtitle", timeout=120_000)
    title = lambda: page.locator(f"{PLOT} .gtitle").first.text_content()  # noqa: E731
    assert title().startswith("Step 0 of 4") and "Paris" in title()
    page.locator(f"{PLOT} .updatemenu-button").first.click()  # ▶ Play
    page.wait_for_function("() => document.querySelector('.js-plotly-plot .gtitle').textContent.startsWith('All 4')",
                           timeout=30_000, polling=POLL_MS)
    assert page.locator("text=Paris").count() >= 1
    assert page.locator("text=Traceback").count() == 0


def test_the_positions_window_is_in_the_link(page):
    """A long prompt's window of positions travels in the URL (?window=A&window=B); one that does not
    fit the prompt falls back to the last 48 positions."""
    from urllib.parse import quote

    from lens.model.loading import load_model

    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa " * 12  # a prompt no other test uses
    T = len(load_model("smollm2-135m").tokenizer(text)["input_ids"])
    for query, shown in (("&window=0&window=29", "positions 0–29 shown"),
                         ("&window=900&window=950", f"positions {T - 48}–{T - 1} shown")):
        page.goto(f"{page.base_url}/logit_lens?prompt={quote(text)}{query}")
        wait_idle(page)
        page.wait_for_selector(f"text={shown}", timeout=120_000)
        assert page.locator("text=Traceback").count() == 0


def test_a_click_on_the_patching_grid_patches_that_cell(page):
    """Compare & patch: clicking a cell of the residual grid picks it for the one-cell patch, whose lens then
    names that row and position (Streamlit gets no clicks from heatmaps: invisible markers carry them)."""
    page.goto(f"{page.base_url}/patching")
    wait_idle(page)
    page.wait_for_selector(f"{PLOT} .main-svg", timeout=120_000)
    points = page.locator(f"{PLOT} .scatterlayer .point")
    T = 10  # the default pair's tokens
    box = points.nth(5 * T + 2).bounding_box()  # row L5, position 2
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 4, y - 4)  # plotly picks the point under the cursor on hover, then takes the click
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.down()
    page.mouse.up()
    wait_idle(page)  # the page opens the "Patch one cell" tab on the clicked cell (and says so in the URL)
    page.wait_for_function("() => location.search.includes('cell_row=L5') && location.search.includes('cell_pos=2')",
                           timeout=60_000, polling=POLL_MS)
    page.wait_for_function("""() => [...document.querySelectorAll('.gtitle')].some(
        e => e.textContent.includes('with row L5 at position 2 from the clean run'))""",
        timeout=60_000, polling=POLL_MS)
    assert page.locator("text=Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "patch-one-cell.png"))
