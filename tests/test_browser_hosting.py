"""A demo server (LAYERLENS_DEMO=1) in a real headless Chromium: links naming a model off the
allowlist are refused in the page, a visitor behind a long computation sees their place in line,
and one who closes the tab while waiting is dropped from the line, the server going on serving."""
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, POLL_MS, streamlit_server

PLOT = ".js-plotly-plot"
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# About 120 tokens: UMAP over 31 rows × 119 tokens (within the demo's 4,000 points), on a server that
# has not yet compiled UMAP's code: over ten seconds of work for the one slot.
LONG = " ".join(f"item{i}" for i in range(42))


@pytest.fixture(scope="module")
def demo():
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layerlens-demo-") as tmp, sync_playwright() as pw:
        from lens.model.registry import default_cache_root

        (Path(tmp) / "models").symlink_to(default_cache_root().resolve() / "models", target_is_directory=True)
        env = {"LAYERLENS_DEMO": "1", "LAYERLENS_WARM": "home", "LAYERLENS_CACHE": tmp}
        with streamlit_server(env=env) as url:
            log = ARTIFACTS / f"streamlit-{url.rsplit(':', 1)[1]}.log"
            deadline = time.time() + 180
            while "home page computed" not in log.read_text():
                assert time.time() < deadline, "the warm-up did not finish"
                time.sleep(0.2)
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser, url, log
            browser.close()


def tab(browser):
    return browser.new_context(viewport={"width": 1280, "height": 900}).new_page()


def test_a_link_to_a_model_off_the_list_is_refused_in_the_page(demo):
    browser, url, _ = demo
    pg = tab(browser)
    pg.goto(f"{url}/logit_lens?model=%2Fetc&prompt=" + quote("The capital of France is"))
    pg.wait_for_selector(PLOT, timeout=180_000)
    pg.wait_for_function(IDLE, timeout=120_000, polling=POLL_MS)
    alerts = " ".join(pg.locator("[data-testid=stAlert]").all_inner_texts())
    assert "does not offer the model '/etc'" in alerts and "smollm2-135m" in alerts, alerts
    assert "/etc" not in pg.url  # the link now names the model shown
    pg.screenshot(path=str(ARTIFACTS / "demo_refused_model.png"))
    pg.context.close()


def test_a_visitor_who_leaves_the_line_is_dropped_and_the_server_goes_on(demo):
    browser, url, log = demo
    busy = tab(browser)
    busy.goto(f"{url}/projection?method=UMAP&prompt=" + quote(LONG))
    busy.wait_for_selector("text=Projections", timeout=120_000)
    busy.wait_for_timeout(1500)  # its UMAP fit has started
    waiting = tab(browser)
    waiting.goto(f"{url}/logit_lens?prompt=" + quote("A visitor who will not wait for"))
    waiting.wait_for_function("() => document.body.innerText.includes('1st in line')", timeout=60_000, polling=POLL_MS)
    waiting.screenshot(path=str(ARTIFACTS / "demo_in_line.png"))
    waiting.context.close()  # the tab is closed while in line
    deadline = time.time() + 60
    while "a visitor left" not in log.read_text():
        assert time.time() < deadline, "the visitor who left was not dropped from the line"
        time.sleep(0.2)
    busy.wait_for_selector(PLOT, timeout=180_000)  # the long job finishes
    busy.context.close()
    after = tab(browser)
    after.goto(f"{url}/logit_lens?prompt=" + quote("The capital of Italy is"))
    after.wait_for_selector(PLOT, timeout=120_000)
    after.wait_for_function(IDLE, timeout=120_000, polling=POLL_MS)
    assert after.locator("text=Traceback").count() == 0
    after.context.close()
