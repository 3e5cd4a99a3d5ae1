"""The model and prompt every page shares; both live in the URL so a link reproduces a view."""
from __future__ import annotations

import streamlit as st

from lens.backend import Backend
from lens.examples import DEFAULT_PROMPT, EXAMPLES
from lens.model.registry import BUNDLED, DEFAULT_MODEL
from lens.options import LensOptions

from . import present
from .backends import UI_TOKEN_LIMIT, get_backend
from .errors import shown_in_page

MODEL_KEY, PROMPT_KEY = "model", "prompt"
HOME_LENS = LensOptions(top_k=10)  # the home page's next-token chart (warmed at launch)


def _use_example() -> None:
    name = st.session_state.get("example")
    if name in EXAMPLES:
        st.session_state[PROMPT_KEY] = EXAMPLES[name]


def sidebar() -> None:
    """Model picker, example picker and prompt box, on every page (bound to the URL)."""
    with st.sidebar:
        st.selectbox(
            "Model", list(BUNDLED), key=MODEL_KEY, bind="query-params", accept_new_options=True,
            help="A bundled model, or type a local folder, a .gguf file, a hub id (needs network) "
                 "or a tiny test model such as tiny-gpt2.",
        )
        st.selectbox("Example prompt", list(EXAMPLES), index=None, key="example",
                     placeholder="pick an example…", on_change=_use_example)
        st.text_area(
            "Prompt", value=DEFAULT_PROMPT, key=PROMPT_KEY, bind="query-params", height=110,
            help=f"Ctrl+Enter (⌘+Enter) runs it. Up to {UI_TOKEN_LIMIT} tokens.",
        )
        st.caption("Ctrl+Enter to run · the URL keeps model and prompt: copy it to share this view.")
        present.sidebar_switch()


def model_ref() -> str:
    return (st.session_state.get(MODEL_KEY) or DEFAULT_MODEL).strip()


def prompt() -> str:
    return st.session_state.get(PROMPT_KEY) or ""


def backend() -> Backend:
    """The current model's backend; a load error is shown in the page and stops it."""
    ref = model_ref()
    with shown_in_page(f"Loading model {ref!r}"):
        return get_backend(ref)
