"""Fitted lenses in a real headless Chromium: a lens not fitted yet is fitted on click, with progress, and
the fitted lens, its early-exit lines and the lens comparison are drawn."""
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, POLL_MS, streamlit_server

PLOT = ".js-plotly-plot"


@pytest.fixture(scope="module")
def page():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw, streamlit_server(env={"LAYERLENS_WARM": "home"}) as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1280, "height": 720})
        pg.base_url = url
        yield pg
        browser.close()


def wait_idle(pg, timeout=240_000):
    pg.wait_for_timeout(300)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout,
                         polling=POLL_MS)


def titles(pg) -> list[str]:
    return pg.eval_on_selector_all(f"{PLOT} .gtitle", "els => els.map(e => e.textContent)")


def test_a_missing_lens_is_fitted_on_click(page):
    page.goto(f"{page.base_url}/logit_lens?model=tiny-llama&lens=linear&prompt={quote('hello there')}")
    wait_idle(page)
    button = page.get_by_role("button", name="Fit the linear lens now")
    button.wait_for(timeout=120_000)
    assert page.locator(PLOT).count() == 0
    button.click()
    page.wait_for_selector(f"{PLOT} .heatmaplayer, {PLOT} .hm", timeout=240_000)
    wait_idle(page)
    assert any("Linear-shortcut lens" in t for t in titles(page)), titles(page)
    assert page.locator("text=Traceback").count() == 0


def test_bundled_linear_lens_with_exits_and_the_comparison(page, bundled_linear_lens):
    prompt = quote("The Eiffel Tower is in the city of")
    page.goto(f"{page.base_url}/logit_lens?prompt={prompt}&lens=linear&exits=true&stride=2")
    wait_idle(page)
    page.wait_for_selector(f"{PLOT} .heatmaplayer, {PLOT} .hm", timeout=240_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "lens_linear.png"), full_page=True)
    assert any("Linear-shortcut lens" in t for t in titles(page))
    assert page.locator(f"{PLOT} .layer-above path, {PLOT} .shapelayer path").count() > 0  # the exit lines
    page.goto(f"{page.base_url}/logit_lens?prompt={prompt}&lens=linear&panel=compare")
    wait_idle(page)
    page.wait_for_function(f"() => document.querySelectorAll('{PLOT}').length >= 2", timeout=240_000, polling=POLL_MS)
    page.locator(PLOT).nth(1).scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "lens_compare.png"), full_page=True)
    legend = page.eval_on_selector_all(f"{PLOT} .legendtext", "els => els.map(e => e.textContent)")
    assert "logit lens" in legend and "linear shortcut" in legend
    assert page.locator("text=Traceback").count() == 0
