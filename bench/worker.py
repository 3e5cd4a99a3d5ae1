"""One step at one prompt length, in this (fresh) process; prints one JSON line.

``python -m bench.worker STEP N_TOKENS REPEATS``

Peak memory is the process's resident high-water mark during the step's first
(warm-up) call, model weights and everything already loaded included; the mark is
reset (``/proc/self/clear_refs``) after loading and set-up, so model loading does
not count. Where that reset is not possible, ``ru_maxrss`` (the whole process) is used.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import warnings


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(reset_ok: bool) -> float:
    kb = _status_kb("VmHWM") if reset_ok else None
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def main(argv: list[str]) -> dict:
    name, n_tokens, repeats = argv[0], int(argv[1]), int(argv[2])
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    from bench.prompts import prompt_ids
    from bench.steps import Ctx, available, by_name
    from lens.model.loading import load_model

    step = by_name(name)
    out = {"step": name, "tokens": n_tokens, "threads": torch.get_num_threads()}
    why = available(step)
    if why:
        return {**out, "skipped": why}
    lm = load_model("smollm2-135m")
    tok = lm.tokenizer
    ids = prompt_ids(tok, n_tokens)
    ctx = Ctx(lm, ids, [tok.decode([i]) for i in ids])
    limit = step.max_tokens(ctx)
    if limit is not None and n_tokens > limit:
        return {**out, "skipped": f"limited to {limit} tokens"}

    fn = step.prepare(ctx)
    out["base_rss_mb"] = (_status_kb("VmRSS") or 0) / 1024
    ok = reset_peak()
    t0 = time.perf_counter()
    fn()
    out["first_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = peak_mb(ok)
    out["peak_method"] = "VmHWM after reset" if ok else "ru_maxrss"

    comps = {}
    for cname, prep in step.companions.items():
        f = prep(ctx)
        if f is not None:
            if repeats > 0 and n_tokens <= 128:
                f()  # warm-up (longer prompts: the first call's set-up cost is negligible)
            comps[cname] = f
    times: list[float] = []
    ctimes: dict[str, list[float]] = {c: [] for c in comps}
    if repeats <= 0:  # the warm-up call is the measurement (long prompts)
        times.append(out["first_s"])
        repeats = 1
        timed_main = False
    else:
        timed_main = True
    for _ in range(repeats):  # interleaved, so slow phases of a noisy machine hit both alike
        if timed_main:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        for cname, f in comps.items():
            t0 = time.perf_counter()
            f()
            ctimes[cname].append(time.perf_counter() - t0)
    out["times_s"] = times
    if getattr(fn, "parts", None):
        out["parts_s"] = fn.parts
    if ctimes:
        out["companions_s"] = ctimes
    return out


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:  # reported in the table, never a silent gap
        result = {"step": sys.argv[1], "tokens": int(sys.argv[2]), "error": f"{type(exc).__name__}: {exc}"}
    print("BENCH-RESULT " + json.dumps(result), flush=True)
