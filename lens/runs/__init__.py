"""Saved runs: a view's results kept with the exact prompt, token ids, model and options, and a note.

Runs are user data, not cache: they live in one SQLite database outside ``cache/`` (``store.py``), and a
saved run opens without recomputing (``replay.py``: the view is drawn again from the saved results).
"""
from .replay import RecordingBackend, ReplayBackend
from .store import Run, RunStore, default_runs_path

__all__ = ["RecordingBackend", "ReplayBackend", "Run", "RunStore", "default_runs_path", "save_view", "open_view"]


def save_view(store: RunStore, backend, view: str, texts, params: dict, name: str = "", note: str = "") -> Run:
    """Draw view ``view`` (results come from the backend's cache when it was just shown) and save what it
    asked of the backend as a new run; the run, with its id."""
    from ..views import render_view
    from ..views.entry import SUITE

    recording = RecordingBackend(backend)
    rendered = render_view(recording, view, texts, **params)
    info = backend.info()
    if rendered.view.reads == SUITE:  # the suite's JSONL: its prompts are what the model read
        from ..views.suites import suite_prompts

        text_list = suite_prompts(texts)
    else:
        text_list = [texts] if isinstance(texts, str) else list(texts)
    token_ids = [backend.token_ids(t) for t in text_list]
    return store.save(Run(
        id=None, name=name or _default_name(rendered.view.title, text_list), view=view, model=info.name,
        fingerprint=info.fingerprint, texts=texts if isinstance(texts, str) else list(texts), token_ids=token_ids,
        params=dict(rendered.params), info=info, calls=recording.calls, note=note))


def open_view(run: Run):
    """The saved run's view drawn from its saved results (nothing recomputed): a ``RenderedView``."""
    from ..views import render_view

    return render_view(ReplayBackend(run.info, run.calls), run.view, run.texts, **run.params)


def _default_name(title: str, texts: list[str]) -> str:
    first = " ".join(texts[0].split())
    more = f" (+{len(texts) - 1})" if len(texts) > 2 else ""  # a suite: its first prompt and how many more
    return f"{title}: {first[:40]}{'…' if len(first) > 40 else ''}{more}"
