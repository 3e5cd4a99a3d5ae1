"""Guided tour: one short story per step, each with a live chart of the bundled model.

``?step=N`` opens step N (1-based); the arrow keys and the buttons move through the steps.
``&try=…`` runs the step on a speaker's own prompt ("Try it"), so that a link shows the edited step.
"""
from html import escape

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.style import SCREEN_WIDTH, for_slides  # noqa: E402
from lens.model.registry import DEFAULT_MODEL  # noqa: E402
from lens.tour import (STEPS, editable, handout, notice_for, parse_step, render_step, step_link,  # noqa: E402
                       titled)
from ui import present  # noqa: E402
from ui.backends import get_backend  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import PLOT_CONFIG, chart  # noqa: E402

N = len(STEPS)
TRY = "try"  # the URL parameter holding the speaker's own prompt for this step
# The shortcut hint that Streamlit draws after a button's label repeats the label's arrow: hidden.
NAV_CSS = "<style>.st-key-tour-prev kbd, .st-key-tour-next kbd { display: none !important; }</style>"


def _prompt_key(n: int) -> str:
    return f"tour-prompt-{n}"


def go(n: int) -> None:
    """To step ``n``, on its own prompt (an edit belongs to the step it was made on)."""
    st.query_params["step"] = str(min(max(n, 1), N))
    if TRY in st.query_params:
        del st.query_params[TRY]
    for k in range(1, N + 1):
        st.session_state.pop(_prompt_key(k), None)


def keep_edit(key: str, preset: str) -> None:
    """The typed prompt into the URL (none when it is the step's own)."""
    typed = (st.session_state.get(key) or "").strip()
    if typed and typed != preset:
        st.query_params[TRY] = typed
    elif TRY in st.query_params:
        del st.query_params[TRY]


def reset(key: str, preset: str) -> None:
    st.session_state[key] = preset
    keep_edit(key, preset)


# Presenter mode: a step is one 1280×720 screen, and its texts change length (a fact, an edited prompt), so the
# charts take the height the texts leave. Text is 18 px on 28.8 px lines.
SCREEN, LINE = 720, 28.8
FIXED = 143  # px: padding, the title row, the box around the notice, the links row and the gaps between
# Characters' widths at 18 px in the page's font (normal, bold), by kind, each a little above its widest members'
# mean (measured in the browser): a line is wrapped word by word on them, as the browser does.
NARROW, WIDE = set(".,:;'!|()[]{}-ilIjftr"), set("mwMW%@")
WIDTHS = {False: {" ": 3.7, "narrow": 5.6, "wide": 15.0, "upper": 11.0, "digit": 9.0, "other": 9.4, "cjk": 18.5},
          True: {" ": 3.7, "narrow": 6.3, "wide": 15.5, "upper": 11.5, "digit": 9.6, "other": 9.9, "cjk": 18.5}}


def text_width(text: str, bold: bool = False) -> float:
    w = WIDTHS[bold]
    return sum(w[" "] if ch == " " else w["narrow"] if ch in NARROW else w["wide"] if ch in WIDE
               else w["digit"] if ch.isdigit() else w["upper"] if ch.isupper()
               else w["cjk"] if ord(ch) >= 0x2E80 else w["other"] for ch in text)  # CJK and the like: a square


def lines(text: str, width: float, bold: bool = False) -> int:
    """How many lines ``text`` wraps to in ``width`` px (greedy, word by word, as a browser does)."""
    count, used = 1, 0.0
    space = WIDTHS[bold][" "]
    for word in text.split():
        w = text_width(word, bold)
        if used and used + space + w > width:
            count, used = count + 1, w
        else:
            used += w + (space if used else 0)
    return count


def screen_chart_height(story: str, story_width: float, texts: list[tuple[str, bool]]) -> int:
    """The charts' height that leaves room on the screen for the story and ``texts`` ((text, bold) under
    the charts, full width), at least 260 px and at most the tallest chart of presenter mode."""
    used = FIXED + LINE * lines(story, story_width) + sum(LINE * lines(t, SCREEN_WIDTH - 32, b) + 9 for t, b in texts)
    return int(max(260, min(present.SCREEN_CHART, SCREEN - used - 8)))


@st.cache_resource
def handouts() -> dict[str, str]:
    """The tour's HTML handout per model, built once per server (nine steps, plotly.js inlined). A plain
    store rather than st.cache_data, whose replay cannot redraw the progress bar the build reports to."""
    return {}


def tour_handout(model: str, backend, progress) -> str:
    store = handouts()
    if model not in store:
        store[model] = handout(backend, progress)
    return store[model]


n, note = parse_step(st.query_params.get("step"))
step = STEPS[n - 1]
presenting = present.is_on()
st.html(NAV_CSS)
prev_col, title_col, next_col = st.columns([1.4, 5.2, 1.4], vertical_alignment="center")
prev_col.button("← Previous", on_click=go, args=(n - 1,), disabled=n == 1, shortcut="Left", key="tour-prev",
                help="Or the left arrow key.")
next_col.button("Next →", on_click=go, args=(n + 1,), disabled=n == N, shortcut="Right", key="tour-next",
                type="primary", help="Or the right arrow key.")
title_col.markdown(f"#### Tour · step {n} of {N} · {step.title}")
if note:
    st.caption(f"ℹ️ {note}")

preset = editable(step)
asked = (st.query_params.get(TRY) or "").strip()
prompt = None
if preset is not None:
    key = _prompt_key(n)
    if st.session_state.get(key) != (asked or preset):
        st.session_state[key] = asked or preset  # the URL says which prompt this step runs on
    story_col, edit_col = st.columns([6, 1.4], vertical_alignment="center")
    story_col.markdown(step.story)
    with edit_col.popover("Try it", icon=":material/edit:", help="Run this step on a prompt of your own."):
        st.text_input("Your prompt for this step", key=key, on_change=keep_edit, args=(key, preset))
        st.button("Reset to the step's prompt", on_click=reset, args=(key, preset), key=f"tour-reset-{n}")
    prompt = asked if asked and asked != preset else None
else:
    st.markdown(step.story)
    if asked:
        note = (f"Step {n} does not run on another prompt (its chart does not read the prompt): "
                f"“{asked[:40]}” is not used.")
        st.caption(f"ℹ️ {note}")

backend = None
with shown_in_page(f"Loading model {DEFAULT_MODEL!r}"):
    backend = get_backend(DEFAULT_MODEL)  # the stories are written for the bundled model
views, fact, shows = [], "", step.shows
with shown_in_page("This step's chart"):
    with st.spinner("Computing this step's charts (cached after the first time)…"):
        views, fact, shows = render_step(backend, step, prompt)

model = backend.info().name
notice = notice_for(step, prompt)
height = present.tour_chart_height()
if presenting:
    under = [(fact, True), (f"What to notice. {notice}", False)] + ([(note, False)] if note else [])
    height = screen_chart_height(step.story, (SCREEN_WIDTH - 16) * (6 / 7.4 if preset is not None else 1), under)
two = len(views) > 1
cols = st.columns(len(views)) if two else [st]
for i, (where, view, shown) in enumerate(zip(cols, views, shows)):
    fig = titled(view.figures[0], shown.title)
    fig.update_layout(height=height)
    if two and not shown.legend:
        fig.update_layout(showlegend=False)  # half a screen wide: the story names what the colours are
    if presenting:  # at this step's height (chart() would give a text heatmap the whole screen's)
        where.plotly_chart(for_slides(fig, height, width=int(SCREEN_WIDTH / len(views))), key=f"tour-{n}-{i}",
                           config=PLOT_CONFIG, theme=None)
    else:
        chart(fig, key=f"tour-{n}-{i}", where=where, share=1 / len(views),
              export={"view": shown.view, "numbers": view.results, "texts": view.texts, "model": model,
                      "params": view.params})  # the step's options, its defaults filled in: Save run, code

if fact:
    st.markdown(f"**{fact}**")
st.info(f"**What to notice.** {notice}")

# Links to the dashboard, with every setting of the chart (and the edited prompt), in presenter mode when
# presenting. They load the page afresh in this tab: within the session, the sidebar's prompt box (drawn before
# every page) would keep its own prompt over the link's.
links = " · ".join(
    f'<a href="{escape(step_link(shown, present=presenting, model=DEFAULT_MODEL))}" target="_self">'
    f'{escape("Explore this yourself" if len(shows) == 1 else shown.title + ": explore it")} →</a>'
    for shown in shows)
footer = "" if presenting else (f" &nbsp; <small>{escape(model)}, computed live (cached after the first visit). "
                                "The arrow keys move through the tour.</small>")
st.markdown(links + footer, unsafe_allow_html=True)

if not presenting:  # downloads are hidden on a projector
    bar = st.empty()
    html = None
    with shown_in_page("The handout", stop=False):
        with st.spinner("Preparing the handout of the whole tour…"):
            html = tour_handout(model, backend, lambda f, m: bar.progress(min(1.0, f), text=f"Handout: {m}"))
    bar.empty()
    if html is not None:
        size = len(html.encode("utf-8"))
        st.download_button(f"Download the handout (HTML, {size / 1e6:.1f} MB)", html,
                           file_name=f"layerlens-tour-{model}.html", mime="text/html", icon=":material/download:",
                           key="tour-handout", on_click="ignore",
                           help=f"All {N} steps in one file, charts and numbers included; opens offline.")
