"""The model and prompt every page shares; both live in the URL so a link reproduces a view.

In demo mode (lens/hosting.py) the model box offers only the host's allowlist, and a
link naming another model is refused in the page, with the models on offer named:
the text is compared with the list, nothing is loaded and no path is looked at."""
from __future__ import annotations

import streamlit as st

from lens.backend import Backend
from lens.examples import DEFAULT_PROMPT, EXAMPLES
from lens.model.registry import BUNDLED, DEFAULT_MODEL
from lens.options import LensOptions

from . import lookahead, present
from .backends import ENGINES, HOSTING, get_backend
from .errors import shown_in_page
from lens.errors import LensError

MODEL_KEY, PROMPT_KEY, ENGINE_KEY = "model", "prompt", "engine"
REFUSED_KEY = "refused_model"
HOME_LENS = LensOptions(top_k=10)  # the home page's next-token chart (warmed at launch)


def _use_example() -> None:
    name = st.session_state.get("example")
    if name in EXAMPLES:
        st.session_state[PROMPT_KEY] = EXAMPLES[name]


def _refuse_unlisted_model() -> None:
    """Demo mode: a model in the URL that is not on offer is dropped (and the refusal kept to show)."""
    asked = st.query_params.get(MODEL_KEY)
    if asked is not None and asked.strip() not in HOSTING.models:
        st.session_state[REFUSED_KEY] = asked
        del st.query_params[MODEL_KEY]
        st.session_state.pop(MODEL_KEY, None)


def _model_box() -> None:
    if HOSTING.demo:
        _refuse_unlisted_model()
        st.selectbox("Model", list(HOSTING.models), key=MODEL_KEY, bind="query-params",
                     on_change=lambda: st.session_state.pop(REFUSED_KEY, None),
                     help="The models this demo server offers.")
        return
    remote = engine() == "ndif"
    st.selectbox(
        "Model", _ndif_models() if remote else list(BUNDLED), key=MODEL_KEY, bind="query-params",
        accept_new_options=True,
        help="A model NDIF serves (its hub id, e.g. meta-llama/Llama-3.1-8B)." if remote else
             "A bundled model, or type a local folder, a .gguf file, a hub id (needs network) "
             "or a tiny test model such as tiny-gpt2.",
    )


@st.cache_data(ttl=300, show_spinner=False)
def _ndif_models() -> list[str]:
    from lens.model.remote import ndif_models

    return ndif_models()


def engines() -> list[str]:
    """Where models may run: here (hooks or nnsight), and on NDIF when this server has an API key
    (never on a demo server: visitors would spend the host's key)."""
    import os

    here = ["local", "nnsight"]
    return here + (["ndif"] if os.environ.get("NDIF_API_KEY") and not HOSTING.demo else [])


def engine() -> str:
    chosen = st.session_state.get(ENGINE_KEY) or "local"
    return chosen if chosen in engines() else "local"


def _engine_box() -> None:
    from .widgets import link_options

    link_options(ENGINE_KEY, {k: ENGINES[k] for k in engines()})
    st.selectbox("Run on", engines(), format_func=ENGINES.get, key=ENGINE_KEY, bind="query-params",
                 help="This machine: hooks on the model in this process (fastest here). Through nnsight: the "
                      "same numbers from nnsight traces. NDIF: models too big for this machine, on NDIF's GPUs "
                      "(shown when NDIF_API_KEY is set; the key never leaves the server).")


def refusal() -> None:
    """At the top of the page: why the model in the link was not loaded (demo mode)."""
    asked = st.session_state.get(REFUSED_KEY)
    if asked is not None:
        try:
            HOSTING.check_model(asked)
        except LensError as exc:
            st.warning(f"{str(exc)[:1].upper()}{str(exc)[1:]}. Showing {model_ref()} instead.", icon="🔒")


def sidebar() -> None:
    """Model picker, example picker and prompt box, on every page (bound to the URL)."""
    with st.sidebar:
        _engine_box()
        _model_box()
        st.selectbox("Example prompt", list(EXAMPLES), index=None, key="example",
                     placeholder="pick an example…", on_change=_use_example)
        st.text_area(
            "Prompt", value=DEFAULT_PROMPT, key=PROMPT_KEY, bind="query-params", height=110,
            help=f"Ctrl+Enter (⌘+Enter) runs it. Up to {HOSTING.limits.max_prompt_tokens:,} tokens.",
        )
        st.caption("Ctrl+Enter to run · the URL keeps model and prompt: copy it to share this view.")
        lookahead.forget()  # the page about to run says again what it computes for a prompt typed
        lookahead.listener("Prompt", prompt())
        present.sidebar_switch()


def default_model() -> str:
    return HOSTING.models[0] if HOSTING.demo else DEFAULT_MODEL


def model_ref() -> str:
    return (st.session_state.get(MODEL_KEY) or default_model()).strip()


def prompt() -> str:
    return st.session_state.get(PROMPT_KEY) or ""


def backend() -> Backend:
    """The current model's backend; a load error is shown in the page and stops it."""
    ref = model_ref()
    with shown_in_page(f"Loading model {ref!r}"):
        return get_backend(ref, engine())


def model_choices() -> list[str]:
    """The models a box may offer: the demo's allowlist, or the bundled ones (others may be typed)."""
    return list(HOSTING.models) if HOSTING.demo else list(BUNDLED)


def backend_for(ref: str) -> Backend | None:
    """Another model's backend (loading it with progress); a load error is shown in the page: None."""
    with shown_in_page(f"Loading model {ref!r}", stop=False):
        return get_backend(ref)
    return None
