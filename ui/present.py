"""Presenter mode (``?present=1`` on any page): no sidebar or Streamlit chrome, large type,
charts sized to fit a 1280×720 screen; Esc (or the button at the bottom) leaves it."""
from __future__ import annotations

import streamlit as st

from lens.figures.style import SCREEN_WIDTH, for_slides

KEY = "present"
SCREEN_CHART = 450  # px: the tallest chart in presenter mode (a 720 px screen, less the controls)
TOUR_CHART = (370, 470)  # px: a tour step's charts, presenting / not

_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stExpandSidebarButton"] { display: none !important; }
[data-testid="stMainBlockContainer"] { padding: 0.6rem 2rem 0 2rem !important; max-width: 100% !important; }
[data-testid="stMain"] { font-size: 18px; color: #000; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 18px; }
/* No text under 18 px on a projector: labels, captions, buttons, inputs, tabs and menus grow to it (a child
   keeps a larger size it inherits: 1em is its parent's size). Headings keep their own sizes. */
[data-testid="stMain"] :is(p, li, label, span, div, button, input, textarea, code, small, td, th, a, kbd),
[data-baseweb="popover"] :is(p, li, label, span, div, button, input, textarea, code, small, a) {
  font-size: max(18px, 1em) !important; }
[data-testid="stMarkdownContainer"] h1, h1 { font-size: 1.6rem !important; padding: 0.1rem 0 !important; }
[data-testid="stVerticalBlock"] { gap: 0.55rem; }
/* The speaker explains; the "What am I looking at?" texts stay in the normal view and the exports. */
[data-testid="stExpander"], [data-testid="stDownloadButton"], .st-key-drill-down,
.st-key-home-views { display: none !important; }
.presenter-table { width: 100%; border-collapse: collapse; }
.presenter-table th, .presenter-table td { padding: 0.15rem 0.6rem; border-bottom: 1px solid #ddd; text-align: left; }
.st-key-present-off { position: fixed; bottom: 0.4rem; right: 1rem; z-index: 1000; width: auto !important; }
</style>"""


def is_on() -> bool:
    return st.query_params.get(KEY, "") in ("1", "true", "yes", "on")


def _set(on: bool) -> None:
    if on:
        st.query_params[KEY] = "1"
    elif KEY in st.query_params:
        del st.query_params[KEY]


def apply() -> None:
    """At the top of every run: the presenter styles, when on."""
    if is_on():
        st.html(_CSS)


def sidebar_switch() -> None:
    st.button("Presenter mode", icon=":material/slideshow:", on_click=_set, args=(True,), key="present-on",
              help="Full screen for a talk: no sidebar, large type, every view on one 1280×720 screen. "
                   "Esc leaves it. Or add ?present=1 to any link.")


def exit_button() -> None:
    """At the bottom of every page in presenter mode (Esc works from anywhere)."""
    if is_on():
        st.button("Leave presenter mode", icon=":material/close:", on_click=_set, args=(False,), type="tertiary",
                  shortcut="Esc", key="present-off")


def styled(fig, share: float = 1.0):
    """A figure as this mode draws it: restyled for slides when presenting (``share``: the part of the
    screen's width the chart has, 0.5 in one of two columns)."""
    return for_slides(fig, SCREEN_CHART, width=int(SCREEN_WIDTH * share)) if is_on() else fig


def tour_chart_height() -> int:
    return TOUR_CHART[0] if is_on() else TOUR_CHART[1]
