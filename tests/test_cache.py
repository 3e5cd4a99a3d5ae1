"""The on-disk result cache: round trips, corruption, LRU bound, and use through the backend."""
from __future__ import annotations

import dataclasses
import json
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest

import lens.engine_backend as backend_mod
from lens.engine_backend import local_backend
from lens.cache import ResultCache, make_key
from lens.options import LensOptions
from lens.results import LogitLensResult
from lens.model.loading import load_model

LENS_DIR = Path(__file__).resolve().parent.parent / "lens"


def sample(seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {
        "probs": rng.random((3, 4, 5)).astype(np.float32),
        "ids": rng.integers(0, 50_000, (3, 4, 5)).astype(np.int64),
        "loss": np.array([[1.5, np.nan], [np.nan, -np.inf]], np.float32),
        "wide": rng.random(7),  # float64
    }
    fields = {
        "tokens": ["é", "👋🏽", "e\u0301", "שלום", "\u0000", "\n", "", "\"quoted\" \\ back"],
        "nested": {"a": [1, 2.5, None], "b": {"ünï": True}},
        "note": "",
        "n": 3,
    }
    return arrays, fields


def assert_same(got, arrays, fields):
    assert got is not None
    g_arrays, g_fields = got
    assert set(g_arrays) == set(arrays)
    for name, a in arrays.items():
        assert g_arrays[name].dtype == a.dtype and g_arrays[name].shape == a.shape
        np.testing.assert_array_equal(g_arrays[name], a)  # NaN == NaN here
    assert g_fields == fields


def test_round_trip(tmp_path):
    cache = ResultCache(tmp_path)
    arrays, fields = sample()
    key = make_key("test", x=1)
    assert cache.get(key) is None
    cache.put(key, arrays, fields)
    assert_same(cache.get(key), arrays, fields)
    assert_same(cache.get(key), arrays, fields)  # reading does not consume it
    # Only finished entries remain: no temporary files.
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.safetensors"]


def test_put_overwrites(tmp_path):
    cache = ResultCache(tmp_path)
    a1, f1 = sample(1)
    a2, f2 = sample(2)
    f2["note"] = "second"
    cache.put("k", a1, f1)
    cache.put("k", a2, f2)
    assert_same(cache.get("k"), a2, f2)


def test_files_are_safetensors_not_pickle(tmp_path):
    cache = ResultCache(tmp_path)
    arrays, fields = sample()
    cache.put("k", arrays, fields)
    raw = (tmp_path / "k.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert set(arrays) <= set(header)
    assert header["probs"]["dtype"] == "F32" and header["probs"]["shape"] == [3, 4, 5]
    assert json.loads(header["__metadata__"]["json"]) == fields
    assert not raw.startswith(b"\x80")  # a pickle stream starts with PROTO
    # No code path in the package can unpickle a file. The one exception is the server's own pipe to its model
    # worker (lens/worker/wire.py), whose unpickler rebuilds only LayerLens's result types and numpy arrays: it
    # must override find_class (what it refuses is tested in test_worker_backend.py).
    for src in LENS_DIR.rglob("*.py"):
        text = src.read_text(encoding="utf-8")
        assert "allow_pickle" not in text, src
        if src == LENS_DIR / "worker" / "wire.py":
            assert "def find_class(self" in text and "pickle.load(" not in text and "pickle.loads(" not in text
            continue
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M), src
        # torch.load only as the tensors-only reader (a tuned-lens checkpoint): it refuses pickled objects.
        for call in re.findall(r"torch\.load\(.*", text):  # the call's line
            assert "weights_only=True" in call, (src, call)
        assert "np.load(" not in text and "numpy.load(" not in text, src


def corrupt_middle(path: Path):
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    mid = 8 + n + (len(raw) - 8 - n) // 2  # inside the array data
    for i in range(mid, mid + 8):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def corrupt_header(path: Path):
    raw = bytearray(path.read_bytes())
    raw[12:20] = b"\x00\xff\x00\xff\x00\xff\x00\xff"
    path.write_bytes(bytes(raw))


def truncate(path: Path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def huge_length(path: Path):
    raw = bytearray(path.read_bytes())
    raw[:8] = struct.pack("<Q", 2**60)
    path.write_bytes(bytes(raw))


def empty(path: Path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [corrupt_middle, corrupt_header, truncate, huge_length, empty])
def test_corrupt_entry_is_a_miss_and_deleted(tmp_path, damage):
    cache = ResultCache(tmp_path)
    arrays, fields = sample()
    cache.put("k", arrays, fields)
    cache.put("other", *sample(5))
    path = tmp_path / "k.safetensors"
    damage(path)
    assert cache.get("k") is None
    assert not path.exists()
    assert_same(cache.get("other"), *sample(5))  # other entries are untouched
    cache.put("k", arrays, fields)
    assert_same(cache.get("k"), arrays, fields)


def test_entry_with_bad_metadata_is_a_miss(tmp_path):
    from safetensors.numpy import save_file

    cache = ResultCache(tmp_path)
    arrays, fields = sample()
    cache.put("k", arrays, fields)
    raw = (tmp_path / "k.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    digest = json.loads(raw[8:8 + n])["__metadata__"]["sha256"]
    # A file written by someone else: valid safetensors, broken JSON / missing digest.
    save_file(arrays, str(tmp_path / "badjson.safetensors"), metadata={"json": "{nope", "sha256": digest})
    save_file(arrays, str(tmp_path / "nodigest.safetensors"), metadata={"json": json.dumps(fields)})
    for key in ("badjson", "nodigest"):
        assert cache.get(key) is None
        assert not (tmp_path / f"{key}.safetensors").exists()


def test_lru_bound_evicts_least_recently_used(tmp_path):
    probe = ResultCache(tmp_path / "probe")
    probe.put("x", *sample(0))
    one = probe.size()
    assert one > 0
    cache = ResultCache(tmp_path / "c", max_bytes=int(2.5 * one))
    cache.put("a", *sample(0))
    time.sleep(0.05)
    cache.put("b", *sample(0))
    time.sleep(0.05)
    assert cache.get("a") is not None  # "a" is now the most recently used
    time.sleep(0.05)
    cache.put("c", *sample(0))
    names = {p.stem for p in cache.entries()}
    assert names == {"a", "c"}, names
    assert cache.size() <= cache.max_bytes
    assert cache.get("b") is None
    # Without the read, the oldest goes.
    time.sleep(0.05)
    cache.put("d", *sample(0))
    assert {p.stem for p in cache.entries()} == {"c", "d"}


def test_make_key_differs_in_every_part():
    base = dict(model="abc", prompt="hello", options={"top_k": 5, "target": None, "positions": None})
    k0 = make_key("lens", **base)
    assert re.fullmatch(r"lens-[0-9a-f]{32}", k0)
    assert make_key("lens", **base) == k0
    assert make_key("lens", **dict(reversed(list(base.items())))) == k0  # order does not matter
    variants = [
        make_key("other", **base),
        make_key("lens", **{**base, "model": "abd"}),
        make_key("lens", **{**base, "prompt": "hello "}),
        make_key("lens", **{**base, "prompt": "héllo"}),
        make_key("lens", **{**base, "options": {"top_k": 6, "target": None, "positions": None}}),
        make_key("lens", **{**base, "options": {"top_k": 5, "target": "x", "positions": None}}),
        make_key("lens", **{**base, "options": {"top_k": 5, "target": None, "positions": [0, 2]}}),
        make_key("lens", **base, extra=1),
    ]
    assert len({k0, *variants}) == len(variants) + 1
    # Any prompt gives a safe file name.
    assert re.fullmatch(r"lens-[0-9a-f]{32}", make_key("lens", prompt="../../etc/passwd\x00/"))


# ---- through the backend -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama():
    return load_model("tiny-llama")


def assert_results_equal(a: LogitLensResult, b: LogitLensResult):
    for f in dataclasses.fields(LogitLensResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


PROMPT = "héllo wörld 👋 the end"


def test_backend_serves_second_call_from_cache(tmp_path, tiny_llama, monkeypatch):
    be = local_backend(tiny_llama, ResultCache(tmp_path))
    opts = LensOptions(top_k=4, target="e")
    first = be.logit_lens(PROMPT, opts)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(backend_mod, "logit_lens", boom)
    second = be.logit_lens(PROMPT, opts)
    assert_results_equal(first, second)
    # A different prompt or different options are not served from that entry.
    with pytest.raises(AssertionError, match="recomputed"):
        be.logit_lens(PROMPT + "!", opts)
    with pytest.raises(AssertionError, match="recomputed"):
        be.logit_lens(PROMPT, LensOptions(top_k=5, target="e"))


def test_backend_cache_equals_uncached(tmp_path, tiny_llama):
    cached = local_backend(tiny_llama, ResultCache(tmp_path))
    plain = local_backend(tiny_llama, None)
    opts = LensOptions(top_k=3, positions=(2, 9))
    cached.logit_lens(PROMPT, opts)
    assert_results_equal(cached.logit_lens(PROMPT, opts), plain.logit_lens(PROMPT, opts))


def test_backend_recomputes_corrupt_entry(tmp_path, tiny_llama, monkeypatch):
    be = local_backend(tiny_llama, ResultCache(tmp_path))
    opts = LensOptions(top_k=3)
    first = be.logit_lens(PROMPT, opts)
    (path,) = tmp_path.glob("*.safetensors")
    corrupt_middle(path)
    calls = []
    real = backend_mod.logit_lens

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(backend_mod, "logit_lens", counting)
    again = be.logit_lens(PROMPT, opts)
    assert calls == [1]
    assert_results_equal(first, again)
    # The recomputed entry replaced the damaged one and is served next time.
    third = be.logit_lens(PROMPT, opts)
    assert calls == [1]
    assert_results_equal(first, third)


def test_lru_keeps_the_entry_just_read_even_within_one_clock_tick(tmp_path):
    """Reads and writes in quick succession can share an mtime; the entry read last must still win."""
    arr = {"x": np.arange(1000, dtype=np.float32)}
    probe = ResultCache(tmp_path / "probe")
    probe.put("p", arr, {})
    one = probe.size()
    for trial in range(20):
        c = ResultCache(tmp_path / f"t{trial}", max_bytes=int(2.5 * one))
        c.put("a", arr, {})
        c.put("b", arr, {})
        assert c.get("a") is not None
        c.put("c", arr, {})
        assert {p.stem for p in c.entries()} == {"a", "c"}
