"""The dashboard end to end in headless Chromium (Playwright + Debian's /usr/bin/chromium).

- cold start: from launching ``python -m ui.launch`` (what ``make run`` runs; model already
  converted) to the home page drawn and idle (prediction chart shown), the page opened at once;
- warm start: the same, the page opened once the launch warm-up has loaded the model (the
  speaker who starts the server, then switches to the browser); also the warm-up's own time;
- submit: on the logit-lens page, from pressing Ctrl+Enter on a new ~20-token prompt to its
  heatmap drawn (its x axis shows the new prompt's tokens), after a warm-up prompt;
- cached: the same for a prompt computed before (the result comes from the disk cache);
- switch: on the same page, from picking another "Colour by" metric to the heatmap recoloured
  (its colour bar names the new metric): a view option that needs no new computation;
- the projection and attention pages: submit → chart for a new prompt (the projection names the
  new word at its last point; the route graph shows it on its x axis), after a warm-up prompt.

Results go to a fresh temporary cache folder (the converted model is linked in), so every
"new" prompt really is computed.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from lens.views import view_named

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["apple", "river", "garden", "window", "silver", "orange", "forest", "castle", "doctor", "pencil",
         "bottle", "camera"]
OTHER_WORDS = ["lemon", "rabbit", "mirror", "jacket", "candle", "ticket"]  # new to the server's cache


def prompt_for(word: str) -> str:
    return f"The opposite of hot is cold. The {word} in the old story was small, and the opposite of up is"


PLOT = ".js-plotly-plot"
SHOWS_WORD = """([word, prev]) => {
  const ticks = [...document.querySelectorAll('.js-plotly-plot .xtick text')].map(e => e.textContent);
  return ticks.some(t => t.includes(word)) && (prev === '' || !ticks.some(t => t.includes(prev)));
}"""
LABELS_WORD = """([word, prev]) => {
  const labels = [...document.querySelectorAll('.js-plotly-plot .textpoint')].map(e => e.textContent);
  return labels.some(t => t.includes(word)) && (prev === '' || !labels.some(t => t.includes(prev)));
}"""
# page -> how its chart shows the word (the pages of these views, lens.views)
OTHER_PAGES = {view_named("projection").path: LABELS_WORD, view_named("routes").path: SHOWS_WORD}
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
SHOWS_COLOURBAR = """(title) => [...document.querySelectorAll('.js-plotly-plot .cbtitle text')]
  .some(e => e.textContent.startsWith(title))"""
SWITCHES = ["entropy", "KL to final", "top-1 probability"]  # "Colour by" labels, in turn


def _wait_idle(page, timeout=180_000):
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE, timeout=timeout)


def _submit(page, text: str, word: str, prev: str, shows: str = SHOWS_WORD) -> float:
    box = page.get_by_role("textbox", name="Prompt", exact=True)
    box.fill(text)
    t0 = time.perf_counter()
    box.press("Control+Enter")
    page.wait_for_function(shows, arg=[word, prev], polling="raf", timeout=180_000)
    dt = time.perf_counter() - t0
    _wait_idle(page)
    return dt


def _switch(page, label: str) -> float:
    page.get_by_role("combobox", name="Colour by").click()
    option = page.get_by_role("option", name=label, exact=True)
    t0 = time.perf_counter()
    option.click()
    page.wait_for_function(SHOWS_COLOURBAR, arg=label, polling="raf", timeout=60_000)
    dt = time.perf_counter() - t0
    _wait_idle(page)
    return dt


def _cache_env(tmp: Path) -> dict:
    from lens.model.registry import default_cache_root

    (tmp / "models").symlink_to(default_cache_root().resolve() / "models", target_is_directory=True)
    return {"LAYERLENS_CACHE": str(tmp), "LAYERLENS_WARM": "home"}  # no tour warm-up during the timings


def run(runs: int = 5, cold_runs: int = 2, say=print) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, streamlit_server
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    out: dict = {"runs": runs, "prompt": prompt_for(WORDS[0])}
    cold: list[float] = []
    fresh: list[float] = []
    cached: list[float] = []
    switched: list[float] = []
    pages: dict[str, list[float]] = {name: [] for name in OTHER_PAGES}
    warm, warmed = [], []
    n_servers = max(1, cold_runs)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for _ in range(n_servers):
            with tempfile.TemporaryDirectory(prefix="layerlens-bench-") as tmp:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                with streamlit_server(env=_cache_env(Path(tmp)), timeout=120) as url:
                    log = ARTIFACTS / f"streamlit-{url.rsplit(':', 1)[1]}.log"
                    while "home page computed" not in log.read_text() and time.perf_counter() - t0 < 120:
                        time.sleep(0.1)
                    warmed.append(time.perf_counter() - t0)
                    t1 = time.perf_counter()
                    page.goto(url + "/?prompt=" + quote("The capital of France is"))
                    page.wait_for_selector(PLOT, timeout=180_000)
                    _wait_idle(page)
                    warm.append(time.perf_counter() - t1)
                    say(f"  browser warm start: warm-up {warmed[-1]:.2f} s, then the page {warm[-1]:.2f} s")
                    page.close()
        for i in range(n_servers):
            with tempfile.TemporaryDirectory(prefix="layerlens-bench-") as tmp:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                with streamlit_server(env=_cache_env(Path(tmp)), timeout=120) as url:
                    page.goto(url + "/?prompt=" + quote("The capital of France is"))
                    page.wait_for_selector(PLOT, timeout=180_000)
                    _wait_idle(page)
                    cold.append(time.perf_counter() - t0)
                    say(f"  browser cold start {cold[-1]:.2f} s")
                    if i < n_servers - 1:  # the last server stays up for the submit timings
                        page.close()
                        continue
                    page.goto(f"{url}/{view_named('logit-lens').path}")
                    _wait_idle(page)
                    _submit(page, prompt_for("teacher"), "teacher", "")  # warm-up
                    prev = "teacher"
                    words = WORDS[:runs]
                    for w in words:
                        fresh.append(_submit(page, prompt_for(w), w, prev))
                        say(f"  browser submit (new prompt) {fresh[-1]:.2f} s")
                        prev = w
                    for w in words[:-1][::-1] + ["teacher"]:
                        cached.append(_submit(page, prompt_for(w), w, prev))
                        say(f"  browser submit (cached prompt) {cached[-1]:.2f} s")
                        prev = w
                    for label in (SWITCHES * runs)[:max(3, runs)]:
                        switched.append(_switch(page, label))
                        say(f"  browser switch colour to {label!r} {switched[-1]:.2f} s")
                    page.screenshot(path=str(ARTIFACTS / "bench-logit-lens.png"), full_page=True)
                    for name, shows in OTHER_PAGES.items():
                        page.goto(f"{url}/{name}?prompt=" + quote(prompt_for("teacher")))  # warm-up
                        page.wait_for_selector(PLOT, timeout=180_000)
                        _wait_idle(page)
                        prev = "teacher"
                        for w in OTHER_WORDS[:max(2, runs // 2)]:
                            pages[name].append(_submit(page, prompt_for(w), w, prev, shows))
                            say(f"  browser {name} page submit (new prompt) {pages[name][-1]:.2f} s")
                            prev = w
                    page.close()
        browser.close()
    out.update(cold_start_s=cold, warm_up_s=warmed, warm_start_s=warm, submit_s=fresh, cached_s=cached, switch_s=switched,
               **{f"{name}_submit_s": v for name, v in pages.items()})
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(runs=int(os.environ.get("RUNS", "3")), cold_runs=1), indent=1))
