"""The clean/corrupted experiment's inputs that Compare & patch and Attribution & circuits share: an example
pair, the four boxes (bound to the same URL keys, so a link opens the same experiment on either page), and the
rewrite of a link's short tab name."""
from __future__ import annotations

import streamlit as st

from lens.examples import PATCH_PAIRS

TEXTS = ("clean", "corrupt", "patch_target", "foil")  # the experiment's four boxes, in the order of a pair
FIRST = next(iter(PATCH_PAIRS))


def link_to_label(key: str, labels: dict[str, str]) -> None:
    """A link naming an option by its short name (?tab=cell): Streamlit keeps an option's label in the URL and
    drops a value it does not know, so the URL is rewritten to the label and the page run again, before
    anything is computed (the widget then starts at it, and a copied link still names it)."""
    asked = st.query_params.get(key)
    if asked in labels and asked not in labels.values():
        try:
            st.query_params[key] = labels[asked]
        except st.errors.StreamlitAPIException:  # bound already in this session: set the widget instead
            st.session_state[key] = labels[asked]
            return
        st.rerun()


def _use_pair() -> None:
    name = st.session_state.get("pair")
    if name in PATCH_PAIRS:
        st.session_state.update(dict(zip(TEXTS, PATCH_PAIRS[name])))


def _keep_experiment() -> None:
    """After an edit of one box, all four go in the URL (set again, they are written there): a link then holds
    the whole experiment, an emptied foil included (which the browser alone would drop from the URL)."""
    ss = st.session_state
    ss.update({k: ss.get(k) for k in TEXTS})


def pair_picker(where, placeholder: str = "pick an example pair…") -> None:
    """The example-pair box: picking one fills the four boxes."""
    where.selectbox("Example pair", list(PATCH_PAIRS), index=None, key="pair", placeholder=placeholder,
                    on_change=_use_pair)


def pair_boxes(a, b, t, f, start: str = FIRST) -> tuple[str, str, str, str | None]:
    """The clean and corrupted prompts, the target and the foil in the columns given: (clean, corrupt, target,
    foil or None). Each box starts at the pair ``start`` unless the link or the session fills it (an emptied
    box is "" in both)."""
    ss = st.session_state
    ss.update({k: v for k, v in zip(TEXTS, PATCH_PAIRS[start]) if ss.get(k) is None and k not in st.query_params})
    # No defaults of their own (value=None): a pair sets them through the session state, which a default would
    # make Streamlit warn about.
    clean = a.text_input("Clean prompt", value=None, key="clean", bind="query-params", on_change=_keep_experiment)
    corrupt = b.text_input("Corrupted prompt", value=None, key="corrupt", bind="query-params",
                           on_change=_keep_experiment)
    target = t.text_input("Target", value=None, key="patch_target", bind="query-params", on_change=_keep_experiment,
                          help="The clean prompt's answer: one token, with its leading space (' Paris').")
    foil = f.text_input("Foil", value=None, key="foil", bind="query-params", on_change=_keep_experiment,
                        help="The corrupted prompt's answer (' Rome'). Leave it empty to use the target's "
                             "log-probability.")
    return clean or "", corrupt or "", target or "", foil or None
