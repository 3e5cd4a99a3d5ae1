"""Start-up times: the command line against a bare ``import torch, transformers``, and the dashboard's cold start.

``python -m bench.start [--runs N] [--cold N] [--no-cli] [--no-cold]`` (also ``python -m bench --start``)

- CLI: ``python -m lens --help``, and a cached command (``logit-lens --prompt … --json``, run once before to
  fill the cache), each in a fresh process, interleaved run by run with ``python -c "import torch,
  transformers"`` (the bare import), so the shared machine's load falls on both alike; medians, ranges and
  the ratio of medians.
- Cold start: launch ``python -m ui.launch`` (``make run``'s server, ``LAYERLENS_WARM=home``, a fresh results
  cache with the converted model linked in) and open the home page at once; the time until its prediction
  chart's bars are drawn, and until the page is idle (its script done: the sampling panel under the chart
  too), with bench/browser.py's helpers. Also the time to the page's first heading (the page draws while
  the model loads).
- Start again: the same server launched a second time on that cache (``make run`` again, a speaker's restart):
  the model loads afresh, and the home page's answers kept by the first start's worker are drawn meanwhile.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PREDICTION = ".js-plotly-plot .barlayer .point"  # the home page's prediction: its bars drawn
PROMPT = "The capital of France is"
BARE = [sys.executable, "-c", "import torch, transformers"]
LENS_ARGS = ["logit-lens", "--prompt", PROMPT, "--json"]
COMMANDS = {
    "help": [sys.executable, "-m", "lens", "--help"],
    "cached logit-lens": [sys.executable, "-m", "lens", *LENS_ARGS],
    # as before lens/recall.py: the model loaded, the result then found in the results cache
    "cached logit-lens, model loaded": [sys.executable, "-c", "import sys, lens.cli as c; "
                                        "c.common._backend = c._load_backend; sys.exit(c.main(%r))" % LENS_ARGS],
}


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed: {r.stderr.strip()[-400:]}")
    return dt


def _summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


def cli(runs: int = 7, say=print) -> dict:
    """Each command against the bare import, interleaved; the ratio of the medians."""
    _timed(COMMANDS["cached logit-lens"])  # fills the results cache (a miss the first time on a fresh cache)
    bare: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for i in range(runs):
        bare.append(_timed(BARE))
        for name, cmd in COMMANDS.items():
            times[name].append(_timed(cmd))
        say(f"  run {i + 1}: bare import {bare[-1]:.2f} s, " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    out = {"runs": runs, "bare_import": _summary(bare)}
    for name, t in times.items():
        out[name] = {**_summary(t), "ratio_to_bare": statistics.median(t) / statistics.median(bare)}
    return out


WORKER = {"worker=1": {"LAYERLENS_WORKER": "1"}}
WORKER_AB = {**WORKER, "worker=0": {"LAYERLENS_WORKER": "0"}}  # the model worker against the server's process
# the bundled model as plain PyTorch modules (lens/model/plain_llama.py) against transformers' model code
PLAIN_AB = {"plain": {"LAYERLENS_WORKER": "1", "LAYERLENS_PLAIN": "1"},
            "transformers": {"LAYERLENS_WORKER": "1", "LAYERLENS_PLAIN": "0"}}


def cold(runs: int = 3, say=print, modes: dict[str, dict] = WORKER) -> dict:
    """Launch → the home page's prediction drawn, the page opened at the launch (as bench/browser.py).
    ``modes``: name → the environment of its servers, taken in turn each run (``WORKER_AB``, ``PLAIN_AB``: two
    ways interleaved)."""
    from bench.browser import _cache_env, _wait_idle

    sys.path.insert(0, str(ROOT / "tests"))
    from browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server
    from playwright.sync_api import sync_playwright

    total = {m: [] for m in modes}
    first_paint = {m: [] for m in modes}
    idle = {m: [] for m in modes}  # the page's script done too (the sampling panel under the chart)
    again = {m: [] for m in modes}  # a second launch on the same cache: launch → prediction drawn
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for _, mode in itertools.product(range(runs), modes):
            with tempfile.TemporaryDirectory(prefix="layerlens-start-") as tmp:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                env = {**_cache_env(Path(tmp)), **modes[mode]}
                with streamlit_server(env=env, timeout=120) as url:
                    page.goto(url + "/?prompt=" + quote(PROMPT))
                    # the page drawn: its title is there (while the model may still load)
                    page.wait_for_selector("h1, h2", timeout=180_000)
                    first_paint[mode].append(time.perf_counter() - t0)
                    page.wait_for_selector(PREDICTION, timeout=180_000)
                    total[mode].append(time.perf_counter() - t0)
                    _wait_idle(page)
                    idle[mode].append(time.perf_counter() - t0)
                    say(f"  cold start ({mode}): page drawn {first_paint[mode][-1]:.2f} s, "
                        f"prediction drawn {total[mode][-1]:.2f} s, page idle {idle[mode][-1]:.2f} s; load {load()}")
                page.close()
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                with streamlit_server(env=env, timeout=120) as url:
                    page.goto(url + "/?prompt=" + quote(PROMPT))
                    page.wait_for_selector(PREDICTION, timeout=180_000)
                    again[mode].append(time.perf_counter() - t0)
                    say(f"  started again ({mode}): prediction drawn {again[mode][-1]:.2f} s")
                    _wait_idle(page)
                page.close()
        browser.close()
    return {"runs": runs, **{m: {"page_drawn": _summary(first_paint[m]),
                                              "prediction_drawn": _summary(total[m]),
                                              "page_idle": _summary(idle[m]),
                                              "started_again": _summary(again[m])} for m in modes}}


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])  # 1, 5 and 15 minute load averages
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.start", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="CLI runs (each command and the bare import once per run)")
    ap.add_argument("--cold", type=int, default=3, help="cold starts of the dashboard")
    ap.add_argument("--ab", action="store_true", help="cold starts with the model worker and without it "
                    "(LAYERLENS_WORKER=1 and 0), interleaved")
    ap.add_argument("--plain-ab", action="store_true", help="cold starts with the bundled model as plain PyTorch "
                    "modules and with transformers' model code (LAYERLENS_PLAIN=1 and 0), interleaved")
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--out", type=Path, help="JSON file (default: bench/results/start-latest.json)")
    args = ap.parse_args(argv)
    report: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": load()}
    if not args.no_cli:
        report["cli"] = cli(args.runs)
    if not args.no_cold:
        report["cold_start"] = cold(args.cold, modes=PLAIN_AB if args.plain_ab else WORKER_AB if args.ab else WORKER)
    report["load_after"] = load()
    text = json.dumps(report, indent=1)
    print(text)
    out = args.out or ROOT / "bench" / "results" / "start-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    for name in COMMANDS:
        if "cli" in report:
            c = report["cli"][name]
            print(f"{name}: median {c['median_s']:.2f} s [{c['min_s']:.2f}–{c['max_s']:.2f}], "
                  f"{c['ratio_to_bare']:.2f}× the bare import ({report['cli']['bare_import']['median_s']:.2f} s)")
    for mode, c in report.get("cold_start", {}).items():
        if mode != "runs":
            p, c, i, a = c["page_drawn"], c["prediction_drawn"], c["page_idle"], c["started_again"]
            print(f"cold start ({mode}): page drawn median {p['median_s']:.2f} s [{p['min_s']:.2f}–{p['max_s']:.2f}], "
                  f"prediction median {c['median_s']:.2f} s [{c['min_s']:.2f}–{c['max_s']:.2f}], "
                  f"page idle median {i['median_s']:.2f} s [{i['min_s']:.2f}–{i['max_s']:.2f}]; started again: "
                  f"prediction median {a['median_s']:.2f} s [{a['min_s']:.2f}–{a['max_s']:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
