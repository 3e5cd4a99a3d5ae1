"""Every backend method through a ResultCache: a second backend on the same cache folder is served
from disk, with results equal field by field to an uncached run; entries that no longer fit their type
are recomputed."""
from __future__ import annotations

from lens.options import ContributionOptions, FlowOptions, HeadOptions, NodeOptions, RolloutOptions, RouteOptions
import dataclasses
import json

import numpy as np
import pytest

import lens.engine_backend as backend_mod
from lens.cache import ResultCache
from lens.engine_backend import RESULT_TYPES, local_backend
from lens.model.loading import load_model
from lens.options import GeometryOptions, LensOptions, ProjectionOptions, PatchOptions
from lens.results import FlowResult
from lens.serialize import join, split

PROMPT = "hello there, the end; see me here"

CALLS = {  # method -> (kind, call)
    "logit_lens": ("lens", lambda b: b.logit_lens(PROMPT, LensOptions(top_k=3))),
    "projection": ("projection", lambda b: b.projection(PROMPT, ProjectionOptions())),
    "geometry": ("geometry", lambda b: b.geometry([PROMPT, "see the end"], GeometryOptions(word="e"))),
    "rollout": ("rollout", lambda b: b.rollout(PROMPT, RolloutOptions(5))),
    "attention_flow": ("flow", lambda b: b.attention_flow("hello you", FlowOptions(None, [1, 3]))),
    "head_patterns": ("head-patterns", lambda b: b.head_patterns(PROMPT, HeadOptions(2))),
    "head_summary": ("head-summary", lambda b: b.head_summary(PROMPT)),
    "contributions": ("contributions", lambda b: b.contributions(PROMPT, ContributionOptions(2, 7))),
    "route_graph": ("routes", lambda b: b.route_graph(PROMPT, RouteOptions(None, 0.05))),
    "node_detail_attn": ("node", lambda b: b.node_detail(PROMPT, NodeOptions(3, 7, "attn", top_k=4))),
    "node_detail_mlp": ("node", lambda b: b.node_detail(PROMPT, NodeOptions(2, 7, "mlp", top_k=4))),
    "patch": ("patch", lambda b: b.patch(PROMPT, PROMPT.replace("there", "where"), PatchOptions(target="e", foil="a"))),
}


@pytest.fixture(scope="module")
def tiny_gpt2():
    return load_model("tiny-gpt2")


def assert_same(a, b, ignore=()):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        if f.name in ignore:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)  # NaN == NaN here
        else:
            assert json.dumps(x, sort_keys=True, default=str) == json.dumps(y, sort_keys=True, default=str), f.name


@pytest.mark.parametrize("method", list(CALLS))
def test_every_method_round_trips_through_the_cache(method, tiny_gpt2, tmp_path, monkeypatch):
    kind, call = CALLS[method]
    first = call(local_backend(tiny_gpt2, ResultCache(tmp_path)))
    assert isinstance(first, RESULT_TYPES[kind])
    assert len(list(tmp_path.glob(f"{kind}-*.safetensors"))) == 1
    plain = call(local_backend(tiny_gpt2, None))
    assert_same(first, plain, ignore=("seconds",))  # a projection's fitting time differs run to run

    # A fresh backend (another server process) on the same folder computes nothing.
    def no_capture(*a, **k):
        raise AssertionError(f"{method} ran the model instead of reading the cache")

    fresh = local_backend(tiny_gpt2, ResultCache(tmp_path))
    monkeypatch.setattr(backend_mod, "capture", no_capture)
    assert_same(call(fresh), first)


def test_flow_rows_with_nan_survive_the_cache(tmp_path):
    flow = np.array([[0.25, 0.75, 0.0], [np.nan, np.nan, np.nan]], np.float32)
    r = FlowResult(model="m", tokens=["a", "b", "c"], position=2, layers=["2", "5"], flow=flow,
                   raw_flow=np.nan_to_num(flow), options={"layers": [2, 5]})
    cache = ResultCache(tmp_path)
    cache.put("flow-x", *split(r))
    back = join(FlowResult, *cache.get("flow-x"))
    assert_same(back, r)
    assert np.isnan(back.flow[1]).all()


@pytest.mark.parametrize("damage", ["renamed field", "missing field", "array as JSON"])
def test_an_entry_that_is_not_its_type_is_recomputed(damage, tiny_gpt2, tmp_path, monkeypatch):
    """E.g. an entry written before a field was renamed: a miss, recomputed and overwritten, never a crash."""
    be = local_backend(tiny_gpt2, ResultCache(tmp_path))
    good = be.rollout(PROMPT, RolloutOptions(5))
    (path,) = tmp_path.glob("rollout-*.safetensors")
    key = path.stem
    arrays, fields = split(good)
    if damage == "renamed field":
        fields["tokens_v0"] = fields.pop("tokens")
    elif damage == "missing field":
        del arrays["attention"]
    else:
        fields["rollout"] = arrays.pop("rollout").tolist()
    be.cache.put(key, arrays, fields)

    calls = []
    real = backend_mod.rollout
    monkeypatch.setattr(backend_mod, "rollout", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = be.rollout(PROMPT, RolloutOptions(5))
    assert calls == [1]
    assert_same(again, good)
    assert_same(join(type(good), *be.cache.get(key)), good)  # the entry was rewritten whole


def test_calls_in_a_row_share_one_forward_pass(tiny_gpt2, monkeypatch):
    """What a page asks for in a row runs the model once: rollout then flow, the route graph at two
    thresholds then a drill-down, two windows of the lens, and the repeated sequence of the head scores
    (the same for every prompt)."""
    passes = []
    real = backend_mod.capture
    monkeypatch.setattr(backend_mod, "capture", lambda *a, **k: passes.append(1) or real(*a, **k))
    be = local_backend(tiny_gpt2, None)
    be.rollout(PROMPT, RolloutOptions(3))
    be.attention_flow("hello you", FlowOptions(None, [3]))
    be.rollout("hello you", RolloutOptions(2))
    assert len(passes) == 2
    be.route_graph(PROMPT, RouteOptions(None, 0.05))
    be.route_graph(PROMPT, RouteOptions(None, 0.1))
    be.node_detail(PROMPT, NodeOptions(2, 5, "attn"))
    assert len(passes) == 3
    be.logit_lens(PROMPT, LensOptions(positions=(0, 10)))
    be.logit_lens(PROMPT, LensOptions(positions=(10, 20)))
    assert len(passes) == 4
    be.head_summary(PROMPT)
    be.head_summary("another prompt entirely")
    assert len(passes) == 4 + 3  # the repeated sequence once, then each prompt's own pass


def test_callers_asking_at_once_share_one_computation(tiny_gpt2, tmp_path, monkeypatch):
    """Ten sessions asking for the same lens at the same moment: one lens is computed, all ten get it;
    an error is handed to every waiter and nothing is kept, so the next call computes again."""
    import threading
    import time

    calls = []
    real = backend_mod.logit_lens

    def slow_lens(*a, **k):
        calls.append(1)
        time.sleep(0.3)  # long enough that every caller arrives while it runs
        if len(calls) == 2:
            raise backend_mod.LensError("failed on purpose")
        return real(*a, **k)

    monkeypatch.setattr(backend_mod, "logit_lens", slow_lens)
    backend = local_backend(tiny_gpt2, ResultCache(tmp_path))
    got, errors = [], []

    def ask(text):
        try:
            got.append(backend.logit_lens(text, LensOptions(top_k=3)))
        except backend_mod.LensError as exc:
            errors.append(str(exc))

    for text, n in ((PROMPT, 10), ("another prompt", 4)):
        threads = [threading.Thread(target=ask, args=(text,)) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(calls) == 2
    assert len(got) == 10 and all(r is got[0] for r in got)
    assert errors == ["failed on purpose"] * 4
    backend.logit_lens("another prompt", LensOptions(top_k=3))  # the failure was not kept
    assert len(calls) == 3
