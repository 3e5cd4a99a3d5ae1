"""Make every first request go through app.py's router.

Streamlit sees a ``pages/`` folder and, until ``st.navigation`` has run once in
the process, serves its files directly ("multipage v1"): a first visit to
/logit_lens would then skip app.py's shared sidebar and page list. We switch the
process to the ``st.navigation`` router and rerun, which is what every later
request gets anyway.
"""
import streamlit as st


def use_app_router() -> None:
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the v1 mode: nothing to do
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()
