"""The job queue (lens/jobs.py) and its use by the backend: first come first served with the
place in line reported, a bounded line, a per-asker rate, askers who leave dropped from the line
(and their half-done shared work taken over by whoever waits for it), nested jobs run at once, and work asked
ahead of need (a look-ahead) giving way to other askers'."""
from __future__ import annotations

import threading
import time

import pytest

from lens.errors import LensError
from lens.hosting import Limits
from lens.jobs import Asker, Busy, Cancelled, JobQueue, asking, place_text
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.options import LensOptions


def blocker():
    """A job that runs until released; ``started`` is set once it runs."""
    started, release = threading.Event(), threading.Event()

    def job():
        started.set()
        assert release.wait(10)
        return "done"
    return job, started, release


def in_thread(fn, *args):
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_until(cond, timeout=5.0):
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.01)


def test_first_come_first_served_with_places_reported():
    q = JobQueue(slots=1)
    job, started, release = blocker()
    first, _ = in_thread(q.run, job)
    assert started.wait(5)
    order, seen = [], {1: [], 2: []}

    def waiter(n):
        with asking(Asker(who=f"s{n}", on_wait=lambda place, running: seen[n].append((place, running)))):
            return q.run(lambda: order.append(n) or n)
    second, out2 = in_thread(waiter, 1)
    wait_until(lambda: q.status() == (1, 1))
    third, out3 = in_thread(waiter, 2)
    wait_until(lambda: q.status() == (1, 2))
    wait_until(lambda: (2, 1) in seen[2])
    release.set()
    for t in (first, second, third):
        t.join(5)
    assert order == [1, 2] and out2["value"] == 1 and out3["value"] == 2
    assert (1, 1) in seen[1] and (2, 1) in seen[2]  # 1st and 2nd in line behind one running job
    assert seen[1][-1][0] == 0 and seen[2][-1][0] == 0  # each told when it started
    assert q.status() == (0, 0)


def test_the_line_is_bounded():
    q = JobQueue(slots=1, max_waiting=1)
    job, started, release = blocker()
    first, _ = in_thread(q.run, job)
    assert started.wait(5)
    second, out = in_thread(q.run, lambda: "second")
    wait_until(lambda: q.status() == (1, 1))
    with pytest.raises(Busy, match="busy .1 computations waiting"):
        q.run(lambda: "third")
    release.set()
    first.join(5), second.join(5)
    assert out["value"] == "second"


def test_each_asker_has_a_rate():
    q = JobQueue(rate_per_minute=3)
    with asking(Asker(who="a")):
        for _ in range(3):
            q.run(lambda: None)
        with pytest.raises(Busy, match="started 3 new computations in the last minute"):
            q.run(lambda: None)
    with asking(Asker(who="b")):
        q.run(lambda: None)  # another visitor is not held back
    for _ in range(10):
        q.run(lambda: None)  # nor the server's own work (no name)


def test_an_asker_who_leaves_is_dropped_from_the_line():
    q = JobQueue(slots=1)
    job, started, release = blocker()
    first, _ = in_thread(q.run, job)
    assert started.wait(5)
    here = threading.Event()
    here.set()
    ran = []

    def leaver():
        with asking(Asker(who="x", alive=here.is_set)):
            return q.run(lambda: ran.append("leaver"))
    t, out = in_thread(leaver)
    wait_until(lambda: q.status() == (1, 1))
    here.clear()  # the tab is closed
    t.join(5)
    assert isinstance(out.get("error"), Cancelled) and q.status() == (1, 0)
    release.set()
    first.join(5)
    assert ran == [] and q.run(lambda: "next") == "next"


def checking(until_set: threading.Event, log: list, name: str):
    """A job that calls checkpoint() until ``until_set`` (or until it is stopped), logging how it ended."""
    from lens.jobs import checkpoint

    def job():
        log.append(f"{name} started")
        try:
            while not until_set.wait(0.01):
                checkpoint()
        except Cancelled:
            log.append(f"{name} stopped")
            raise
        log.append(f"{name} finished")
    return job


def run_as(q: JobQueue, asker: Asker, job):
    """``q.run(job)`` in a thread of its own, on behalf of ``asker`` (a thread does not inherit who asks)."""
    def run():
        with asking(asker):
            return q.run(job)
    return in_thread(run)


def test_a_look_ahead_waits_behind_other_askers_who_come_after_it():
    q = JobQueue(slots=1)
    job, started, release = blocker()
    first, _ = in_thread(q.run, job)
    assert started.wait(5)
    order, places = [], []
    ahead, out_ahead = run_as(q, Asker(who="typist", ahead=True), lambda: order.append("look-ahead"))
    wait_until(lambda: q.status() == (1, 1))
    other, out_other = run_as(q, Asker(who="visitor", on_wait=lambda p, r: places.append(p)),
                              lambda: order.append("visitor's run"))
    wait_until(lambda: q.status() == (1, 2) and places)
    release.set()
    for t in (first, ahead, other):
        t.join(5)
    assert order == ["visitor's run", "look-ahead"], order
    assert places[0] == 1  # the look-ahead in line before it counts in no one's place
    assert "error" not in out_ahead and "error" not in out_other and q.status() == (0, 0)


def test_a_look_ahead_joins_no_line_another_asker_waits_in():
    q = JobQueue(slots=1)
    job, started, release = blocker()
    first, _ = in_thread(q.run, job)
    assert started.wait(5)
    waiting, _ = run_as(q, Asker(who="visitor"), lambda: "visitor's run")
    wait_until(lambda: q.status() == (1, 1))
    with asking(Asker(who="typist", ahead=True)), pytest.raises(Busy, match="nothing is computed ahead"):
        q.run(lambda: "look-ahead")
    # the same asker's own run in line is no reason to refuse its look-ahead (it waits behind the run)
    mine, out = run_as(q, Asker(who="visitor", ahead=True), lambda: "visitor's look-ahead")
    wait_until(lambda: q.status() == (1, 2))
    release.set()
    for t in (first, waiting, mine):
        t.join(5)
    assert out["value"] == "visitor's look-ahead"


def test_a_running_look_ahead_stops_for_another_askers_run_but_not_for_its_own():
    q = JobQueue(slots=1)
    log, done = [], threading.Event()
    ahead, out = run_as(q, Asker(who="typist", ahead=True), checking(done, log, "look-ahead"))
    wait_until(lambda: log == ["look-ahead started"])
    # the typist's own run: it waits for its look-ahead
    own, own_out = run_as(q, Asker(who="typist"), lambda: log.append("typist's run"))
    wait_until(lambda: q.status() == (1, 1))
    time.sleep(0.1)
    assert log == ["look-ahead started"]
    done.set()
    ahead.join(5), own.join(5)
    assert log == ["look-ahead started", "look-ahead finished", "typist's run"], log

    log.clear()
    done.clear()
    ahead, out = run_as(q, Asker(who="typist", ahead=True), checking(done, log, "look-ahead"))
    wait_until(lambda: log == ["look-ahead started"])
    other, other_out = run_as(q, Asker(who="visitor"), lambda: log.append("visitor's run") or "drawn")
    other.join(5)
    ahead.join(5)
    assert log == ["look-ahead started", "look-ahead stopped", "visitor's run"], log
    assert isinstance(out.get("error"), Cancelled) and other_out["value"] == "drawn"
    assert q.status() == (0, 0)


def test_a_look_ahead_counts_in_no_rate():
    q = JobQueue(rate_per_minute=2)
    with asking(Asker(who="typist", ahead=True)):
        for _ in range(5):
            q.run(lambda: None)
    with asking(Asker(who="typist")):
        q.run(lambda: None)
        q.run(lambda: None)  # both of the typist's runs of this minute are still theirs


def test_a_job_inside_a_job_runs_at_once():
    q = JobQueue(slots=1)
    assert q.run(lambda: q.run(lambda: "inner")) == "inner"


def test_place_text_reads_well():
    assert place_text(1, 1) == ("The server is busy: you are 1st in line (1 computation running, 0 waiting ahead "
                                "of yours). Your chart follows.")
    assert "2nd" in place_text(2, 1) and "3rd" in place_text(3, 2) and "11th" in place_text(11, 1)
    assert "22nd" in place_text(22, 1)


# ---- through the backend ----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama():
    return load_model("tiny-llama")


def test_work_left_half_done_by_an_asker_who_left_is_taken_over(tiny_llama, monkeypatch):
    import lens.engine_backend as backend_mod

    be = local_backend(tiny_llama, None, jobs=JobQueue())
    real, entered, go = backend_mod.logit_lens, threading.Event(), threading.Event()
    calls = []

    def slow(*a, **k):
        calls.append(1)
        entered.set()
        assert go.wait(10)
        from lens.jobs import checkpoint
        checkpoint()  # the leaver's computation notices here that it has gone
        return real(*a, **k)

    monkeypatch.setattr(backend_mod, "logit_lens", slow)
    here = threading.Event()
    here.set()

    def leaver():
        with asking(Asker(who="leaver", alive=here.is_set)):
            return be.logit_lens("hello there", LensOptions(top_k=2))
    t1, out1 = in_thread(leaver)
    assert entered.wait(10)
    t2, out2 = in_thread(lambda: be.logit_lens("hello there", LensOptions(top_k=2)))
    time.sleep(0.3)  # the second caller now waits for the first's result
    here.clear()
    go.set()
    t1.join(10), t2.join(10)
    assert isinstance(out1.get("error"), Cancelled)
    assert len(calls) == 2  # the waiter computed it itself rather than fail
    want = local_backend(tiny_llama, None).logit_lens("hello there", LensOptions(top_k=2))
    got = out2["value"]
    assert got.top_tokens == want.top_tokens and (got.top_probs == want.top_probs).all()


def test_corpus_caps_are_checked_before_any_forward_pass(tiny_llama, monkeypatch):
    be = local_backend(tiny_llama, None, limits=Limits(max_prompt_tokens=64, max_corpus_texts=3, max_corpus_tokens=40))
    passes = []
    real = be._capture
    monkeypatch.setattr(be, "_capture", lambda *a, **k: passes.append(1) or real(*a, **k))
    with pytest.raises(LensError, match="4 sentences; at most 3"):
        be.projection(["a b", "c d", "e f", "g h"])
    with pytest.raises(LensError, match="tokens in all; at most 40"):
        be.projection(["x" * 15, "y" * 15, "z" * 15])  # one byte-level token per character
    with pytest.raises(LensError, match="at most 64 are allowed here"):
        be.logit_lens("w" * 80)
    assert passes == []
    assert be.info().corpus_limit == 3 and be.info().corpus_token_limit == 40 and be.info().token_limit == 64
    be.projection(["a b", "c d"])  # within the caps: runs
    assert passes == [1, 1]
