"""The result cache under faults: concurrent writers (threads and processes) with eviction
active, entries replaced by folders, altered fields, writers killed mid-write, and a cache
that cannot be written at all. A fault may cost a recomputation, never an error or a
wrong result."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lens.cache import STALE_TMP_SECONDS, ResultCache
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.options import LensOptions

from test_cache import PROMPT, assert_results_equal, truncate

REPO = Path(__file__).resolve().parent.parent


def entry(key: str, size: int = 2000) -> tuple[dict, dict]:
    """The content every writer stores under ``key``: a reader can check what it got."""
    seed = int.from_bytes(key.encode(), "little") % 2**32
    arrays = {"x": np.random.default_rng(seed).random(size).astype(np.float32)}
    return arrays, {"key": key, "tokens": [key, "é", "👋"]}


def exercise(root: str, worker: int, ops: int, max_bytes: int) -> list[str]:
    """Puts and gets on a few shared keys; the problems seen (exceptions, wrong content)."""
    cache = ResultCache(Path(root), max_bytes=max_bytes)
    rng = np.random.default_rng(worker)
    problems = []
    for i in range(ops):
        key = f"k{rng.integers(12)}"
        try:
            if i % 2:
                cache.put(key, *entry(key))
            else:
                got = cache.get(key)
                if got is not None:
                    arrays, fields = got
                    want_arrays, want_fields = entry(key)
                    if fields != want_fields or not np.array_equal(arrays["x"], want_arrays["x"]):
                        problems.append(f"{key}: wrong content")
            cache.size()
        except Exception as exc:  # noqa: BLE001 (the point is to count any of them)
            problems.append(f"{type(exc).__name__}: {exc}")
    return problems


ONE_ENTRY = 8_500  # bytes, about: max_bytes below keeps 2-3 of 12 keys, so eviction runs all the time


def test_threads_sharing_a_folder_with_eviction_see_no_errors(tmp_path):
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda w=w: results.append(exercise(str(tmp_path), w, 100, 3 * ONE_ENTRY)))
               for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    problems = [p for r in results for p in r]
    assert len(results) == 8 and problems == []
    assert ResultCache(tmp_path).size() <= 3 * ONE_ENTRY + ONE_ENTRY  # within budget (one write may overlap)


def test_processes_sharing_a_folder_with_eviction_see_no_errors(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(exercise, [(str(tmp_path), w, 150, 3 * ONE_ENTRY) for w in range(3)])
    assert [p for r in results for p in r] == []


def test_an_entry_replaced_by_a_folder_is_a_miss_and_is_written_again(tmp_path):
    cache = ResultCache(tmp_path)
    (tmp_path / "k.safetensors").mkdir(parents=True)
    (tmp_path / "k.safetensors" / "inside").write_text("x")
    assert cache.get("k") is None
    assert cache.put("k", *entry("k"))
    arrays, fields = cache.get("k")
    assert fields == entry("k")[1]


def _rewrite_fields(path: Path, change) -> None:
    """Rewrite an entry's JSON fields with ``change`` applied, keeping its arrays and digest."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    fields = json.loads(meta["json"])
    change(fields)
    save_file(arrays, str(path), metadata={"json": json.dumps(fields), "sha256": meta["sha256"]})


@pytest.mark.parametrize("change", [
    lambda f: f["tokens"].__setitem__(0, "tampered"),
    lambda f: f.__setitem__("key", "other"),
    lambda f: f.__setitem__("extra", 1),
], ids=["token", "field", "added"])
def test_altered_fields_are_not_served(tmp_path, change):
    cache = ResultCache(tmp_path)
    cache.put("k", *entry("k"))
    _rewrite_fields(tmp_path / "k.safetensors", change)
    assert cache.get("k") is None
    assert not (tmp_path / "k.safetensors").exists()


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {repo!r})
    from lens.cache import ResultCache
    cache = ResultCache({root!r}, max_bytes=2**40)
    big = {{"x": np.ones(12_000_000, np.float32)}}  # 48 MB: a write takes a while
    print("ready", flush=True)
    while True:
        cache.put("big", big, {{"n": 1}})
""")


def test_a_writer_killed_mid_write_leaves_nothing_read_as_valid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO), root=str(tmp_path))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while not list(tmp_path.glob("*.tmp")) and time.time() < deadline:
            time.sleep(0.005)  # until a write is under way
        assert list(tmp_path.glob("*.tmp")), "the writer never started a write"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    cache = ResultCache(tmp_path)
    got = cache.get("big")
    if got is not None:  # an earlier, complete write: it must be whole
        assert got[1] == {"n": 1} and got[0]["x"].shape == (12_000_000,) and float(got[0]["x"].min()) == 1.0
    leftovers = list(tmp_path.glob("*.tmp"))
    assert leftovers, "the killed write should have left its temporary file"
    old = time.time() - STALE_TMP_SECONDS - 1
    for p in leftovers:
        os.utime(p, (old, old))
    cache.evict()
    assert not list(tmp_path.glob("*.tmp"))  # a dead writer's temporary file is swept


@pytest.fixture(scope="module")
def tiny_llama():
    return load_model("tiny-llama")


def test_a_cache_that_cannot_be_written_still_gives_results(tmp_path, tiny_llama):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    be = local_backend(tiny_llama, ResultCache(blocked / "results"))
    opts = LensOptions(top_k=3)
    assert_results_equal(be.logit_lens(PROMPT, opts), local_backend(tiny_llama, None).logit_lens(PROMPT, opts))


@pytest.mark.parametrize("damage", ["truncate", "half", "folder", "fields"])
def test_damaged_entries_are_recomputed_identical_to_an_uncached_run(tmp_path, tiny_llama, damage):
    plain = local_backend(tiny_llama, None)
    cached = local_backend(tiny_llama, ResultCache(tmp_path))
    options = [LensOptions(top_k=3), LensOptions(top_k=4, positions=(1, 5)), LensOptions(target=" the")]
    for o in options:
        cached.logit_lens(PROMPT, o)
    for path in tmp_path.glob("*.safetensors"):
        if damage == "truncate":
            truncate(path)
        elif damage == "half":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "folder":
            path.unlink()
            path.mkdir()
        else:
            _rewrite_fields(path, lambda f: f.__setitem__("tokens", ["x"] * len(f["tokens"])))
    again = local_backend(tiny_llama, ResultCache(tmp_path))
    for o in options:
        assert_results_equal(again.logit_lens(PROMPT, o), plain.logit_lens(PROMPT, o))
        assert_results_equal(again.logit_lens(PROMPT, o), plain.logit_lens(PROMPT, o))  # now from the rewritten entry
