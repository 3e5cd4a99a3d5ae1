"""LayerLens dashboard: `streamlit run app.py`. This file is the page router and the home page."""
from html import escape

import streamlit as st

from ui import present, routing

routing.fresh_on_history_navigation()
routing.start_app()
st.set_page_config(page_title="LayerLens", page_icon="🔬", layout="wide")
present.apply()

from lens.figures.logit_lens import prediction_figure  # noqa: E402
from lens.figures.sampling import sampling_summary, sampling_table  # noqa: E402
from lens.sampling.options import MAX_SEED, MIN_TEMPERATURE, SampleOptions  # noqa: E402
from lens.model.tokens import visible  # noqa: E402
from lens.views import PAGES, sections  # noqa: E402
from ui import asking, lookahead, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, keep_link_options, link_value_unused, say_link_values_unused, whole_in  # noqa: E402


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
    lookahead.register(lambda typed: (backend.tokenize(typed), backend.logit_lens(typed, state.HOME_LENS)), text)
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
    # Hidden in presenter mode with every expander (the prediction fills the screen); the generate page's
    # "Sampling on the spot" tab has the same panel for a talk.
    with st.expander("Sampling on the spot: temperature, top-k and top-p on these logits", expanded=True):
        sampling_panel(backend, text, info.vocab_size)

    with st.container(key="home-views"):  # hidden in presenter mode, to fit the screen
        st.subheader("Views")
        for page in PAGES.values():
            st.page_link(page.file, label=f"{page.title}: {page.summary}", icon=page.icon)


@st.fragment
def sampling_panel(backend, text: str, vocab: int) -> None:
    """The next-token distribution resampled from the prompt's kept final logits: a control reruns this panel only,
    and the backend redoes numpy on the kept logits (no model run)."""
    unused = [(link_value_unused("s_temp", lambda v: MIN_TEMPERATURE <= float(v) <= 3.0), "temperature", 1.0),
              (link_value_unused("s_top_k", whole_in(0, vocab)), "top-k", "0 (off)"),
              (link_value_unused("s_top_p", lambda v: 0.05 <= float(v) <= 1.0), "top-p", "1 (off)"),
              (link_value_unused("s_seed", whole_in(0, MAX_SEED)), "seed", 0)]
    c1, c2, c3, c4 = st.columns(4)
    t = c1.slider("Temperature", MIN_TEMPERATURE, 3.0, 1.0, 0.05, key="s_temp", bind="query-params",
                  help="Divides every logit: below 1 sharpens the distribution, above 1 flattens it.")
    k = c2.number_input("Top-k (0: off)", 0, vocab, 0, key="s_top_k", bind="query-params",
                        help="Keep only the k most likely tokens (ties with the k-th kept).")
    p = c3.slider("Top-p (1: off)", 0.05, 1.0, 1.0, 0.05, key="s_top_p", bind="query-params",
                  help="Then keep the most likely tokens until their probabilities sum to p.")
    seed = c4.number_input("Seed", 0, MAX_SEED, 0, key="s_seed", bind="query-params",
                           help="The draw: the same seed draws the same token from the same distribution.")
    say_link_values_unused(unused)
    with shown_in_page("Sampling", stop=False):
        r = backend.sample(text, SampleOptions(temperature=float(t), top_k=int(k), top_p=float(p), seed=int(seed),
                                               shown=8))
        st.markdown(sampling_summary(r), unsafe_allow_html=True)
        st.markdown(sampling_table(r), unsafe_allow_html=True)


# The sidebar: Home first (a section named "" has no header), then the pages by section.
navigation = st.navigation({"": [st.Page(home, title="Home", icon=":material/home:", default=True)],
                            **{section: [st.Page(p.file, title=p.title, icon=p.icon) for p in pages]
                               for section, pages in sections().items()}},
                        expanded=True)  # every page listed: collapsed, Streamlit hides all past the tenth
state.sidebar()
state.refusal()
# Before the page: a page that ends its run early (st.stop) would leave presenting with no way out but Esc. The
# button floats (fixed at the screen's corner), so where it comes in the page changes nothing on the screen.
present.exit_button()
with routing.routed(), asking.for_this_session():
    navigation.run()
lookahead.register_view(navigation.url_path, state.backend, state.prompt())  # (a page that registered keeps its own)
keep_link_options()
