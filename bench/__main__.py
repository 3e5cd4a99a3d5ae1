"""``python -m bench`` (``make bench``): time every step on the bundled model, print a table,
write JSON under bench/results/.

Each step runs at each prompt length in a fresh process (its peak memory is its own, model
weights included); times are medians with min/max of several calls after one warm-up call,
except at 2048 tokens where the one (first) call is the measurement. The floor of the logit
lens, the bare unembedding matmul of the same shape, is timed in the lens's process,
interleaved with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SIZES = (32, 128, 512, 2048)
QUICK_SIZES = (128,)
QUICK_SKIP = ("umap", "trace+lens+rollout")  # UMAP compiles numba code on its first call (~15 s)
# Timed calls after the warm-up, by prompt length; 0: the warm-up call is the measurement.
REPEATS = {32: 5, 128: 4, 512: 2, 2048: 0}
TARGETS = {
    "lens_ratio_128": 1.5,  # full-grid lens / floor at ~128 tokens
    "trace_2048_over_512": 5.0,  # a trace needing no attention weights (SDPA) grows about linearly
    "lens_window_2048_s": 3.0,  # the lens page's first view of a 2048-token prompt
    "peak_trace_lens_rollout_2048_mb": 1536,
    "browser_submit_s": 1.0,
    "browser_cached_s": 0.3,
    "browser_switch_s": 0.3,  # a view option that needs no new computation
    "browser_cold_start_s": 6.0,
}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "numpy", "streamlit", "plotly", "umap", "playwright"):
        try:
            from importlib.metadata import version

            versions[mod] = version({"umap": "umap-learn"}.get(mod, mod))
        except Exception:
            versions[mod] = "?"
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gb": mem, "platform": platform.platform(), "versions": versions,
        "bench_threads": os.environ.get("BENCH_THREADS"),
    }


def steal_ticks() -> int | None:
    """CPU time taken by the hypervisor from this VM (clock ticks): a noise witness."""
    try:
        return int(open("/proc/stat").readline().split()[8])
    except (OSError, IndexError, ValueError):
        return None


def run_worker(step: str, n: int, repeats: int, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        p = subprocess.run([sys.executable, "-m", "bench.worker", step, str(n), str(repeats)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"step": step, "tokens": n, "error": f"timed out after {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    tail = (p.stderr or "").strip().splitlines()[-1:] or ["no output"]
    return {"step": step, "tokens": n, "error": f"worker exited {p.returncode}: {tail[0]}"}


def stats(vals: list[float]) -> dict:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(results: list[dict]) -> list[dict]:
    """Lens vs floor per prompt length."""
    rows = []
    for r in results:
        if r.get("step") not in ("lens", "trace+lens+rollout") or "times_s" not in r:
            continue
        if r["step"] == "lens":
            lens = statistics.median(r["times_s"])
        elif "lens" in r.get("parts_s", {}) and not any(x["tokens"] == r["tokens"] for x in rows):
            lens = statistics.median(r["parts_s"]["lens"])
        else:
            continue
        comp = {k: statistics.median(v) for k, v in r.get("companions_s", {}).items() if v}
        floor = min(comp.values()) if comp else None
        rows.append({"tokens": r["tokens"], "lens_s": lens, "floor_one_s": comp.get("floor_one"),
                     "floor_chunked_s": comp.get("floor_chunked"), "floor_s": floor,
                     "ratio": lens / floor if floor else None,
                     "ratio_chunked": lens / comp["floor_chunked"] if comp.get("floor_chunked") else None})
    return rows


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}"


def table(report: dict) -> str:
    from bench.steps import STEPS

    out = []
    m = report["machine"]
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, "
               f"{m['memory_gb']} GB RAM; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    out.append(f"Model: {report['model']}; times in seconds: median [min–max] of n calls after a warm-up "
               "(n=1: the first call); peak RSS in MB, weights included.")
    out.append("")
    out.append("| step | tokens | median s | min–max s | n | first call s | peak RSS MB |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {s.name: s.label for s in STEPS}
    for r in report["results"]:
        name = labels.get(r["step"], r["step"])
        if "skipped" in r or "error" in r:
            out.append(f"| {name} | {r['tokens']} | {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR: ' + r['error']} |  |  |  |  |")
            continue
        st = stats(r["times_s"])
        out.append(f"| {name} | {r['tokens']} | {fmt_s(st['median'])} | {fmt_s(st['min'])}–{fmt_s(st['max'])} | "
                   f"{st['n']} | {fmt_s(r['first_s'])} | {r['peak_rss_mb']:.0f} |")
        for part, vals in r.get("parts_s", {}).items():
            pst = stats(vals)
            out.append(f"| … of which {part} | {r['tokens']} | {fmt_s(pst['median'])} | "
                       f"{fmt_s(pst['min'])}–{fmt_s(pst['max'])} | {pst['n']} |  |  |")
    if report["lens_vs_floor"]:
        out.append("")
        out.append("Full-grid lens vs its floor (the bare unembedding matmul [(L+1)·T, d] @ W_Uᵀ, same process, "
                   "interleaved): floor = the faster of one big matmul into a preallocated output (where it fits "
                   "in 1 GiB) and the lens's own chunking into a reused buffer.")
        out.append("")
        out.append("| tokens | lens s | floor, one matmul s | floor, lens chunks s | lens / floor | lens / chunked floor |")
        out.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in report["lens_vs_floor"]:
            ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "–"
            rc = f"{r['ratio_chunked']:.2f}×" if r["ratio_chunked"] else "–"
            out.append(f"| {r['tokens']} | {fmt_s(r['lens_s'])} | {fmt_s(r['floor_one_s'])} | "
                       f"{fmt_s(r['floor_chunked_s'])} | {ratio} | {rc} |")
    b = report.get("browser")
    if b:
        out.append("")
        if "error" in b:
            out.append(f"Browser: ERROR {b['error']}")
        else:
            out.append(f"Browser (headless Chromium, logit-lens page, {b.get('prompt_tokens', '?')}-token prompt):")
            out.append("")
            out.append("| browser | median s | min–max s | n |")
            out.append("| --- | ---: | ---: | ---: |")
            for key, label in (("submit_s", "submit → heatmap, new prompt (after warm-up)"),
                               ("typed_s", "typed, 0.6 s pause, Ctrl+Enter → heatmap, new prompt (computed ahead)"),
                               ("pasted_s", "pasted, 0.3 s pause, Ctrl+Enter → heatmap, new prompt (computed ahead)"),
                               ("cached_s", "submit → heatmap, cached prompt"),
                               ("switch_s", "switch the colour metric → heatmap recoloured"),
                               ("projection_submit_s", "projection page: submit → trajectories, new prompt"),
                               ("attention_submit_s", "attention page: submit → route graph, new prompt"),
                               ("cold_start_s", "cold start: launch → home page drawn, page opened at once"),
                               ("warm_up_s", "launch → warm-up done (model loaded, home page computed)"),
                               ("warm_start_s", "page opened after the warm-up → home page drawn")):
                if b.get(key):
                    st = stats(b[key])
                    out.append(f"| {label} | {fmt_s(st['median'])} | {fmt_s(st['min'])}–{fmt_s(st['max'])} | {st['n']} |")
    out.append("")
    out.append("Targets:")
    for t in report["targets"]:
        out.append(f"- {t['what']}: {t['measured']} (target {t['target']}): {'met' if t['met'] else 'MISSED'}"
                   if t["measured"] is not None else f"- {t['what']}: not measured in this run")
    if report.get("steal_s") is not None:
        out.append(f"\nCPU time taken by the hypervisor during the run (steal): {report['steal_s']:.1f} s; "
                   f"run took {report['wall_s']:.0f} s.")
    return "\n".join(out)


def check_targets(report: dict) -> list[dict]:
    res = {(r["step"], r["tokens"]): r for r in report["results"]}
    ratio = next((r["ratio"] for r in report["lens_vs_floor"] if r["tokens"] == 128), None)
    big = max(report["sizes"])
    combo = res.get(("trace+lens+rollout", big), {})
    peak = combo.get("peak_rss_mb") if big >= 2048 else None
    b = report.get("browser") or {}
    t512 = res.get(("trace", 512), {}).get("times_s")
    t2048 = (combo.get("parts_s") or {}).get("trace")
    trace_ratio = statistics.median(t2048) / statistics.median(t512) if t512 and t2048 else None
    window = res.get(("lens-window", 2048), {}).get("times_s")

    def med(key):
        return statistics.median(b[key]) if b.get(key) else None

    rows = [
        ("full-grid lens / floor at 128 tokens", ratio, TARGETS["lens_ratio_128"], "×"),
        ("trace at 2048 tokens / trace at 512", trace_ratio, TARGETS["trace_2048_over_512"], "×"),
        ("lens page, 2048 tokens: trace + the 48 positions on screen (s)",
         statistics.median(window) if window else None, TARGETS["lens_window_2048_s"], ""),
        ("peak RSS of trace + full lens + rollout at 2048 tokens (MB)", peak,
         TARGETS["peak_trace_lens_rollout_2048_mb"], ""),
        ("browser: submit → heatmap, new prompt (s)", med("submit_s"), TARGETS["browser_submit_s"], ""),
        ("browser: typed, a 0.6 s pause, Ctrl+Enter → heatmap, new prompt (s)", med("typed_s"),
         TARGETS["browser_submit_s"], ""),
        ("browser: pasted, a 0.3 s pause, Ctrl+Enter → heatmap, new prompt (s)", med("pasted_s"),
         TARGETS["browser_submit_s"], ""),
        ("browser: submit → heatmap, cached prompt (s)", med("cached_s"), TARGETS["browser_cached_s"], ""),
        ("browser: switch the colour metric → heatmap recoloured (s)", med("switch_s"), TARGETS["browser_switch_s"], ""),
        ("browser: cold start (s)", med("cold_start_s"), TARGETS["browser_cold_start_s"], ""),
    ]
    return [{"what": w, "measured": None if v is None else round(v, 3), "target": f"≤ {t}{u}",
             "met": v is not None and v <= t} for w, v, t, u in rows]


def prompt_tokens(text: str) -> int | None:
    try:
        from lens.model.registry import default_cache_root
        from transformers import AutoTokenizer

        folder = sorted((default_cache_root() / "models").glob("smollm2-135m-*"))[-1]
        return len(AutoTokenizer.from_pretrained(str(folder))(text)["input_ids"])
    except Exception:
        return None


def write_report(report: dict, text: str, kind: str, out: Path | None, latest: str | None = None) -> None:
    """Print the table and write the report as JSON: to ``out``, else a time-stamped file and the latest one."""
    report["table"] = text
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = [out] if out else [RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json",
                               RESULTS / (latest or f"{kind}-latest.json")]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    took = f" ({report['wall_s']:.0f} s)" if "wall_s" in report else ""
    say(f"bench: wrote {', '.join(str(p) for p in paths)}{took}")


def load_test(args) -> int:
    from bench import load

    if args.load < 1:
        say("bench: --load needs at least 1 session")
        return 2
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": "smollm2-135m", "machine": machine(),
              "load": load.run(args.load, demo=not args.load_open, say=say)}
    text = load.table(report["load"])
    write_report(report, text, "load", args.out)
    return 0 if report["load"]["errors"] == 0 else 1


def patching_bench(args) -> int:
    from bench import patching

    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": "smollm2-135m", "machine": machine(),
              "patching": patching.run(repeats=args.repeats or 3, say=say)}
    text = patching.table(report["patching"])
    write_report(report, text, "patching", args.out)
    return 0


def attribution_bench(args) -> int:
    from bench import attribution

    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": "smollm2-135m", "machine": machine(),
              "attribution": attribution.run(repeats=args.repeats or 3, say=say)}
    write_report(report, attribution.table(report["attribution"]), "attribution", args.out)
    return 0


def suites_bench(args) -> int:
    from bench import suites

    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": "smollm2-135m", "machine": machine(),
              "suites": suites.run(repeats=args.repeats or 3, say=say)}
    write_report(report, suites.table(report["suites"]), "suites", args.out)
    return 0


def lenses_bench(args) -> int:
    from bench import lenses

    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": "smollm2-135m", "machine": machine(),
              "lenses": lenses.run(tuned_steps=args.tuned_steps, say=say)}
    write_report(report, lenses.table(report["lenses"]), "lenses", args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.steps import STEP_NAMES, STEPS

    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="128 tokens only, 2 calls each, no UMAP and no combined step, 2 browser prompts, 1 cold start (~2 min)")
    ap.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), help="prompt lengths, e.g. 32,128")
    ap.add_argument("--steps", type=lambda s: s.split(","), help=f"some of: {','.join(STEP_NAMES)}")
    ap.add_argument("--repeats", type=int, help="timed calls per step (default by length: %s)" % REPEATS)
    ap.add_argument("--no-browser", action="store_true", help="skip the real-browser timings")
    ap.add_argument("--browser-runs", type=int, help="prompts submitted in the browser (default 5; quick 2)")
    ap.add_argument("--threads", type=int, help="torch threads in the workers (default: torch's own)")
    ap.add_argument("--out", type=Path, help="JSON file (default bench/results/bench-<time>.json and latest.json)")
    ap.add_argument("--load", type=int, metavar="N", help="only the load test: N browser sessions at once on one server")
    ap.add_argument("--load-open", action="store_true", help="the load test's server in open mode (default: demo mode)")
    ap.add_argument("--patching", action="store_true", help="only the activation-patching grid, beside nnsight's")
    ap.add_argument("--attribution", action="store_true", help="only attribution patching beside the real grids, "
                    "and circuits with their faithfulness")
    ap.add_argument("--suites", action="store_true", help="only prompt suites: a 50-prompt lens suite against 50 "
                    "single-prompt lenses, and a 20-pair patching suite")
    ap.add_argument("--lenses", action="store_true", help="only the fitted lenses: fit, train, KL by layer on held-out prompts")
    ap.add_argument("--tuned-steps", type=int, default=100, help="--lenses: tuned-lens training steps (0: none)")
    ap.add_argument("--start", action="store_true", help="only start-up: the CLI against a bare import of torch and "
                    "transformers, and the dashboard's cold start (bench/start.py; ~3 min)")
    args = ap.parse_args(argv)
    if args.start:
        from bench import start

        return start.main([] if args.out is None else ["--out", str(args.out)])
    if args.load is not None:
        return load_test(args)
    if args.patching:
        return patching_bench(args)
    if args.attribution:
        return attribution_bench(args)
    if args.lenses:
        return lenses_bench(args)
    if args.suites:
        return suites_bench(args)
    if args.threads:
        os.environ["BENCH_THREADS"] = str(args.threads)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    steps = [s for s in STEPS if (s.name in args.steps if args.steps else not (args.quick and s.name in QUICK_SKIP))]
    unknown = set(args.steps or []) - set(STEP_NAMES)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; choose from {STEP_NAMES}")

    t_start, steal0 = time.perf_counter(), steal_ticks()
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": "smollm2-135m", "sizes": list(sizes),
              "quick": args.quick, "machine": machine(), "results": []}
    say(f"bench: {report['machine']['cpu']}, {report['machine']['cores']} cores; sizes {list(sizes)}")
    for n in sizes:
        for step in steps:
            if step.largest_only and n != max(sizes):
                continue
            if step.bench_max_tokens and n > step.bench_max_tokens and not args.steps:
                continue  # the largest prompts: see trace+lens+rollout, which times these parts
            reps = args.repeats if args.repeats is not None else (2 if args.quick else REPEATS.get(n, 1))
            t0 = time.perf_counter()
            r = run_worker(step.name, n, reps, timeout=900)
            report["results"].append(r)
            what = r.get("skipped") or r.get("error") or (
                f"median {statistics.median(r['times_s']):.3f} s, peak {r['peak_rss_mb']:.0f} MB")
            say(f"  {step.name:<20} {n:>5} tokens: {what}  ({time.perf_counter() - t0:.0f} s)")
    report["lens_vs_floor"] = summarize(report["results"])
    if not args.no_browser:
        from bench import browser

        runs = args.browser_runs or (2 if args.quick else 5)
        try:
            report["browser"] = browser.run(runs=runs, cold_runs=1 if args.quick else 2, say=say)
            report["browser"]["prompt_tokens"] = prompt_tokens(report["browser"]["prompt"])
        except Exception as exc:
            report["browser"] = {"error": f"{type(exc).__name__}: {exc}"}
    if not args.quick and not args.steps:  # the patching grid beside nnsight's (also: --patching alone)
        from bench import patching

        try:
            report["patching"] = patching.run(repeats=3, say=say)
        except Exception as exc:
            report["patching"] = {"error": f"{type(exc).__name__}: {exc}"}
        from bench import suites

        try:
            report["suites"] = suites.run(repeats=3, say=say)
        except Exception as exc:
            report["suites"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["targets"] = check_targets(report)
    steal1 = steal_ticks()
    report["wall_s"] = time.perf_counter() - t_start
    if steal0 is not None and steal1 is not None:
        report["steal_s"] = (steal1 - steal0) / os.sysconf("SC_CLK_TCK")
    text = table(report)
    if report.get("patching"):
        from bench import patching

        text += "\n\n" + (f"Patching: ERROR {report['patching']['error']}" if "error" in report["patching"]
                           else patching.table(report["patching"]))
    if report.get("suites"):
        from bench import suites

        text += "\n\n" + (f"Suites: ERROR {report['suites']['error']}" if "error" in report["suites"]
                           else suites.table(report["suites"]))
    write_report(report, text, "bench", args.out, latest="latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
