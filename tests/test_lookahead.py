"""Computing ahead while a prompt is typed (ui/lookahead.py): one computation at a time, of the newest text; one
overtaken by newer typing or by a run of another prompt leaves (as a closed tab leaves the worker's line)."""
from __future__ import annotations

import threading
import time

from lens.jobs import Cancelled, checkpoint
from ui.lookahead import Ahead


class Recorder:
    """A computation that runs until released (or until its asker leaves), recording what it was asked."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.left: list[str] = []
        self.finished: list[str] = []
        self.release = threading.Event()

    def __call__(self, text: str) -> None:
        self.started.append(text)
        try:
            while not self.release.wait(0.01):
                checkpoint()
        except Cancelled:
            self.left.append(text)
            raise
        self.finished.append(text)


def until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_text_typed_is_computed_in_the_background():
    ahead, rec = Ahead(), Recorder()
    rec.release.set()
    ahead.ask("The capital of France is", rec)
    until(lambda: not ahead.busy())
    assert rec.finished == ["The capital of France is"] and ahead.done == ["The capital of France is"]


def test_newer_typing_overtakes_the_running_one_and_only_the_newest_follows():
    ahead, rec = Ahead(), Recorder()
    ahead.ask("The cap", rec)
    until(lambda: rec.started == ["The cap"])
    ahead.ask("The capital of", rec)  # waits: the running one is overtaken and leaves
    ahead.ask("The capital of Peru is", rec)  # replaces the one waiting, which never starts
    until(lambda: rec.left == ["The cap"])
    until(lambda: len(rec.started) == 2)
    rec.release.set()
    until(lambda: not ahead.busy())
    assert rec.started == ["The cap", "The capital of Peru is"]
    assert rec.finished == ["The capital of Peru is"] and ahead.done == ["The capital of Peru is"]


def test_a_run_of_the_same_prompt_keeps_it_and_a_run_of_another_ends_it():
    ahead, rec = Ahead(), Recorder()
    ahead.showing("The capital of France is")
    ahead.ask("The capital of Peru is", rec)
    until(lambda: rec.started == ["The capital of Peru is"])
    ahead.showing("The capital of Peru is")  # Ctrl+Enter on it: the page's run joins it in the worker
    time.sleep(0.1)
    assert rec.left == []
    ahead.showing("The capital of Peru is")  # a rerun of that prompt (a switch) leaves it be too
    time.sleep(0.1)
    assert rec.left == []
    rec.release.set()
    until(lambda: not ahead.busy())
    assert rec.finished == ["The capital of Peru is"]

    rec2 = Recorder()
    ahead.ask("The capital of Chile is", rec2)
    until(lambda: rec2.started == ["The capital of Chile is"])
    ahead.showing("Something else entirely")  # the person ran another prompt: this look-ahead is of no use
    until(lambda: rec2.left == ["The capital of Chile is"])
    until(lambda: not ahead.busy())
    assert rec2.finished == [] and "The capital of Chile is" not in ahead.done


def test_a_failing_look_ahead_says_nothing_and_the_next_one_runs():
    ahead, calls = Ahead(), []

    def compute(text: str) -> None:
        calls.append(text)
        if text == "bad":
            raise ValueError("a prompt too long, say")

    ahead.ask("bad", compute)
    until(lambda: not ahead.busy())
    ahead.ask("good", compute)
    until(lambda: not ahead.busy())
    assert calls == ["bad", "good"] and ahead.done == ["good"]


def test_a_page_computes_ahead_what_its_link_with_the_typed_prompt_draws(bundled, tmp_path):
    """A page that says nothing itself is computed ahead as its link with the typed prompt draws it, where its view
    reads the sidebar's prompt; not the tour, a suite's page or the experiment's pair."""
    from lens.cache import ResultCache
    from lens.engine_backend import local_backend
    from lens.talks.format import scene_from_dict
    from lens.talks.links import draw
    from ui.lookahead import view_computation

    backend = local_backend(bundled, ResultCache(tmp_path / "results"))
    shown = "The capital of France is"
    assert view_computation("tour", {"step": "2"}, shown, lambda: backend) is None
    assert view_computation("suites", {}, shown, lambda: backend) is None
    assert view_computation("patching", {}, shown, lambda: backend) is None
    assert view_computation("attention", {"view": "Heads"}, "", lambda: backend) is None  # no prompt yet
    query = {"view": "Heads", "head_metric": "induction"}
    compute = view_computation("attention", query, shown, lambda: backend)
    assert compute is not None
    typed = "The capital of Peru is"
    before = set((tmp_path / "results").glob("*.safetensors")) if (tmp_path / "results").exists() else set()
    compute(typed)
    written = set((tmp_path / "results").glob("*.safetensors")) - before
    assert written, "nothing was computed ahead"
    # What the page then draws for that prompt is read from the cache: nothing new is computed.
    drawn, _ = draw(backend, scene_from_dict({"view": "attention", "params": {**query, "prompt": typed}}))
    assert drawn.texts == typed
    assert set((tmp_path / "results").glob("*.safetensors")) - before == written
