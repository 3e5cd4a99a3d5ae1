"""ui/backends.py keeps at most MAX_LOADED models, dropping the least recently used, never the one asked for."""
import ui.backends as backends


def test_least_recently_used_model_is_unloaded(monkeypatch):
    loads = []
    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "MAX_LOADED", 2)
    monkeypatch.setattr(backends, "_load", lambda ref: loads.append(ref) or f"backend:{ref}")

    assert backends.get_backend("a") == "backend:a"
    assert backends.get_backend("b") == "backend:b"
    assert backends.get_backend("a") == "backend:a"  # a is now the most recently used
    assert backends.get_backend("c") == "backend:c"  # room is made by unloading b, not a
    assert backends.loaded_models() == ["a", "c"]
    assert loads == ["a", "b", "c"]
    assert backends.get_backend("b") == "backend:b"  # b is loaded again; a (least recent) goes
    assert backends.loaded_models() == ["c", "b"]
    assert loads == ["a", "b", "c", "b"]


def test_a_single_slot_still_serves_the_model_asked_for(monkeypatch):
    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "MAX_LOADED", 1)
    monkeypatch.setattr(backends, "_load", lambda ref: f"backend:{ref}")
    for ref in ("a", "b", "a"):
        assert backends.get_backend(ref) == f"backend:{ref}"
        assert backends.loaded_models() == [ref]
