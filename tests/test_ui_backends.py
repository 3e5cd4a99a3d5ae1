"""ui/backends.py: at most MAX_LOADED models, dropping the least recently used, never the one asked
for; one load per model however many sessions (or the launch warm-up) ask at once; a failed load is
reported to every waiter and tried again on the next request."""
import threading

import pytest

import ui.backends as backends


@pytest.fixture
def loads(monkeypatch):
    """Loads recorded instead of run; "slow" waits for the test's go, "bad" fails."""
    class Made(list):
        go = threading.Event()

    made = Made()
    go = made.go

    def fake_load(self):
        made.append(self.ref)
        if self.ref.startswith("slow"):
            assert go.wait(10)
        if self.ref.startswith("bad"):
            raise RuntimeError(f"cannot load {self.ref}")
        return f"backend:{self.ref}"

    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "_loading", {})
    monkeypatch.setattr(backends._Load, "_load", fake_load)
    return made


def test_least_recently_used_model_is_unloaded(loads, monkeypatch):
    monkeypatch.setattr(backends, "MAX_LOADED", 2)
    assert backends.get_backend("a") == "backend:a"
    assert backends.get_backend("b") == "backend:b"
    assert backends.get_backend("a") == "backend:a"  # a is now the most recently used
    assert backends.get_backend("c") == "backend:c"  # room is made by unloading b, not a
    assert backends.loaded_models() == ["a", "c"]
    assert loads == ["a", "b", "c"]
    assert backends.get_backend("b") == "backend:b"  # b is loaded again; a (least recent) goes
    assert backends.loaded_models() == ["c", "b"]
    assert loads == ["a", "b", "c", "b"]


def test_a_single_slot_still_serves_the_model_asked_for(loads, monkeypatch):
    monkeypatch.setattr(backends, "MAX_LOADED", 1)
    for ref in ("a", "b", "a"):
        assert backends.get_backend(ref) == f"backend:{ref}"
        assert backends.loaded_models() == [ref]


def test_sessions_asking_at_once_share_one_load(loads):
    got: list[str] = []
    sessions = [threading.Thread(target=lambda: got.append(backends.get_backend("slow"))) for _ in range(5)]
    for s in sessions:
        s.start()
    assert not loads.go.is_set() and backends.loaded_models() == []  # still loading
    loads.go.set()
    for s in sessions:
        s.join(10)
    assert got == ["backend:slow"] * 5
    assert loads == ["slow"]


def test_a_preload_is_picked_up_by_the_page(loads):
    future = backends.preload("slow-launch")
    loads.go.set()
    assert backends.get_backend("slow-launch") == "backend:slow-launch"
    assert future.result(5) == "backend:slow-launch"
    assert loads == ["slow-launch"]


def test_a_failed_load_reaches_every_waiter_and_is_retried(loads):
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cannot load bad"):
            backends.get_backend("bad")
    assert loads == ["bad", "bad"]  # nothing kept from the failure: the second request tried again
    assert backends.loaded_models() == []


class Busy(str):
    """A fake backend that says whether it is computing."""
    computing = False

    def busy(self):
        return self.computing


def test_a_model_still_computing_is_not_unloaded_until_idle(monkeypatch):
    made = {}

    def fake_load(self):
        made[self.ref] = Busy(f"backend:{self.ref}")
        return made[self.ref]

    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "_loading", {})
    monkeypatch.setattr(backends._Load, "_load", fake_load)
    monkeypatch.setattr(backends, "MAX_LOADED", 1)
    backends.get_backend("a")
    made["a"].computing = True  # a session is still computing with model a
    backends.get_backend("b")
    assert backends.loaded_models() == ["a", "b"]  # over the bound for now: a is in use
    made["a"].computing = False
    backends.get_backend("b")
    assert backends.loaded_models() == ["b"]  # a goes at the next request, once idle


def test_in_demo_mode_a_model_off_the_allowlist_is_refused_before_any_load(loads, monkeypatch):
    from lens.errors import LensError
    from lens.hosting import Hosting

    monkeypatch.setattr(backends, "HOSTING", Hosting(demo=True, models=("a",)))
    assert backends.get_backend("a") == "backend:a"
    for ref in ("/etc", "../../", "b", "gpt2", "/etc/x.gguf"):
        with pytest.raises(LensError, match="does not offer the model .* it offers a$"):
            backends.get_backend(ref)
        with pytest.raises(LensError):
            backends.preload(ref)
    assert loads == ["a"]


class Held(str):
    """A backend held by a model worker: alive until its worker ends, closed when unloaded."""

    def __new__(cls, ref):
        self = super().__new__(cls, ref)
        self.up, self.closed = True, False
        return self

    def alive(self):
        return self.up

    def close(self):
        self.closed = True


def test_a_model_whose_worker_ended_is_loaded_again_and_an_unloaded_one_is_closed(monkeypatch):
    made = []

    def fake_load(self):
        made.append(Held(f"backend:{self.ref}"))
        return made[-1]

    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "_loading", {})
    monkeypatch.setattr(backends._Load, "_load", fake_load)
    monkeypatch.setattr(backends, "MAX_LOADED", 1)
    first = backends.get_backend("a")
    assert backends.get_backend("a") is first  # alive: kept
    first.up = False  # its worker was killed
    second = backends.get_backend("a")
    assert second is not first and second == "backend:a" and len(made) == 2
    backends.get_backend("b")  # room for b: a is unloaded, and told so (its worker frees the memory)
    assert second.closed and backends.loaded_models() == ["b"]


def test_the_model_warmed_at_launch_is_the_pages_default(monkeypatch):
    from lens.hosting import Hosting
    import ui.state as state

    assert backends.default_model() == state.default_model()
    demo = Hosting(demo=True, models=("minilm-l6", "smollm2-135m"))
    monkeypatch.setattr(backends, "HOSTING", demo)
    monkeypatch.setattr(state, "HOSTING", demo)
    assert backends.default_model() == state.default_model() == "minilm-l6"


def test_the_worker_is_used_only_when_asked_for(monkeypatch):
    monkeypatch.delenv("LAYERLENS_WORKER", raising=False)
    assert not backends.use_worker()  # streamlit run app.py, the page tests: in this process
    monkeypatch.setenv("LAYERLENS_WORKER", "1")
    assert backends.use_worker()
    monkeypatch.setenv("LAYERLENS_WORKER", "0")
    assert not backends.use_worker()
