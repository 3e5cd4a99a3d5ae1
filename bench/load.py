"""``python -m bench --load N``: N browser sessions at once against one real server.

A server is started as a host would (``python -m ui.launch`` on 127.0.0.1, demo mode unless
``--load-open``, a fresh results cache), and once its launch warm-up is done N headless
Chromium sessions open their links at the same moment, each with its own prompt, on a mix of
views (home, logit lens, attention routes, projection). For each session: the time from opening
the link to its chart drawn and the page idle, the errors shown, whether it had to wait in line,
and whether what it shows equals what the CLI (``python -m lens …``, run afterwards in separate
processes) computes for that prompt: a session showing another's numbers would fail this. The
server's peak memory (RSS of its process tree) is sampled throughout.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

from lens.views import view_named

ROOT = Path(__file__).resolve().parent.parent
NOUNS = ["apple", "river", "garden", "window", "silver", "orange", "forest", "castle", "doctor", "pencil",
         "bottle", "camera", "lemon", "rabbit", "mirror", "jacket", "candle", "ticket", "violin", "tunnel"]

# The pages of these views (lens.views), and the home page: session i opens PAGES[i % 4].
LENS, ROUTES, PROJECTION = (view_named(v).path for v in ("logit-lens", "routes", "projection"))
PAGES = [LENS, ROUTES, PROJECTION, "home"]
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# What a session reads back from its page once drawn.
READ = """() => {
  const plain = v => ArrayBuffer.isView(v) ? Array.from(v) : Array.isArray(v) ? v.map(plain) : v;
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const alerts = [...document.querySelectorAll('[data-testid="stAlert"], [data-testid="stException"]')]
    .map(e => e.innerText);
  const captions = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')].map(e => e.innerText);
  return {alerts, captions, data: plots.length ? plots[0]._fullData.map(t => ({type: t.type, x: plain(t.x), y: plain(t.y), z: plain(t.z)}))
          : null};
}"""
WAITED = "() => document.body.innerText.includes('in line')"


def prompt_for(i: int) -> str:
    noun = NOUNS[i % len(NOUNS)]
    return f"Session {i}: the {noun} on the table was old, and the opposite of old is"


def _url(base: str, view: str, prompt: str) -> str:
    path = "" if view == "home" else f"/{view}"
    return f"{base}{path}?prompt={quote(prompt)}"


def waiting(got: dict) -> bool:
    return any("in line" in a for a in got["alerts"])


def _shown(data) -> bool:
    return bool(data) and any(t.get("x") is not None or t.get("z") is not None for t in data)


async def _session(browser, base: str, i: int, start: asyncio.Event, say) -> dict:
    view, prompt = PAGES[i % len(PAGES)], prompt_for(i)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    out = {"session": i, "view": view, "prompt": prompt}
    waited = False
    await start.wait()
    t0 = time.perf_counter()
    try:
        await page.goto(_url(base, view, prompt), timeout=300_000)
        while True:  # the chart drawn and the page idle; note any "in line" message meanwhile
            waited = waited or await page.evaluate(WAITED)
            got = await page.evaluate(READ)
            final = [a for a in got["alerts"] if "in line" not in a]  # an error or a note, not the queue's
            if not waiting(got) and (_shown(got["data"]) or final) and await page.evaluate(IDLE):
                await page.wait_for_timeout(300)
                if await page.evaluate(IDLE) and not waiting(await page.evaluate(READ)):
                    break
            if time.perf_counter() - t0 > 300:
                raise TimeoutError("no chart after 300 s")
            await page.wait_for_timeout(100)
        out["seconds"] = time.perf_counter() - t0
        out.update(await page.evaluate(READ))
    except Exception as exc:  # noqa: BLE001 (counted as an error of this session)
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["waited_in_line"] = waited
    await context.close()
    say(f"  session {i:>2} ({view}): " + (f"{out['seconds']:.2f} s" if "seconds" in out else out.get("error", "")))
    return out


async def _sessions(base: str, n: int, say, before_close=lambda: None) -> list[dict]:
    from playwright.async_api import async_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from browser import CHROMIUM, CHROMIUM_ARGS

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        start = asyncio.Event()
        tasks = [asyncio.create_task(_session(browser, base, i, start, say)) for i in range(n)]
        await asyncio.sleep(2)  # every context made; then all open their links at once
        start.set()
        results = await asyncio.gather(*tasks)
        before_close()
        await browser.close()
    return list(results)


class PeakRSS:
    """The largest RSS of a process and its children, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.2):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(pid), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)


def _cli(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "lens", *args, "--json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    if p.returncode:
        raise RuntimeError(f"python -m lens {' '.join(args)}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def check(session: dict) -> list[str]:
    """What the session's page shows that differs from the CLI's numbers for its prompt."""
    import numpy as np

    view, prompt, data = session["view"], session["prompt"], session.get("data") or []
    problems = [f"alert: {a.splitlines()[0][:120]}" for a in session.get("alerts", []) if "in line" not in a]
    if not data:
        return problems + ["no chart"]
    if view == LENS:
        ref = _cli("logit-lens", "--prompt", prompt, "--no-cache")
        z = np.array([[np.nan if v is None else v for v in row] for row in data[0]["z"]], float)
        want = np.array(ref["top_probs"], float)[:, :, 0]
        if z.shape != want.shape or not np.allclose(z, want, atol=2e-4):
            problems.append(f"heatmap differs from the CLI's lens (shape {z.shape} vs {want.shape})")
    elif view == "home":
        ref = _cli("logit-lens", "--prompt", prompt, "--top-k", "10", "--no-cache")
        bars = np.array(data[0]["x"], float)[::-1]  # drawn largest on top
        if not np.allclose(bars, np.array(ref["top_probs"], float)[-1, -1], atol=2e-4):
            problems.append("next-token bars differ from the CLI's")
    elif view == ROUTES:
        ref = _cli("routes", "--prompt", prompt, "--no-cache")
        want = f"{len(ref['edge_layer'])} edges; {ref['targets_computed']} attention-block nodes evaluated"
        if not any(want in c for c in session.get("captions", [])):
            problems.append(f"route graph caption lacks {want!r}")
    elif view == PROJECTION:
        ref = _cli("project", "--prompt", prompt, "--no-cache")
        want = {(round(x, 3), round(y, 3)) for layer in ref["coords"] for x, y in layer}
        got = {(round(x, 3), round(y, 3)) for t in data if t.get("x") and t.get("y") and t["type"] == "scatter"
               for x, y in zip(t["x"], t["y"]) if x is not None and y is not None}
        missing = len(want - got)
        if missing > len(want) * 0.01:  # rounding at the 3rd decimal may split a few
            problems.append(f"{missing} of {len(want)} projected points differ from the CLI's")
    return problems


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their children (those still running)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def chromium_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("chrom")]


def run(n: int = 10, demo: bool = True, say=print) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import ARTIFACTS, streamlit_server

    from lens.model.registry import default_cache_root

    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layerlens-load-") as tmp:
        (Path(tmp) / "models").symlink_to(default_cache_root().resolve() / "models", target_is_directory=True)
        env = {"LAYERLENS_CACHE": tmp, "LAYERLENS_WARM": "home", "LAYERLENS_DEMO": "1" if demo else "0"}
        t0 = time.perf_counter()
        with streamlit_server(env=env, timeout=120) as base:
            log = ARTIFACTS / f"streamlit-{base.rsplit(':', 1)[1]}.log"
            while "home page computed" not in log.read_text() and time.perf_counter() - t0 < 180:
                time.sleep(0.2)
            say(f"load: server warm after {time.perf_counter() - t0:.1f} s; {n} sessions open their links at once")
            import psutil

            server = next(p for p in psutil.process_iter(["cmdline"])
                          if "ui.launch" in " ".join(p.info["cmdline"] or []) and base.rsplit(":", 1)[1]
                          in " ".join(p.info["cmdline"] or []))
            browser_cpu: dict = {}
            server_cpu0, browser_cpu0 = cpu_seconds([server.pid]), cpu_seconds(chromium_pids())
            with PeakRSS(server.pid) as rss:
                t1 = time.perf_counter()
                sessions = asyncio.run(_sessions(base, n, say, lambda: browser_cpu.update(
                    s=cpu_seconds(chromium_pids()) - browser_cpu0)))
                wall = time.perf_counter() - t1
            server_cpu = cpu_seconds([server.pid]) - server_cpu0
    (ARTIFACTS / "load-sessions.json").write_text(json.dumps(sessions, ensure_ascii=False))
    say("load: checking every session against the CLI…")
    # (browser_cpu is filled just before the browser closes)
    for s in sessions:
        s["problems"] = [s["error"]] if "error" in s else check(s)
    times = sorted(s["seconds"] for s in sessions if "seconds" in s)

    def pct(q):
        return times[min(len(times) - 1, int(round(q * (len(times) - 1))))] if times else None
    return {
        "sessions": n, "demo": demo, "wall_s": wall, "p50_s": statistics.median(times) if times else None,
        "p95_s": pct(0.95), "max_s": times[-1] if times else None,
        "errors": sum(bool(s["problems"]) for s in sessions), "waited_in_line": sum(s["waited_in_line"] for s in sessions),
        "server_peak_rss_mb": rss.peak / 2**20, "server_cpu_s": server_cpu, "browser_cpu_s": browser_cpu.get("s"),
        "cores": __import__("os").cpu_count(),
        "per_session": [{k: s.get(k) for k in ("session", "view", "seconds", "waited_in_line", "problems")}
                        for s in sessions],
    }


def table(r: dict) -> str:
    lines = [f"Load: {r['sessions']} browser sessions at once ({'demo' if r['demo'] else 'open'} mode, one server, "
             f"distinct prompts, pages {', '.join(PAGES)} in turn)", "",
             "| measure | value |", "| --- | ---: |",
             f"| time to chart, p50 | {r['p50_s']:.2f} s |", f"| time to chart, p95 | {r['p95_s']:.2f} s |",
             f"| slowest session | {r['max_s']:.2f} s |", f"| all sessions done | {r['wall_s']:.2f} s |",
             f"| sessions that waited in line | {r['waited_in_line']} |",
             f"| sessions with errors or numbers unlike the CLI's | {r['errors']} |",
             f"| server peak RSS | {r['server_peak_rss_mb']:.0f} MB |",
             f"| CPU time: server / browsers ({r['cores']} cores shared) | {r['server_cpu_s']:.1f} s / "
             f"{r['browser_cpu_s'] or 0:.1f} s |"]
    for s in r["per_session"]:
        if s["problems"]:
            lines.append(f"- session {s['session']} ({s['view']}): {'; '.join(s['problems'])}")
    return "\n".join(lines)
