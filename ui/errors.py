"""Show problems in the page, never as a Python traceback."""
from __future__ import annotations

import contextlib
import logging

import streamlit as st

from lens.errors import LensError

log = logging.getLogger("layerlens")


@contextlib.contextmanager
def shown_in_page(what: str, stop: bool = True):
    """Run a block; a LensError becomes a message in the page, anything else a short error.

    ``stop=False`` keeps the rest of the page running: for one section of a page with several.
    """
    try:
        yield
    except LensError as exc:
        st.error(f"{what}: {exc}", icon="⚠️")
        if stop:
            st.stop()
    except Exception as exc:  # keep the app usable whatever went wrong
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}). "
                 "Try another prompt or model; the details are in the server log.", icon="⚠️")
        if stop:
            st.stop()
