"""lens/worker/: the model in a child process. The same Backend calls through the worker and in this process give
exactly the same results (tiny model, and the bundled model's lens); progress, the queue's place in line and errors
come back to the caller; a result asked for at once by several callers is computed once; a caller who leaves
cancels its call; the server side never imports torch; a killed worker is named and restarted by the next
request; a worker never outlives its parent; a message naming anything but a result type is refused."""
from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lens.backend import Backend
from lens.errors import LensError
from lens.jobs import Asker, Cancelled, asking
from lens.options import (Ablation, FlowOptions, GenerateOptions, HeadOptions, LensOptions, PatchOptions,
                          ProjectionOptions, RolloutOptions, RouteOptions)
from lens.worker import Worker, WorkerBackend, WorkerDied, wire

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the cat sat on the mat"
TIMINGS = {"seconds"}  # fields that time the work (a fit), never the same twice


def same(a, b, where: str = "result") -> None:
    """``a`` and ``b`` identical: same types, arrays equal to the bit (dtype, shape, NaN where NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} against {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.name in TIMINGS:
                assert isinstance(getattr(b, f.name), type(getattr(a, f.name))), f"{where}.{f.name}"
                continue
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} against {b.dtype}{b.shape}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where} differs"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} items against {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, f"{where}: {a!r} against {b!r}"


@pytest.fixture(scope="module")
def worker():
    w = Worker(no_cache=True)
    yield w
    w.close()


@pytest.fixture(scope="module")
def tiny(worker):
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    return worker.load("tiny-llama"), local_backend(load_model("tiny-llama"))


CALLS = [
    ("tokenize", (TEXT,), {}),
    ("token_ids", (TEXT,), {}),
    ("logit_lens", (TEXT,), {}),
    ("logit_lens", (TEXT, LensOptions(top_k=3, target="a")), {}),
    ("rollout", (TEXT, RolloutOptions()), {}),
    ("attention_flow", (TEXT, FlowOptions()), {}),
    ("head_patterns", (TEXT, HeadOptions(layer=2)), {}),
    ("head_summary", (TEXT,), {}),
    ("route_graph", (TEXT, RouteOptions()), {}),
    ("generate", (TEXT, GenerateOptions(max_new_tokens=4)), {}),
    ("generate", (TEXT,), {"options": GenerateOptions(max_new_tokens=3, temperature=0.7, seed=5)}),
    ("patch", ("the cat sat", "the dog sat", PatchOptions(target="a")), {}),
    ("ablated_lens", (TEXT, Ablation(heads=((1, 0),), mlp=(2,))), {}),
    ("projection", ([TEXT, "a dog ran"], ProjectionOptions(method="pca")), {}),
    ("next_logits", (TEXT,), {}),
]


def test_the_worker_backend_answers_every_protocol_method():
    wanted = {n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")}
    assert wanted <= set(dir(WorkerBackend))
    assert "logit_lens" in wanted and "steer" in wanted


@pytest.mark.parametrize("method,args,kwargs", CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_tiny_model_through_the_worker_is_exactly_in_process(tiny, method, args, kwargs):
    remote, here = tiny
    same(getattr(remote, method)(*args, **kwargs), getattr(here, method)(*args, **kwargs), method)


def test_info_is_the_in_process_info(tiny):
    remote, here = tiny
    same(remote.info(), here.info())


def test_progress_lines_come_back_to_the_caller_on_its_thread(tiny):
    remote, here = tiny
    seen, there = [], []
    me = threading.get_ident()

    def mine(f, m):
        assert threading.get_ident() == me
        seen.append((f, m))

    options = LensOptions(top_k=4)
    remote.logit_lens("progress test one", options, progress=mine)
    here.logit_lens("progress test one", options, progress=lambda f, m: there.append((f, m)))
    assert seen == there and seen[-1][0] == 1.0


def test_errors_come_back_with_their_type_and_message(tiny):
    remote, here = tiny
    for call in (lambda b: b.logit_lens(""), lambda b: b.logit_lens(TEXT, LensOptions(top_k=0)),
                 lambda b: b.head_patterns(TEXT, HeadOptions(layer=99)),
                 lambda b: b.logit_lens(TEXT, "not options")):  # a bug's error: AttributeError, not a LensError
        with pytest.raises(BaseException) as got:
            call(remote)
        with pytest.raises(BaseException) as expected:
            call(here)
        assert type(got.value) is type(expected.value) and str(got.value) == str(expected.value)
    assert isinstance(got.value, AttributeError)
    assert any("in the model worker" in n for n in getattr(got.value, "__notes__", []))  # its traceback, for the log


def test_callers_asking_at_once_share_one_computation(tiny):
    remote, _ = tiny
    text = "shared by three callers " + str(time.time())
    results, progressed = [None] * 3, [0] * 3

    def ask(i):
        def count(f, m):
            progressed[i] += 1
        results[i] = remote.logit_lens(text, LensOptions(top_k=5), progress=count)

    # A long computation holds the worker's one slot first, so all three ask while the first of them still waits
    # for it (a tiny model's lens alone can be done before the third thread has even asked).
    holder = threading.Thread(target=remote.patch, args=("the cat sat on the mat again " * 4,
                                                         "the dog sat on the rug again " * 4, PatchOptions(target="a")))
    holder.start()
    time.sleep(0.5)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads + [holder]:
        t.join(60)
    for r in results[1:]:
        same(r, results[0])
    # one caller computed it (its progress lines); the others waited for its result
    assert sum(1 for p in progressed if p > 0) == 1, progressed


def test_a_caller_behind_another_sees_its_place_and_can_leave(worker, tiny):
    remote, _ = tiny
    places, first_done = [], threading.Event()

    def long_one():
        # Long (a patched run per position and layer of ~115 tokens: 2 s on an idle laptop CPU, longer when it is
        # busy), so the second caller, a second later, comes while it computes.
        with asking(Asker(who="a")):
            remote.patch("the cat sat on the mat again " * 4, "the dog sat on the rug again " * 4,
                         PatchOptions(target="a"))
        first_done.set()

    t = threading.Thread(target=long_one)
    t.start()
    time.sleep(1.0)
    gone = threading.Event()
    with pytest.raises(Cancelled):
        with asking(Asker(who="b", on_wait=lambda p, r: (places.append((p, r)), gone.set()),
                          alive=lambda: not gone.is_set())):
            remote.logit_lens("a caller who leaves " + str(time.time()))
    # Dropped while the first computation still runs: the worker reports the place at every poll of its
    # queue, and the caller asks whether it is still wanted after each report, not only on a quiet poll.
    left_while_the_other_ran = not first_done.is_set()
    t.join(120)
    assert first_done.is_set()
    assert places and places[0] == (1, 1), places  # first in line, one computation running
    assert left_while_the_other_ran
    assert remote.tokenize("ab") == ["a", "b"]  # the worker goes on serving


def test_in_the_worker_a_look_ahead_goes_after_a_caller_who_asks_later(worker, tiny):
    """A computation asked ahead of need (a typist's look-ahead) gives way in the worker's line: a visitor who asks
    while it waits goes before it, first in line. (That it also stops for them once running: tests/test_jobs.py.)"""
    remote, _ = tiny
    done, places = [], {"look-ahead": [], "visitor": []}
    in_line = threading.Event()

    def call(name, asker, fn):
        with asking(asker):
            fn()
        done.append(name)

    def long_patch():  # a patched run per position and layer of ~115 tokens: seconds
        remote.patch("the cat sat on the mat again " * 4, "the dog sat on the rug again " * 4, PatchOptions(target="a"))

    def waiting(name):
        return lambda place, running: (places[name].append(place), place and in_line.set())

    started = threading.Event()
    first = threading.Thread(target=call, args=("first", Asker(who="someone", on_wait=lambda place, running: (
        place == 0 and started.set())), long_patch))
    first.start()
    assert started.wait(60)  # (told (0, n) as it starts)
    ahead = threading.Thread(target=call, args=("look-ahead", Asker(who="typist", ahead=True, on_wait=waiting(
        "look-ahead")), lambda: remote.logit_lens("the typist's prompt so far " + str(time.time()))))
    ahead.start()
    assert in_line.wait(60)  # the look-ahead waits behind the first caller's computation
    call("visitor", Asker(who="visitor", on_wait=waiting("visitor")),
         lambda: remote.logit_lens("another visitor's prompt " + str(time.time())))
    first.join(120), ahead.join(120)
    assert done == ["first", "visitor", "look-ahead"], done
    assert places["visitor"][0] == 1, places  # the look-ahead in line before the visitor counts in no place


def test_a_caller_told_its_place_often_still_notices_it_was_left():
    """A worker reporting the place in line more often than the caller's poll: the caller still asks, after each
    report, whether anyone waits for it, and cancels the call in the worker (a visitor who closed the tab)."""
    w = Worker()
    sent, stop = [], threading.Event()

    def send(conn, message):
        sent.append(message[0])
        if message[0] == "call":
            call_id = message[1]

            def report():  # the place every 50 ms, then (too late) the answer
                for _ in range(100):
                    if stop.is_set():
                        return
                    w._calls[call_id][0].put(("wait", call_id, 1, 1))
                    time.sleep(0.05)
                w._calls[call_id][0].put(("done", call_id, "answered"))
            threading.Thread(target=report, daemon=True).start()
    w._send = send
    told = threading.Event()
    try:
        with pytest.raises(Cancelled):
            with asking(Asker(who="a", on_wait=lambda p, r: told.set(), alive=lambda: not told.is_set())):
                w._call(None, "tiny", "logit_lens", {})
    finally:
        stop.set()
    assert sent == ["call", "cancel"]  # cancelled before the answer came (it would have been returned)


def test_the_server_side_imports_no_torch_and_the_worker_dies_with_it():
    code = textwrap.dedent("""
        import sys, time
        from lens.worker import Worker
        from lens.options import LensOptions
        w = Worker(no_cache=True)
        b = w.load("tiny-gpt2", progress=lambda f, m: None)
        r = b.logit_lens("hello", LensOptions(top_k=2))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        print("HEAVY", heavy[:5], r.top_probs.shape, flush=True)
        print(w.pid(), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert parent.stdout.readline().strip() == "HEAVY [] (4, 5, 2)"
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
    finally:
        parent.kill()  # no clean-up of its own: the worker must notice by itself
        parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline and _state(child) not in ("gone", "Z"):
        time.sleep(0.2)
    assert _state(child) in ("gone", "Z"), "the worker outlived its parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "gone"


def test_a_killed_worker_is_named_and_the_next_request_restarts_it(monkeypatch):
    import ui.backends as backends

    monkeypatch.setenv("LAYERLENS_WORKER", "1")
    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "_loading", {})
    monkeypatch.setattr(backends, "_worker", None)
    try:
        b = backends.preload("tiny-llama").result(300)
        assert isinstance(b, WorkerBackend)
        first = b.worker.pid()
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WorkerDied, match="killed by SIGKILL"):
            for _ in range(50):  # the kill lands at once; a call sees it once the socket closes
                b.tokenize("ab")
                time.sleep(0.1)
        again = backends.preload("tiny-llama").result(300)  # the next request: a new worker, the model again
        assert again is not b and again.worker.pid() != first
        assert again.tokenize("ab") == ["a", "b"]
    finally:
        if backends._worker is not None:
            backends._worker.close()


def test_results_are_cached_where_the_worker_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_CACHE", str(tmp_path))
    w = Worker()
    try:
        b = w.load("tiny-llama")
        first = b.logit_lens(TEXT)
        entries = list((tmp_path / "results").glob("lens-*.safetensors"))
        assert len(entries) == 1
        same(b.logit_lens(TEXT), first)
    finally:
        w.close()


def test_a_saved_run_records_the_workers_results(tiny):
    from lens.runs import RecordingBackend
    from lens.runs.replay import ReplayBackend

    remote, here = tiny
    rec = RecordingBackend(remote)
    result = rec.logit_lens(TEXT)
    replay = ReplayBackend(rec.info(), rec.calls)
    same(replay.logit_lens(TEXT), here.logit_lens(TEXT))
    same(result, here.logit_lens(TEXT))


def test_a_message_naming_anything_but_results_is_refused():
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with pytest.raises(wire.Refused):
        wire.loads(pickle.dumps(Evil()))
    with pytest.raises(wire.Refused):  # a function of LayerLens itself is no result either
        wire.loads(pickle.dumps(("done", 1, __import__("lens.model.registry", fromlist=["x"]).known_models)))
    opts = LensOptions(top_k=3, target="a")
    assert wire.loads(wire.dumps(("call", 1, opts, np.arange(3, dtype=np.float32), float("nan")))
                      )[2] == opts


def test_bundled_model_lens_through_the_worker_is_exactly_in_process(worker):
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    remote = worker.load("smollm2-135m")
    here = local_backend(load_model("smollm2-135m"))
    for text, options in (("The capital of France is", LensOptions(top_k=10)),
                          ("The Eiffel Tower is in the city of", LensOptions(target=" Paris"))):
        same(remote.logit_lens(text, options), here.logit_lens(text, options))
    same(remote.info(), here.info())


HOME = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, "tests")
    from streamlit.testing.v1 import AppTest
    from plotly_json import charts
    at = AppTest.from_file("app.py", default_timeout=300)
    at.query_params["prompt"] = "The capital of France is"
    at.run()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
    print(json.dumps({"heavy": heavy[:3], "exception": [str(e.value) for e in at.exception],
                      "errors": [e.value for e in at.error], "chart": charts(at)[0]["data"]}))
""")


def _home(worker: str) -> dict:
    import json

    r = subprocess.run([sys.executable, "-c", HOME], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "LAYERLENS_WORKER": worker})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_home_page_through_the_worker_draws_what_it_draws_in_process():
    """The page's server with the model in the worker imports no torch, and its prediction chart is the one drawn
    with the model in its own process, number for number."""
    remote, here = _home("1"), _home("0")
    assert remote["heavy"] == [] and here["heavy"] != []
    assert remote["exception"] == remote["errors"] == here["exception"] == here["errors"] == []
    assert remote["chart"] == here["chart"]
    assert "Paris" in remote["chart"][0]["y"][-1]  # the top prediction, drawn last (at the top)


# ------------------------------------------------------------------ a server started again, before its model loads

def test_what_the_worker_kept_is_answered_before_the_model_loads(backend, tmp_path):
    """The worker keeps each recallable answer (``Remembering``) under the model's identity with the server's prompt
    limits; a stand-in with no model (``Recalling``) then answers the same calls with the same results, bit for bit,
    and loads the model only for a call it has no answer for. Other limits find nothing."""
    from lens.cache import ResultCache
    from lens.hosting import DEMO_LIMITS, Limits
    from lens.recall import Recalling, Remembering, dashboard_identity
    from lens.sampling.options import SampleOptions

    cache = ResultCache(tmp_path)
    key = dashboard_identity("smollm2-135m", "cpu", Limits())
    memory = Remembering(cache, key, backend.info())
    text = "The capital of France is"
    calls = [("tokenize", {"text": text}), ("logit_lens", {"text": text, "options": LensOptions(top_k=5)}),
             ("sample", {"text": text, "options": SampleOptions(temperature=0.8, top_k=20, seed=3, shown=8)}),
             ("head_summary", {"text": text})]
    kept = {}
    for name, kwargs in calls:
        kept[name] = getattr(backend, name)(**kwargs)
        memory.remember(name, kwargs, kept[name])

    def load():
        raise AssertionError("the model was loaded")

    stand_in = Recalling(load, cache, key, store=False, scoped=True)
    assert stand_in.can_recall
    same(stand_in.info(), backend.info())
    for name, kwargs in calls:  # the page passes them positionally: the same call
        same(getattr(stand_in, name)(*kwargs.values()), kept[name], name)
    with pytest.raises(AssertionError, match="was loaded"):
        stand_in.logit_lens("Another prompt")
    with pytest.raises(AssertionError, match="was loaded"):
        stand_in.generate(text)  # never recalled from a server's worker it did not run in
    demo = dashboard_identity("smollm2-135m", "cpu", DEMO_LIMITS)
    assert not Recalling(load, cache, demo, scoped=True).can_recall
    # A demo server's worker kept nothing of these; what the other server kept is not the demo's to answer (a prompt
    # it took may be over the demo's limit), nor is it a command's (lens/cli: the same model, unscoped).
    Remembering(cache, demo, backend.info())
    with pytest.raises(AssertionError, match="was loaded"):
        Recalling(load, cache, demo, store=False, scoped=True).logit_lens(text, LensOptions(top_k=5))
    with pytest.raises(AssertionError, match="was loaded"):
        Recalling(load, cache, key, store=False).logit_lens(text, LensOptions(top_k=5))
    assert dashboard_identity("tiny-llama", "cpu", Limits()) is None  # no files to witness it: never recalled


RELAUNCH = textwrap.dedent("""
    import json, os, sys, threading
    sys.path.insert(0, "tests")
    from streamlit.testing.v1 import AppTest
    from plotly_json import charts
    import ui.backends as backends
    if os.environ.get("NEVER_LOADS"):  # the model worker's load never ends: what the page shows is recalled
        backends._Load._load = lambda self: threading.Event().wait()
    at = AppTest.from_file("app.py", default_timeout=120)
    at.query_params["prompt"] = "The capital of France is"
    at.run()
    if not os.environ.get("NEVER_LOADS"):  # the worker keeps each answer just after sending it: until all three are
        import time                        # (tokens, lens, sample), before this server stops
        from pathlib import Path
        deadline = time.time() + 60
        while len(list(Path(os.environ["LAYERLENS_CACHE"], "results").glob("call-*"))) < 3 and time.time() < deadline:
            time.sleep(0.1)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
    print(json.dumps({"heavy": heavy[:3], "exception": [str(e.value) for e in at.exception],
                      "errors": [e.value for e in at.error], "chart": charts(at)[0]["data"],
                      "sampled": [m.value for m in at.markdown if "drew u =" in m.value][:1],
                      "caption": [c.value for c in at.caption][:1]}))
""")


def test_a_server_started_again_draws_the_home_page_while_its_model_loads(tmp_path):
    """``make run`` a second time: the home page the worker computed last time is drawn, every number the same,
    while the new worker's load has not finished (here it never does)."""
    import json

    (tmp_path / "models").symlink_to(Path(os.environ["LAYERLENS_CACHE"]) / "models", target_is_directory=True)

    def home(**env) -> dict:
        r = subprocess.run([sys.executable, "-c", RELAUNCH], cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "LAYERLENS_WORKER": "1",
                                "LAYERLENS_CACHE": str(tmp_path), **env})
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = home()
    again = home(NEVER_LOADS="1")
    assert first["exception"] == first["errors"] == again["exception"] == again["errors"] == []
    assert again["heavy"] == []
    for part in ("chart", "sampled", "caption"):
        assert again[part] == first[part] and first[part], part
    assert "Paris" in again["chart"][0]["y"][-1]


def test_with_nothing_kept_for_these_limits_the_page_waits_for_the_load(backend, tmp_path, monkeypatch):
    """No stand-in where the worker kept nothing for this model and these limits, or for a model without files."""
    import ui.backends as backends
    from lens.cache import ResultCache
    from lens.hosting import DEMO_LIMITS
    from lens.recall import Remembering, dashboard_identity

    monkeypatch.setenv("LAYERLENS_WORKER", "1")
    monkeypatch.setenv("LAYERLENS_CACHE", str(tmp_path))
    monkeypatch.setattr(backends, "_worker", None)  # (a worker's process starts only with its first call)
    assert backends.recalled(backends._Load("smollm2-135m")) is None
    Remembering(ResultCache(tmp_path / "results"), dashboard_identity("smollm2-135m", "cpu", DEMO_LIMITS),
                backend.info())
    assert backends.recalled(backends._Load("smollm2-135m")) is None  # kept under a demo's limits only
    Remembering(ResultCache(tmp_path / "results"), dashboard_identity("smollm2-135m", "cpu", backends.HOSTING.limits),
                backend.info())
    assert backends.recalled(backends._Load("smollm2-135m")).info() == backend.info()
    assert backends.recalled(backends._Load("tiny-llama")) is None
    monkeypatch.setenv("LAYERLENS_WORKER", "0")  # the model in the server's process: its answers are not kept
    assert backends.recalled(backends._Load("smollm2-135m")) is None


def test_the_worker_stops_a_call_its_caller_left_and_forgets_one_already_answered(monkeypatch):
    """A cancel reaches a call being answered (its asker is then gone: its computation stops at its next check); a
    cancel of a call already answered is dropped, not kept in the worker's set for ever."""
    from multiprocessing import Pipe

    from lens.jobs import checkpoint
    from lens.worker.child import Child

    release = threading.Event()

    class Slow:
        def wait(self):  # until released, or until its caller leaves
            while not release.wait(0.01):
                checkpoint()
            return "answered"

    class Os:  # the worker exits its process when its parent's end closes: here it ends its thread instead
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def _exit(code):
            raise Exited(code)

    class Exited(Exception):
        pass

    def serve():
        try:
            child.serve()
        except Exited:
            pass

    import lens.worker.child as child_module

    monkeypatch.setattr(child_module, "os", Os())
    ours, theirs = Pipe()
    child = Child(theirs, {})
    child.backends["m"] = Slow()
    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        _calls_and_cancels(child, ours, release)
    finally:
        ours.close()
        server.join(10)
    assert not server.is_alive()


def _calls_and_cancels(child, ours, release) -> None:
    def answer(timeout: float = 10.0):
        assert ours.poll(timeout), "no answer"
        return wire.loads(ours.recv_bytes())

    def settled():  # each call leaves the running set just after its answer is sent
        deadline = time.monotonic() + 10
        while child.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.running == set()

    ours.send_bytes(wire.dumps(("call", 1, "m", "wait", {}, {})))
    deadline = time.monotonic() + 10
    while 1 not in child.running and time.monotonic() < deadline:
        time.sleep(0.01)
    ours.send_bytes(wire.dumps(("cancel", 1)))
    kind, call_id, *_ = answer()
    assert (kind, call_id) == ("error", 1)  # its computation stopped: the caller had left
    settled()
    assert child.cancelled == set()

    release.set()
    ours.send_bytes(wire.dumps(("call", 2, "m", "wait", {}, {})))
    assert answer()[:3] == ("done", 2, "answered")
    ours.send_bytes(wire.dumps(("cancel", 2)))  # too late: the answer has gone
    ours.send_bytes(wire.dumps(("call", 3, "m", "wait", {}, {})))
    assert answer()[:3] == ("done", 3, "answered")  # (handled after the cancel: the worker reads in order)
    settled()
    assert child.cancelled == set()
