"""Guided tour: one short story per step, each with a live chart of the bundled model.

``?step=N`` opens step N (1-based); the arrow keys and the buttons move through the steps.
"""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.model.registry import DEFAULT_MODEL  # noqa: E402
from lens.tour import STEPS, editable, render_step, step_link, titled  # noqa: E402
from ui import present  # noqa: E402
from ui.backends import get_backend  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart  # noqa: E402

N = len(STEPS)


def step_number() -> tuple[int, str]:
    """The 1-based step in the URL, clamped to the tour; a note when it was out of range."""
    raw = st.query_params.get("step", "1")
    try:
        n = int(raw)
    except ValueError:
        return 1, f"“{raw}” is not a step number: here is step 1."
    if 1 <= n <= N:
        return n, ""
    near = min(max(n, 1), N)
    return near, f"The tour has steps 1 to {N}: here is step {near}, the nearest to {n}."


def go(n: int) -> None:
    st.query_params["step"] = str(min(max(n, 1), N))


def reset(key: str, preset: str) -> None:
    st.session_state[key] = preset


n, note = step_number()
step = STEPS[n - 1]
prev_col, title_col, next_col = st.columns([1.4, 5.2, 1.4], vertical_alignment="center")
prev_col.button("← Previous", on_click=go, args=(n - 1,), disabled=n == 1, shortcut="Left", key="tour-prev",
                help="Or the left arrow key.")
next_col.button("Next →", on_click=go, args=(n + 1,), disabled=n == N, shortcut="Right", key="tour-next",
                type="primary", help="Or the right arrow key.")
title_col.markdown(f"#### Tour · step {n} of {N} · {step.title}")
if note:
    st.caption(f"ℹ️ {note}")
preset = editable(step)
prompt = None
if preset is not None:
    key = f"tour-prompt-{n}"
    story_col, edit_col = st.columns([6, 1.4], vertical_alignment="center")
    story_col.markdown(step.story)
    with edit_col.popover("Try it", icon=":material/edit:", help="Run this step on a prompt of your own."):
        if key not in st.session_state:
            st.session_state[key] = preset
        typed = st.text_input("Prompt", key=key)
        st.button("Reset to the step's prompt", on_click=reset, args=(key, preset), key=f"tour-reset-{n}")
    prompt = typed if typed and typed != preset else None
else:
    st.markdown(step.story)

backend = None
with shown_in_page(f"Loading model {DEFAULT_MODEL!r}"):
    backend = get_backend(DEFAULT_MODEL)  # the stories are written for the bundled model
views, fact = [], ""
with shown_in_page("This step's chart"):
    with st.spinner("Computing this step's charts (cached after the first time)…"):
        views, fact = render_step(backend, step, prompt)

height = present.tour_chart_height()
cols = st.columns(len(views)) if len(views) > 1 else [st]
for i, (where, view, shown) in enumerate(zip(cols, views, step.shows)):
    fig = titled(view.figures[0], shown.title)
    fig.update_layout(height=height)
    if len(views) > 1:
        fig.update_layout(showlegend=False)  # half a screen wide: the story names what the colours are
    chart(fig, key=f"tour-{n}-{i}", where=where)

if prompt is not None:
    st.caption(f"On your prompt “{prompt}”; the story was written for “{preset}”. Reset it under *Try it*.")
if fact:
    st.markdown(f"**{fact}**")
st.info(f"**What to notice.** {step.notice}")
links = " · ".join(f"[{'Explore this yourself' if len(step.shows) == 1 else v.view.title + ': explore it'} →]"
                   f"({step_link(s)})" for s, v in zip(step.shows, views))
st.markdown(links + f"  \n*{backend.info().name}, computed live (cached after the first visit). "
            "The arrow keys move through the tour.*")
