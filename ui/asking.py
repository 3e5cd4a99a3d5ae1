"""Who is asking: each script run's computations wait in the server's job queue (lens/jobs.py)
on behalf of its browser session, which sees its place in line, and leaves the line when it
closes its tab or asks for something else (Streamlit stops the old run at its next redraw)."""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

import streamlit as st

from lens.jobs import Asker, Cancelled, asking, place_text

log = logging.getLogger("layerlens")


def session_id() -> str | None:
    """This browser session's id (None outside a script run): who asks, for the server's line."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def _connected(session_id: str | None):
    def alive() -> bool:
        try:
            from streamlit.runtime import Runtime

            return session_id is None or not Runtime.exists() or Runtime.instance().is_active_session(session_id)
        except Exception:  # a Streamlit without this test: assume still there
            return True
    return alive


@contextlib.contextmanager
def for_this_session() -> Iterator[None]:
    """Around a page run: its computations wait in line as this session, with the place shown."""
    box, drawn, at = None, None, 0.0

    def on_wait(place: int, running: int) -> None:
        nonlocal box, drawn, at
        if place == 0:
            if box is not None:
                box.empty()
            return
        if box is None:
            box = st.empty()
        text = place_text(place, running)
        # Redrawn when it changes, and each second anyway: a run Streamlit has been asked to
        # stop (the visitor typed a new prompt) ends at its next redraw, leaving the line.
        if text != drawn or time.monotonic() - at >= 1.0:
            box.info(text, icon=":material/hourglass_top:")
            drawn, at = text, time.monotonic()

    sid = session_id()
    with asking(Asker(who=sid, on_wait=on_wait, alive=_connected(sid))):
        try:
            yield
        except Cancelled:  # the session has gone: nobody to show anything to
            log.info("a visitor left (session %s); the work they were waiting for was dropped", sid)
