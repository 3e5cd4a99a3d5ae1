"""Computing ahead: while a person types a prompt, the page's computation for the text typed so far starts on the
model worker once they pause (``PAUSE_MS``), or at once when a whole text is pasted or dropped in, so that
Ctrl+Enter finds it done or under way: the worker's Computations join a call already running, its results cache
answers one that has finished (lens/computations.py).

The browser half (ui/live's "lookahead" kind) watches the sidebar's prompt box and reports a pause's text as a
trigger value; a fragment hears it, so nothing on the page is redrawn. Each page says what it will ask for a
prompt (``register``: the lens page its lens, the home page its prediction); a page that says nothing is not
computed ahead. One look-ahead at a time per browser session, and only the newest text: a look-ahead overtaken by
newer typing, or by a run of another prompt, leaves the worker's line as a closed tab does (``Cancelled``), and
every look-ahead gives way to other sessions' runs: it waits behind them and stops for them (lens/jobs.py). Never
on a demo server: its time is every visitor's, and a look-ahead spends it on a chart that may never be asked for."""
from __future__ import annotations

import threading
from typing import Callable

import streamlit as st

from lens.jobs import Asker, asking

from . import live
from .asking import session_id
from .backends import HOSTING

KEY = "_look_ahead"  # session state: the running page's function of a typed prompt
AHEAD_KEY = "_look_ahead_worker"  # session state: the session's Ahead
LISTENER = "layerlens-lookahead"  # the browser half's key
PAUSE_MS = 250  # typing paused this long: the text so far is computed


class Ahead:
    """One browser session's look-ahead: at most one computation at a time, always of the newest text asked.
    ``who``: the session, as the server's line knows it: its look-ahead gives way to everybody else's runs
    (lens/jobs.py), and its own run waits for it."""

    def __init__(self, who: str | None = None) -> None:
        self.who = who
        self._lock = threading.Lock()
        self._next: tuple[str, Callable[[str], object]] | None = None  # asked, not started
        self._running: str | None = None
        self._shown = 0  # prompts the page has run for so far (``showing``), and the last of them
        self._shown_text: str | None = None
        self.done: list[str] = []  # the last few texts computed ahead, latest last

    def ask(self, text: str, compute: Callable[[str], object]) -> None:
        """Compute ``compute(text)`` in the background, after (or instead of) what was asked before."""
        with self._lock:
            self._next = (text, compute)
            if self._running is not None:
                return  # the running one sees that it is overtaken and leaves; this one follows
            self._running = text
        threading.Thread(target=self._work, name="look-ahead", daemon=True).start()

    def showing(self, text: str) -> None:
        """The page runs for ``text``: a look-ahead of another text is of no use any more."""
        with self._lock:
            if text != self._shown_text:  # (a rerun of the same prompt, as a switch causes, leaves it be)
                self._shown += 1
                self._shown_text = text
            if self._next is not None and self._next[0] != text:
                self._next = None

    def busy(self) -> bool:
        with self._lock:
            return self._running is not None

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._next is None:
                    self._running = None
                    return
                text, compute = self._next
                self._next, self._running, since = None, text, self._shown
            try:
                with asking(Asker(who=self.who, alive=lambda: not self._left(text, since), ahead=True)):
                    compute(text)
                with self._lock:
                    self.done = (self.done + [text])[-8:]
            except BaseException:  # noqa: BLE001 - a look-ahead that failed or left was only not ready: the run says why
                pass

    def _left(self, text: str, since: int) -> bool:
        """Whether the look-ahead of ``text`` (started after ``since`` page runs) is of no use any more: newer
        typing waits, or the page has since run for another prompt."""
        with self._lock:
            return (self._next is not None and self._next[0] != text) or (
                self._shown != since and self._shown_text != text)


def _ahead() -> Ahead:
    ahead = st.session_state.get(AHEAD_KEY)
    if ahead is None:
        ahead = st.session_state[AHEAD_KEY] = Ahead(session_id())
    return ahead


def register(compute: Callable[[str], object], shown: str) -> None:
    """The page's run: what it asks for a prompt (``compute(text)``, its results discarded), and the prompt it
    shows now."""
    st.session_state[KEY] = compute
    _ahead().showing(shown)


def view_computation(page: str, query: dict[str, str], shown: str, backend_of: Callable[[], object]
                     ) -> Callable[[str], None] | None:
    """What page ``page`` (its URL path) with URL ``query`` computes for a typed prompt: its view as its link with
    that prompt draws it (the way a talk's scene draws a link: lens.talks.links), when the view reads the
    sidebar's prompt (``shown`` now). None for a page that is no view (the tour, a talk, saved runs) or whose chart
    reads other texts (a suite, the experiment's pair), or a link its view refuses."""
    from lens.errors import LensError
    from lens.talks.format import scene_from_dict
    from lens.talks.links import page_params, resolve
    from lens.views import render_view

    def scene(text: str):
        return scene_from_dict({"view": page, "params": {**query, "prompt": text}}, "this page")

    try:
        if not page or not shown or resolve(scene(shown)).texts != shown:
            return None
    except (LensError, ValueError, KeyError):  # the page said why
        return None
    backend = backend_of()

    def compute(typed: str) -> None:
        s = scene(typed)
        r = resolve(s)
        if r.texts == typed:
            render_view(backend, r.view, r.texts, **page_params(backend, s, r))
    return compute


def register_view(page: str, backend_of: Callable[[], object], shown: str) -> None:
    """After a page's run, where it registered nothing: ``view_computation`` of it, if any."""
    from lens.talks.urls import MULTI

    if KEY in st.session_state or HOSTING.demo or not live.available():
        return
    query = {k: "\n".join(st.query_params.get_all(k)) if k in MULTI else st.query_params.get(k)
             for k in st.query_params}
    compute = view_computation(page, query, shown, backend_of)
    if compute is not None:
        register(compute, shown)


def forget() -> None:
    """Before a page runs: it registers again, or is not computed ahead."""
    st.session_state.pop(KEY, None)


def _typed() -> None:
    """The browser reported a pause in typing (before the fragment reruns)."""
    text = live.trigger(LISTENER, "typed")
    compute = st.session_state.get(KEY)
    if isinstance(text, str) and text.strip() and compute is not None:
        _ahead().ask(text, compute)


@st.fragment
def listener(label: str, shown: str) -> None:
    """The browser half, in the sidebar under the prompt box labelled ``label`` (drawn as nothing; ``shown``: the
    prompt the page shows): a pause in typing reruns this fragment only, which starts the look-ahead."""
    if HOSTING.demo or not live.available():
        return
    live.lookahead(LISTENER, label, PAUSE_MS, shown, on_typed=_typed)
