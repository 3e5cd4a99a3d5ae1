"""Every request goes through app.py's router, so every view has the shared sidebar.

Streamlit sees the ``pages/`` folder and, until ``st.navigation`` has run once in
the process, serves its files directly ("multipage v1"): a first visit to
/logit_lens then runs only that file, without app.py's sidebar, whose widgets hold
the model and prompt from the URL. Streamlit 1.67 has no supported switch for
this (the folder's name is what turns it on), so we set its class flag
``PagesManager.uses_pages_directory`` to False and rerun the request, which then
goes through app.py.

The check is per script run, not per process: on a freshly started server several
first requests arrive together, and only the first would see the flag still set.
app.py marks the runs it routes (``routed``); a page run without that mark is
rerouted, whichever request flipped the flag. tests/test_browser.py opens deep
links on a cold server and fails if Streamlit stops honouring this.

The browser's Back and Forward buttons (history navigation) show what their URL
shows a first visit (``fresh_on_history_navigation``).
"""
from __future__ import annotations

import contextlib
import logging
import threading

import streamlit as st

log = logging.getLogger("layerlens")
_run = threading.local()  # Streamlit runs each session's script on a thread of its own
_UNROUTED = "_layerlens_unrouted_runs"


def _pages_directory_mode() -> bool:
    """Whether this Streamlit still serves ``pages/`` files directly; switches that off."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the v1 mode: nothing to do
        return False
    on = bool(getattr(PagesManager, "uses_pages_directory", False))
    if on:
        PagesManager.uses_pages_directory = False
    return on


def start_app() -> None:
    """At the top of app.py: a run in the v1 mode (app.py served as one of its pages) is rerun
    in the router mode. (A rerun before ``st.navigation`` keeps the URL's page: Streamlit
    resolves it again on the rerun.)"""
    if _pages_directory_mode():
        st.rerun()


def fresh_on_history_navigation() -> None:
    """At the top of app.py: a run the browser's Back or Forward button started shows what its URL shows a first
    visit. Streamlit seeds the URL-bound widgets from the URL on such a run, but the session's other state (what a
    page set itself, from a link's options or its own defaults) would stay that of the view left, and a URL-bound
    widget whose page sets it when the URL does not would fall to its default instead: the address bar would then
    name one view while the page showed another. So the session starts afresh, as on a new visit to the URL.
    (Everything a view shows is in its URL; saved runs and talks are on disk, not in the session.) One thing the
    server cannot reset: where Back or Forward stays on the same page, a box that stays on it keeps, in the browser,
    what was last typed or picked in it until it is changed again; the charts follow the URL."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not getattr(ctx, "is_history_navigation", False):
        return
    st.session_state.clear()
    ctx.is_history_navigation = False  # the widgets then take the URL's values, or the page's, as on a first visit


@contextlib.contextmanager
def routed():
    """Around ``navigation.run()`` in app.py: the page runs inside the app's router."""
    _run.routed = True
    st.session_state[_UNROUTED] = 0
    try:
        yield
    finally:
        _run.routed = False


def require_app_router() -> None:
    """At the top of every page: a run that did not come through app.py is rerun through it."""
    if getattr(_run, "routed", False):
        return
    _pages_directory_mode()
    n = st.session_state.get(_UNROUTED, 0)
    if n >= 2:  # rerouting did not help: show the page as it is rather than loop
        log.warning("a page ran outside app.py's router twice in a row; Streamlit's routing may have changed")
        return
    st.session_state[_UNROUTED] = n + 1
    st.rerun()
