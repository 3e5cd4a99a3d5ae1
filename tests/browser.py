"""Helpers for the real-browser tests: a Streamlit server and headless Debian Chromium."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Every wait_for_function polls on a timer: its default, requestAnimationFrame, can starve in a tab that is not
# in front or under load (four tabs and pytest workers beside it), and the wait then times out on a page that
# had long finished.
POLL_MS = 100
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict | None = None, timeout: float = 90.0):
    port = free_port()
    log = open(ARTIFACTS / f"streamlit-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.launch", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         # Each line with its level: Streamlit's own format has none, and its warnings went unseen.
         "--logger.messageFormat", "%(asctime)s %(levelname)s %(name)s: %(message)s"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log.name}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# Every text of every plotly chart on the page (tick labels, axis and chart titles, legend entries) whose box
# reaches outside its chart's own box: a label the reader sees cut. Returns [(text, how far out in px)].
CLIPPED_LABELS_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const svg = plot.querySelector('.main-svg');
    if (!svg) continue;
    const box = svg.getBoundingClientRect();
    for (const t of plot.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .gtitle, .legendtext')) {
      const r = t.getBoundingClientRect();
      if (!t.textContent.trim() || r.width === 0) continue;
      const far = Math.max(box.left - r.left, r.right - box.right, box.top - r.top, r.bottom - box.bottom);
      if (far > 1) out.push([t.textContent, Math.round(far)]);
    }
  }
  return out;
}"""


def clipped_labels(pg) -> list:
    return pg.evaluate(CLIPPED_LABELS_JS)


# Every visible text on the page (HTML and chart SVG alike) drawn smaller than ``least`` px: [(text, px)].
# Icons drawn from an icon font are not text a reader reads; hidden elements (display: none) have no boxes.
SMALL_TEXT_JS = """(least) => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || el.closest('script, style, noscript, [data-testid=stIconMaterial], .hoverlayer')) continue;
    const style = getComputedStyle(el);
    if (style.fontFamily.includes('Material') || style.visibility === 'hidden' || style.display === 'none') continue;
    const rects = el.getClientRects();  // (a 1 px box clipped to nothing: a skip link for screen readers)
    if (!rects.length || [...rects].every(r => r.width <= 1 || r.height <= 1)) continue;
    if (el.closest('[aria-hidden=true]')) continue;
    let hidden = false;  // an ancestor made transparent (a collapsed menu) hides it too
    for (let a = el; a; a = a.parentElement) if (getComputedStyle(a).opacity === '0') { hidden = true; break; }
    if (hidden) continue;
    // A chart's SVG text may be drawn scaled (plotly shrinks a bar's text to fit the bar): its size on the screen.
    const m = el instanceof SVGGraphicsElement ? el.getScreenCTM() : null;
    const px = parseFloat(style.fontSize) * (m ? Math.sqrt(Math.abs(m.a * m.d - m.b * m.c)) : 1);
    if (px < least - 0.01) out.push([text.slice(0, 60), Math.round(px * 10) / 10]);
  }
  return out;
}"""

# How far the page scrolls, down and sideways, in px (0: all of it is on the screen).
OVERFLOW_JS = """() => {
  const main = document.querySelector('[data-testid=stMain]') || document.scrollingElement;
  const doc = document.scrollingElement;
  const down = Math.max(main.scrollHeight - main.clientHeight, doc.scrollHeight - doc.clientHeight);
  const across = Math.max(main.scrollWidth - main.clientWidth, doc.scrollWidth - doc.clientWidth);
  // Buttons and widgets reaching past the right edge are cut off even where nothing scrolls.
  let cut = 0;
  for (const el of document.querySelectorAll('[data-testid=stMain] button, [data-testid=stMain] label, .js-plotly-plot')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0) cut = Math.max(cut, r.right - window.innerWidth);
  }
  return {down: Math.max(0, down), across: Math.max(0, across, Math.round(cut))};
}"""

# Presenter mode: visible texts of the page that the floating "Leave presenter mode" button covers, or touches
# (within 2 px): [(text, how far into the button in px)].
UNDER_EXIT_JS = """() => {
  const btn = document.querySelector('.st-key-present-off');
  if (!btn) return [];
  const b = btn.getBoundingClientRect();
  if (!b.width) return [];
  const out = [];
  const walker = document.createTreeWalker(document.querySelector('[data-testid=stMain]') || document.body,
                                           NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || btn.contains(el) || el.closest('script, style, .hoverlayer')) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (!r.width || !r.height) continue;
      const x = Math.min(r.right, b.right + 2) - Math.max(r.left, b.left - 2);
      const y = Math.min(r.bottom, b.bottom + 2) - Math.max(r.top, b.top - 2);
      if (x > 0 && y > 0) { out.push([text.slice(0, 60), Math.round(Math.min(x, y))]); break; }
    }
  }
  return out;
}"""


# Pairs of a chart's point labels (scatter text) whose boxes overlap by more than a pixel each way: [(a, b)].
OVERLAPPING_LABELS_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const boxes = [...plot.querySelectorAll('.textpoint text')].filter(t => t.textContent.trim())
      .map(t => [t.textContent, t.getBoundingClientRect()]).filter(([, r]) => r.width > 0);
    for (let i = 0; i < boxes.length; i++)
      for (let j = 0; j < i; j++) {
        const [a, p] = boxes[i], [b, q] = boxes[j];
        if (Math.min(p.right, q.right) - Math.max(p.left, q.left) > 1
            && Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 1) out.push([a, b]);
      }
  }
  return out;
}"""


# Presenter mode: the "Leave presenter mode" button, visible and wholly on the screen (a page that ended its run
# early once left it out: Esc was the only way back).
EXIT_BUTTON_JS = """() => {
  const b = document.querySelector('.st-key-present-off button');
  if (!b) return false;
  const r = b.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;
}"""


def exit_button_shown(pg) -> bool:
    return pg.evaluate(EXIT_BUTTON_JS)


# Neighbouring tick labels of one chart axis that collide or nearly touch (closer than ``gap`` px), rotated or not:
# [(label, label, px apart)]. Two labels run together when the lines they sit on are closer than a line's height
# and, along those lines, their ends are closer than ``gap``.
CROWDED_TICKS_JS = """(gap) => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const axes = new Map();  // one axis's tick texts share a parent group
    for (const t of plot.querySelectorAll('.xtick > text, .ytick > text, [class*="tick"] > text')) {
      if (!t.textContent.trim() || !t.getBBox || t.getBoundingClientRect().width === 0) continue;
      const key = t.parentNode.parentNode;
      if (!axes.has(key)) axes.set(key, []);
      axes.get(key).push(t);
    }
    for (const texts of axes.values()) {
      const items = texts.map(t => {
        const m = t.getScreenCTM(), r = t.getBoundingClientRect();
        const scale = Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
        const ux = m.a / scale, uy = m.b / scale;  // the text's direction on the screen
        return {text: t.textContent, cx: r.left + r.width / 2, cy: r.top + r.height / 2, ux, uy,
                len: t.getComputedTextLength() * scale, h: parseFloat(getComputedStyle(t).fontSize) * scale};
      });
      for (let i = 0; i < items.length; i++)
        for (let j = 0; j < i; j++) {
          const a = items[i], b = items[j];
          const dx = b.cx - a.cx, dy = b.cy - a.cy;
          const along = Math.abs(dx * a.ux + dy * a.uy), across = Math.abs(-dx * a.uy + dy * a.ux);
          const apart = along - (a.len + b.len) / 2;
          if (across < 0.9 * Math.max(a.h, b.h) && apart < gap) out.push([a.text, b.text, Math.round(apart * 10) / 10]);
        }
    }
  }
  return out;
}"""


def crowded_ticks(pg, gap: float = 3) -> list:
    return pg.evaluate(CROWDED_TICKS_JS, gap)


# Choice boxes whose shown choice (or placeholder) is cut: [(text, px hidden)]. ("contrast" once showed as "contr"
# in a box too narrow for it.) A text box may scroll a long text the person typed; a choice is read, not typed.
CUT_CHOICES_JS = """() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stSelectbox] input')]
  .filter(i => i.getClientRects().length && i.scrollWidth > i.clientWidth + 1)
  .map(i => [i.value || i.placeholder, i.scrollWidth - i.clientWidth])"""


def cut_choices(pg) -> list:
    return pg.evaluate(CUT_CHOICES_JS)


def overlapping_labels(pg) -> list:
    return pg.evaluate(OVERLAPPING_LABELS_JS)


def under_exit_button(pg) -> list:
    return pg.evaluate(UNDER_EXIT_JS)


# What each chart on the page draws: its traces' kinds and values and its titles (for "the same chart").
CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => {
  const keep = v => (v && v.bdata !== undefined) ? v : (ArrayBuffer.isView(v) ? Array.from(v) : v);
  return {
    data: (el.data || []).map(t => ({type: t.type, x: keep(t.x), y: keep(t.y), z: keep(t.z), text: keep(t.text),
                                     customdata: keep(t.customdata)})),
    title: el.layout && el.layout.title ? (el.layout.title.text || '') : '',
    axes: Object.keys(el.layout || {}).filter(k => /^[xy]axis/.test(k)).sort()
      .map(k => (el.layout[k].title && el.layout[k].title.text) || ''),
  };
})"""


def small_text(pg, least: float = 18) -> list:
    return pg.evaluate(SMALL_TEXT_JS, least)


def overflow(pg) -> dict:
    return pg.evaluate(OVERFLOW_JS)


def charts(pg) -> list:
    return pg.evaluate(CHARTS_JS)


def server_warnings(log_text: str) -> list[str]:
    """Python tracebacks and Streamlit warnings in a server log (each as its first line and the last line)."""
    lines = log_text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback") or " WARNING " in line or "Warning:" in line:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith((" ", "\t"))),
                       len(lines) - 1)
            out.append(f"{line} … {lines[end]}" if end > i else line)
    return out


# The places of the live heatmaps the script sent (ui/live: their keys end in "-live"). Each holds its chart only
# once the component's code has loaded and run, which can be after the script has ended: a page read in between
# lacked a chart it was about to draw.
LIVE_SLOTS_JS = """  const LIVE_SLOTS = () => [...document.querySelectorAll('[data-testid=stElementContainer]')]
    .filter(c => [...c.classList].some(k => k.startsWith('st-key-') && k.endsWith('-live')));
"""

# The script has run to its end (not only "no status widget yet": that holds before the first run starts too),
# nothing spins, and every chart has drawn: Streamlit's, and the live heatmaps (ui/live), which draw once their own
# plotly.js has loaded, after the script is done (a page read before then lacked them).
SETTLED_JS = """() => {
""" + LIVE_SLOTS_JS + """  const app = document.querySelector('[data-testid=stApp]');
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid=stSpinner], [data-testid=stSkeleton]')
    && [...document.querySelectorAll('.ll-live-plot')].every(h => h.dataset.drawn !== 'no')
    && LIVE_SLOTS().every(c => c.querySelector('.ll-live-plot'))
    && [...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'));
}"""


UNSETTLED_JS = """() => {
""" + LIVE_SLOTS_JS + """  const app = document.querySelector('[data-testid=stApp]');
  const out = [];
  if (!app) out.push('no app');
  else if (app.getAttribute('data-test-script-state') !== 'notRunning')
    out.push('script ' + app.getAttribute('data-test-script-state'));
  const busy = document.querySelectorAll('[data-testid=stSpinner], [data-testid=stSkeleton]');
  if (busy.length) out.push(busy.length + ' spinner(s): ' + [...busy].map(b => b.innerText.trim()).join('; '));
  const bare = [...document.querySelectorAll('.js-plotly-plot')].filter(p => !p.querySelector('.main-svg'));
  if (bare.length) out.push(bare.length + ' chart(s) without a drawing: ' + bare.map(p => p.className).join('; '));
  const unmounted = LIVE_SLOTS().filter(c => !c.querySelector('.ll-live-plot'));
  if (unmounted.length) out.push(unmounted.length + ' live chart(s) not mounted yet (the component code loading)');
  const live = [...document.querySelectorAll('.ll-live-plot')].filter(h => h.dataset.drawn === 'no');
  if (live.length) out.push(live.length + ' live chart(s) not drawn yet (their plotly.js loading)');
  return out.join(' | ') || 'nothing (it settled late)';
}"""


def unsettled(pg) -> str:
    """What keeps ``settle`` waiting: the script still running, a spinner, a chart not drawn."""
    try:
        return pg.evaluate(UNSETTLED_JS)
    except Exception as e:  # noqa: BLE001 - a page that cannot even answer says so
        return f"the page does not answer ({e})"


STILL_S = 0.5  # how long a drawn page must stay drawn to count as settled


def settle(pg, timeout: float = 240_000) -> None:
    """Until the page has finished drawing and stays so for a moment (plotly's automargin redraws once)."""
    for _ in range(3):
        pg.wait_for_function(SETTLED_JS, timeout=timeout, polling=POLL_MS)
        pg.wait_for_timeout(STILL_S * 1000)
        if pg.evaluate(SETTLED_JS):
            return


def _decoded(v):
    """A plotly array as numbers: plotly.py sends numpy arrays as {"dtype", "bdata"[, "shape"]}."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(n) for n in str(v["shape"]).split(",")]) if v.get("shape") else a
    return v


def same_charts(a, b, rtol: float = 1e-5) -> bool:
    """Whether two ``charts()`` readings draw the same: equal structure and text, numbers equal to ``rtol``
    (a result read back from the cache may differ from a fresh one in its last bits)."""
    import numpy as np

    a, b = _decoded(a), _decoded(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        except (TypeError, ValueError):
            return False
        return x.shape == y.shape and bool(np.allclose(x, y, rtol=rtol, atol=1e-9, equal_nan=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_charts(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_charts(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=rtol, atol=1e-9, equal_nan=True))
    return a == b
