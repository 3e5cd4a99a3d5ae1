"""LayerLens dashboard: `streamlit run app.py`. This file is the home page and the page router."""
import streamlit as st

from ui.routing import use_app_router  # noqa: E402

use_app_router()
st.set_page_config(page_title="LayerLens", page_icon="🔬", layout="wide")

import plotly.graph_objects as go  # noqa: E402

from lens.logit_lens import LensOptions  # noqa: E402
from lens.tokens import visible  # noqa: E402
from ui import state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402

LOGIT_LENS_PAGE = "pages/logit_lens.py"


def home() -> None:
    st.title("LayerLens")
    st.markdown(
        "Look inside a transformer language model, layer by layer. Type a prompt in the sidebar: "
        "the model runs once, and each view shows what its layers compute."
    )
    backend = state.backend()
    info = backend.info()
    st.caption(f"Model: **{info.name}** ({info.source}, {info.model_type} architecture)")
    cols = st.columns(5)
    cols[0].metric("Context", f"{info.context_length:,}")
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
    st.markdown(" ".join(f"`{visible(t)}`" for t in tokens))

    if not info.has_lm_head:
        st.info(f"{info.name} is an encoder without a language-model head: it predicts no next token.")
        return
    with shown_in_page("Running the model"):
        result = backend.logit_lens(text, LensOptions(top_k=10))
    last = len(result.positions) - 1
    final = len(result.layers) - 1
    st.subheader(f"What it predicts next, after “{visible(result.tokens[-1])}”")
    labels = [visible(t) for t in result.top_tokens[final][last]]
    probs = result.top_probs[final, last].tolist()
    bar = go.Figure(go.Bar(x=probs[::-1], y=[f"{l} " for l in labels[::-1]], orientation="h",
                           marker_color="#2f6db5", text=[f"{p:.1%}" for p in probs[::-1]], textposition="auto"))
    bar.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=30), xaxis=dict(title="probability", range=[0, 1]))
    st.plotly_chart(bar, key="next-token")

    st.subheader("Views")
    st.page_link(LOGIT_LENS_PAGE, label="Logit lens: what every layer would predict at every position", icon=":material/layers:")
    st.page_link("pages/projection.py", label="Projections: how token representations move and reorganise through the layers",
                 icon=":material/scatter_plot:")
    st.page_link("pages/attention.py", label="Attention flow: where the information behind a prediction came from",
                 icon=":material/hub:")


pages = [
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page(LOGIT_LENS_PAGE, title="Logit lens", icon=":material/layers:"),
    st.Page("pages/projection.py", title="Projections", icon=":material/scatter_plot:"),
    st.Page("pages/attention.py", title="Attention flow", icon=":material/hub:"),
]
navigation = st.navigation(pages)
state.sidebar()
navigation.run()
