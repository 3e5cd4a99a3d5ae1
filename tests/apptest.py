"""A page of the dashboard run in-process (Streamlit's AppTest), as a first visit opens it from a link."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(path: str | None, timeout: float = 600, **params) -> AppTest:
    """``path`` (e.g. "pages/patching.py"; None: the home page) opened with these URL query parameters, run once;
    fails the test on an exception shown in the page."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if path:
        at.switch_page(path)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
