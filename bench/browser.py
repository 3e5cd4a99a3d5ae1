"""The dashboard end to end in headless Chromium (Playwright + Debian's /usr/bin/chromium).

- cold start: from launching ``python -m ui.launch`` (what ``make run`` runs; model already
  converted) to the home page drawn and idle (prediction chart shown), the page opened at once;
- warm start: the same, the page opened once the launch warm-up has loaded the model (the
  speaker who starts the server, then switches to the browser); also the warm-up's own time;
- submit: on the logit-lens page, from pressing Ctrl+Enter on a new ~20-token prompt to its
  heatmap drawn (its x axis shows the new prompt's tokens), after a warm-up prompt;
- typed: a new prompt's last words typed key by key, a 0.6 s pause, then Ctrl+Enter → its heatmap drawn (the pause
  lets the page compute it ahead: ui/lookahead.py);
- pasted: a new prompt pasted with Ctrl+V, a 0.3 s pause, then Ctrl+Enter → its heatmap drawn (a paste is computed
  ahead at once);
- cached: the same for a prompt computed before (the result comes from the disk cache);
- switch: on the same page, from picking another "Colour by" metric to the heatmap recoloured
  (its colour bar names the new metric): a view option that needs no new computation;
- the projection and attention pages: submit → chart for a new prompt (the projection names the
  new word at its last point; the route graph shows it on its x axis), after a warm-up prompt.

``python -m bench.browser --views`` (``views()``) times only view switches, on one server and one prompt: on the
lens page, "Colour by" → recoloured (as above), "Layer stride" → the heatmap has the new number of rows, a new
"Target token" the box offers (the final top tokens) → the heatmap shows it, one it does not offer → the live
heatmap holds the new figures (computed by the server), and a cell click → "Show the work" drawn for that
cell (where the page has no cell clicks: "More → Show the work" → drawn); on the attention page, the head
"Score" → the scores chart's title names it. It also counts the script runs each switch caused (from the app's
websocket: ``count_runs``).

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
# Idle: no script running, and no live heatmap still drawing its other metrics ahead (ui/live).
IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')
  && !document.querySelector('.ll-live-plot[data-ahead="drawing"]')"""
SHOWS_COLOURBAR = """(title) => [...document.querySelectorAll('.js-plotly-plot .cbtitle text')]
  .some(e => e.textContent.startsWith(title))"""
SWITCHES = ["entropy", "KL to final", "top-1 probability"]  # "Colour by" labels, in turn


def _wait_idle(page, timeout=180_000):
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE, timeout=timeout)


def _submit(page, text: str, word: str, prev: str, shows: str = SHOWS_WORD, typed_pause_s: float | None = None,
            pasted_pause_s: float | None = None) -> float:
    """``text`` put in the prompt box and run with Ctrl+Enter → its chart drawn (``shows`` the new ``word``, not
    ``prev``). With ``typed_pause_s``: its last 12 characters typed key by key as a person types (50 ms apart),
    then that pause before Ctrl+Enter (which lets the page compute it ahead: ui/lookahead.py); with
    ``pasted_pause_s``: pasted over the box's text with Ctrl+V (the page needs the clipboard's permissions), then
    that pause; else filled in at once and run."""
    box = page.get_by_role("textbox", name="Prompt", exact=True)
    if typed_pause_s is not None:
        box.fill(text[:-12])
        box.press_sequentially(text[-12:], delay=50)
        page.wait_for_timeout(typed_pause_s * 1000)
    elif pasted_pause_s is not None:
        page.evaluate("t => navigator.clipboard.writeText(t)", text)
        box.click()
        box.press("Control+A")
        box.press("Control+V")
        page.wait_for_timeout(pasted_pause_s * 1000)
    else:
        box.fill(text)
    t0 = time.perf_counter()
    box.press("Control+Enter")
    page.wait_for_function(shows, arg=[word, prev], polling="raf", timeout=180_000)
    dt = time.perf_counter() - t0
    _wait_idle(page)
    return dt


TYPED_WORDS = ["violin", "saddle", "kettle", "meadow", "harbor", "pepper"]  # new to the server's cache
TYPED_PAUSE_S = 0.6  # from the last key to Ctrl+Enter, as a person looks over what they typed
PASTED_WORDS = ["lemon", "tunnel", "copper", "ribbon", "walnut", "feather"]  # new to the server's cache
PASTED_PAUSE_S = 0.3  # from Ctrl+V to Ctrl+Enter: a quick hand
CLIPBOARD = ["clipboard-read", "clipboard-write"]  # a page's permissions for a paste with Ctrl+V


def _switch(page, label: str) -> float:
    box = page.get_by_role("combobox", name="Colour by")
    if box.evaluate("e => e.tagName") == "SELECT":  # the live heatmap's own box (ui/live)
        value = box.evaluate("(e, l) => [...e.options].find(o => o.textContent === l).value", label)
        t0 = time.perf_counter()
        box.select_option(value)
    else:  # Streamlit's box
        box.click()
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
    typed: list[float] = []
    pasted: list[float] = []
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
                page = browser.new_page(viewport={"width": 1400, "height": 1000}, permissions=CLIPBOARD)
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
                    for w in TYPED_WORDS[:max(3, runs)]:
                        typed.append(_submit(page, prompt_for(w), w, prev, typed_pause_s=TYPED_PAUSE_S))
                        say(f"  browser typed, {TYPED_PAUSE_S:g} s pause, Ctrl+Enter (new prompt) {typed[-1]:.2f} s")
                        prev = w
                    for w in PASTED_WORDS[:max(3, runs)]:
                        pasted.append(_submit(page, prompt_for(w), w, prev, pasted_pause_s=PASTED_PAUSE_S))
                        say(f"  browser pasted, {PASTED_PAUSE_S:g} s pause, Ctrl+Enter (new prompt) {pasted[-1]:.2f} s")
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
    out.update(cold_start_s=cold, warm_up_s=warmed, warm_start_s=warm, submit_s=fresh, typed_s=typed,
               pasted_s=pasted, cached_s=cached, switch_s=switched,
               **{f"{name}_submit_s": v for name, v in pages.items()})
    return out


# The app's script runs, counted in the page as they begin: Streamlit's "new session" message (field 4 of its
# ForwardMsg) read off the websocket as it arrives, before the app handles it. The running-state attribute the
# page shows is no witness: a short run under load can start and end within one render, and it never changes.
# Given to a page before it loads (``count_runs``); ``window.__wsRuns`` then counts.
RUNS_INIT = """(() => {
  if (window.__wsRuns !== undefined) return;
  window.__wsRuns = 0;
  const varint = (b, i) => { let v = 0, m = 1; for (;;) { const x = b[i++]; v += (x & 127) * m; m *= 128;
                                                          if (x < 128) return [v, i]; } };
  const newSession = (b) => {  // the top-level fields of one ForwardMsg, until field 4
    for (let i = 0; i < b.length;) {
      let tag; [tag, i] = varint(b, i);
      const field = Math.floor(tag / 8), kind = tag & 7;
      if (field === 4) return true;
      if (kind === 0) [, i] = varint(b, i);
      else if (kind === 1) i += 8;
      else if (kind === 5) i += 4;
      else if (kind === 2) { let n; [n, i] = varint(b, i); i += n; }
      else return false;
    }
    return false;
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        if (e.data instanceof ArrayBuffer && newSession(new Uint8Array(e.data))) window.__wsRuns += 1;
      });
    }
  };
})()"""


def count_runs(page) -> None:
    """Count ``page``'s script runs from its next load on (``RUNS_INIT``; ``COUNT_RUNS`` then starts a count)."""
    page.add_init_script(RUNS_INIT)


# From now on, ``window.__runs``: the script runs begun in the page (from its websocket where ``count_runs`` was
# given it; else, less surely, from the app's running state, watched from before a switch to after it).
COUNT_RUNS = """() => {
  if (window.__wsRuns !== undefined) {
    const base = window.__wsRuns;
    Object.defineProperty(window, '__runs', {configurable: true, get: () => window.__wsRuns - base});
    return;
  }
  const app = document.querySelector('[data-testid=stApp]');
  Object.defineProperty(window, '__runs', {configurable: true, writable: true, value: 0});
  if (window.__runsObserver) window.__runsObserver.disconnect();
  window.__runsObserver = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') window.__runs += 1;
  });
  window.__runsObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
ROWS = "(n) => document.querySelectorAll('.js-plotly-plot .yaxislayer-above .ytick text').length === n"
WORK_SHOWN = """(cell) => [...document.querySelectorAll('[data-testid=stMarkdownContainer] strong')]
  .some(e => cell ? e.textContent === cell : /^Layer \\d+, position \\d+$/.test(e.textContent))"""


def _settled_runs(page) -> int:
    page.wait_for_timeout(1500)  # a live chart reports its metric to the server after a pause: count that too
    _wait_idle(page)
    return page.evaluate("() => window.__runs")


def _stride(page, stride: int, rows: int) -> float:
    """Type a layer stride: the live chart's box draws it as it is typed, Streamlit's on Enter (a rerun)."""
    box = page.get_by_role("spinbutton", name="Layer stride")  # the visible one: the live box where there is one
    if box.evaluate("e => !!e.closest('.ll-live-control')") and stride < 10:
        box.select_text()
        t0 = time.perf_counter()
        box.press(str(stride))  # one key, as a person types it: the chart redraws on it
    else:
        t0 = time.perf_counter()
        box.fill(str(stride))
        box.press("Enter")
    page.wait_for_function(ROWS, arg=rows, polling="raf", timeout=60_000)
    return time.perf_counter() - t0


def _cell(page, row: int, col: int, label: str) -> float:
    """Click the heatmap's cell (row, col) (0, 0: bottom left) or, without cell clicks, More → Show the work;
    until the panel names ``label`` ("Layer 3, position 5")."""
    plot = page.locator(PLOT).first
    plot.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(300)
    box = plot.locator(".nsewdrag").first.bounding_box()
    n_rows = page.locator(f"{PLOT} .yaxislayer-above .ytick text").count()
    n_cols = page.locator(f"{PLOT} .xaxislayer-above .xtick text").count()
    x = box["x"] + (col + 0.5) * box["width"] / n_cols
    y = box["y"] + box["height"] - (row + 0.5) * box["height"] / n_rows
    live = page.locator(".ll-live-plot").count() > 0
    t0 = time.perf_counter()
    if live:
        page.mouse.click(x, y)
    else:
        page.get_by_text("Show the work", exact=True).click()
    page.wait_for_function(WORK_SHOWN, arg=label if live else "", polling="raf", timeout=60_000)
    return time.perf_counter() - t0


GTITLES = "() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(e => e.textContent)"


SHOWS_TARGET = "(t) => { const h = document.querySelector('.ll-live-plot'); return h && h.dataset.target === t; }"


def _offered(page) -> list[str]:
    """The targets the live heatmap's target box offers (the final top tokens), or [] without the live chart."""
    return page.evaluate("() => [...document.querySelectorAll('.ll-live-control[data-option=target] datalist "
                         "option')].map(o => o.value)")


def _target(page, token: str) -> float:
    """Type a target token on the lens page, then from pressing Enter until the live heatmap shows it (one the live
    box offers is drawn by the browser; another once the server has computed it); without the live chart, until
    the script is done."""
    prev = page.evaluate("() => { const h = document.querySelector('.ll-live-plot'); return h ? h.dataset.signature "
                         ": null; }")
    live = page.get_by_role("combobox", name="Target token")
    box = live if prev is not None and live.count() else page.get_by_role("textbox", name="Target token")
    box.fill(token)
    t0 = time.perf_counter()
    box.press("Enter")
    if prev is None:
        page.wait_for_timeout(100)
        page.wait_for_function(IDLE, timeout=60_000)
    else:  # (the chart shows a target it does not offer once the server has sent its figures)
        page.wait_for_function(SHOWS_TARGET, arg=token, polling="raf", timeout=60_000)
    return time.perf_counter() - t0


def _score(page, value: str, title: str) -> float:
    """The attention page's head score: picked in the live box (or Streamlit's), until the chart's title says it."""
    live = page.locator("select.ll-select")
    t0 = time.perf_counter()
    if live.count() and live.first.is_visible():
        live.first.select_option(value)
    else:
        box = page.get_by_role("combobox", name="Score", exact=True).first
        box.click()
        if not page.get_by_role("option").count():
            box.press("ArrowDown")  # a box opens its list on a key
        t0 = time.perf_counter()
        page.get_by_role("option", name=value.replace("prev_token", "previous token"), exact=True).click()
    page.wait_for_function(f"() => ({GTITLES})().includes({title!r})", polling="raf", timeout=60_000)
    return time.perf_counter() - t0


def views(runs: int = 5, say=print) -> dict:
    """The lens page's view switches: metric, stride, cell click → Show the work (see the module's text)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, streamlit_server
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    prompt = prompt_for(WORDS[0])
    out: dict = {"runs": runs, "prompt": prompt, "metric_s": [], "metric_runs": [], "stride_s": [],
                 "stride_runs": [], "target_s": [], "target_runs": [], "offered_target_s": [],
                 "offered_target_runs": [], "cell_s": [], "cell_runs": [],
                 "head_score_s": [], "head_score_runs": []}
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="layerlens-bench-") as tmp:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        count_runs(page)
        with streamlit_server(env=_cache_env(Path(tmp)), timeout=120) as url:
            page.goto(f"{url}/{view_named('logit-lens').path}?prompt={quote(prompt)}")
            page.wait_for_selector(PLOT, timeout=180_000)
            _wait_idle(page)
            page.wait_for_timeout(1500)
            n_rows = page.locator(f"{PLOT} .yaxislayer-above .ytick text").count()
            for label in ("entropy", "top-1 probability"):  # warm-up, back to the first metric
                _switch(page, label)
                _wait_idle(page)
            for label in (SWITCHES * runs)[:max(3, runs)]:
                page.evaluate(COUNT_RUNS)
                out["metric_s"].append(_switch(page, label))
                out["metric_runs"].append(_settled_runs(page))
                say(f"  lens page: colour → {label!r} {out['metric_s'][-1]:.3f} s, "
                    f"{out['metric_runs'][-1]} script run(s)")
            for stride in [2, 1] * ((runs + 1) // 2):  # ends at stride 1, for the cell clicks
                rows = len(range(0, n_rows, stride)) + ((n_rows - 1) % stride != 0)
                page.evaluate(COUNT_RUNS)
                out["stride_s"].append(_stride(page, stride, rows))
                out["stride_runs"].append(_settled_runs(page))
                say(f"  lens page: stride → {stride} {out['stride_s'][-1]:.3f} s, {out['stride_runs'][-1]} run(s)")
            offered = _offered(page)
            if offered:  # coloured by the target's rank, as one who compares targets would look at them
                _switch(page, "target rank")
                _wait_idle(page)
            for i in range(max(1, runs) if offered else 0):  # one the box offers: drawn by the browser
                token = offered[(i + 1) % len(offered)]
                page.evaluate(COUNT_RUNS)
                out["offered_target_s"].append(_target(page, token))
                out["offered_target_runs"].append(_settled_runs(page))
                say(f"  lens page: offered target → {token!r} {out['offered_target_s'][-1]:.3f} s, "
                    f"{out['offered_target_runs'][-1]} run(s)")
            for i in range(max(1, runs)):  # a new target each time (its rows are computed), then back to none
                token = [" down", " high", " low", " left", " right", " cold", " in"][i % 7]
                page.evaluate(COUNT_RUNS)
                out["target_s"].append(_target(page, token))
                out["target_runs"].append(_settled_runs(page))
                say(f"  lens page: target → {token!r} {out['target_s'][-1]:.3f} s, {out['target_runs'][-1]} run(s)")
            _target(page, "")
            _wait_idle(page)
            if offered:
                _switch(page, "top-1 probability")
                _wait_idle(page)
            page.wait_for_timeout(800)
            for i in range(max(1, runs)):
                row, col = 3 + i, 2 + i  # stride 1 here: row r is layer r
                page.evaluate(COUNT_RUNS)
                out["cell_s"].append(_cell(page, row, col, f"Layer {row}, position {col}"))
                out["cell_runs"].append(_settled_runs(page))
                say(f"  lens page: cell ({row}, {col}) → Show the work {out['cell_s'][-1]:.3f} s, "
                    f"{out['cell_runs'][-1]} run(s)")
                if page.locator(".ll-live-plot").count() == 0:
                    break  # More → Show the work: once is the measurement
            page.screenshot(path=str(ARTIFACTS / "bench-lens-views.png"), full_page=True)
            page.goto(f"{url}/{view_named('heads').path}?prompt={quote(prompt)}&view=Heads&head_metric=induction")
            page.wait_for_selector(PLOT, timeout=180_000)
            _wait_idle(page)
            page.wait_for_timeout(1500)
            scores = [("entropy", "Per-head attention entropy (nats)"), ("prev_token", "Per-head previous-token score"),
                      ("induction", "Per-head induction score")]
            for value, title in (scores * runs)[:max(3, runs)]:
                page.evaluate(COUNT_RUNS)
                out["head_score_s"].append(_score(page, value, title))
                out["head_score_runs"].append(_settled_runs(page))
                say(f"  attention page: score → {value!r} {out['head_score_s'][-1]:.3f} s, "
                    f"{out['head_score_runs'][-1]} run(s)")
        browser.close()
    return out


if __name__ == "__main__":
    import json

    if "--views" in sys.argv:
        print(json.dumps(views(runs=int(os.environ.get("RUNS", "3"))), indent=1))
    else:
        print(json.dumps(run(runs=int(os.environ.get("RUNS", "3")), cold_runs=1), indent=1))
