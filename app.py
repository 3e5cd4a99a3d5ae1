"""LayerLens dashboard: `streamlit run app.py`. This file is the page router and the home page."""
from html import escape

import streamlit as st

from ui import present, routing

routing.start_app()
st.set_page_config(page_title="LayerLens", page_icon="🔬", layout="wide")
present.apply()

from lens.figures.logit_lens import prediction_figure  # noqa: E402
from lens.model.tokens import visible  # noqa: E402
from lens.views import PAGES, sections  # noqa: E402
from ui import asking, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, keep_link_options  # noqa: E402


def home() -> None:
    st.title("LayerLens")
    st.markdown(
        "Look inside a transformer language model, layer by layer. Type a prompt in the sidebar: "
        "the model runs once, and each view shows what its layers compute."
    )
    backend = state.backend()
    info = backend.info()
    st.caption(f"Model: **{info.name}** ({info.source}, {info.model_type} architecture) · "
               f"prompts up to {info.token_limit:,} tokens here")
    cols = st.columns(5)
    cols[0].metric("Context", f"{info.context_length:,}", help="The model's own context window, in tokens.")
    cols[1].metric("Layers", info.n_layers)
    cols[2].metric("Width d", info.d_model)
    cols[3].metric("Heads", info.n_heads)
    cols[4].metric("Vocabulary", f"{info.vocab_size:,}")

    text = state.prompt()
    if not text:
        st.info("Type a prompt in the sidebar (or pick an example) to start.")
        return
    with shown_in_page("Reading the prompt"):
        tokens = backend.tokenize(text)
    st.subheader(f"Your prompt as the model sees it · {len(tokens)} tokens")
    # Each chip in its own direction (<bdi>): a right-to-left token does not reorder its neighbours.
    st.markdown('<div class="token-chips" dir="ltr">' + " ".join(
        f"<bdi><code>{escape(visible(t), quote=False)}</code></bdi>" for t in tokens) + "</div>",
        unsafe_allow_html=True)

    if not info.has_lm_head:
        st.info(f"{info.name} is an encoder without a language-model head: it predicts no next token.")
        return
    with shown_in_page("Running the model"):
        result = backend.logit_lens(text, state.HOME_LENS)
    st.subheader(f"What it predicts next, after “{visible(result.tokens[-1])}”")
    chart(prediction_figure(result, height=370 if present.is_on() else 320), key="next-token")

    with st.container(key="home-views"):  # hidden in presenter mode, to fit the screen
        st.subheader("Views")
        for page in PAGES.values():
            st.page_link(page.file, label=f"{page.title}: {page.summary}", icon=page.icon)


# The sidebar: Home first (a section named "" has no header), then the pages by section.
navigation = st.navigation({"": [st.Page(home, title="Home", icon=":material/home:", default=True)],
                            **{section: [st.Page(p.file, title=p.title, icon=p.icon) for p in pages]
                               for section, pages in sections().items()}},
                        expanded=True)  # every page listed: collapsed, Streamlit hides all past the tenth
state.sidebar()
state.refusal()
with routing.routed(), asking.for_this_session():
    navigation.run()
present.exit_button()
keep_link_options()
