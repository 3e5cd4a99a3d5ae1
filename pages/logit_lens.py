"""Logit lens page: a layers × positions heatmap of what each layer would predict."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.logit_lens import METRICS, logit_lens_figure  # noqa: E402
from lens.model.tokens import SYMBOLS  # noqa: E402
from lens.options import LensOptions  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, download_json, link_options  # noqa: E402

WINDOW = 48  # positions shown at once by default on long prompts

st.title("Logit lens")
with st.expander("What am I looking at?", expanded=False):
    st.markdown(
        """
Each layer of the model keeps a vector for every token of the prompt (the *residual stream*).
The **logit lens** reads that vector early: it applies the model's final norm and output matrix to it,
as if the layer were the last one, and asks *"what next token would you predict now?"*

- **Rows** are layers: `emb` is the token embedding, `L1`…`Ln` the stream after each block (the top row is the model's real output).
- **Columns** are positions in your prompt; a cell predicts the token that comes *after* its column's token.
- **The word in a cell** is that layer's top-1 guess; hover for the top-k with probabilities.
- **Colour** is the metric you pick: confidence (top-1 probability), entropy (how spread out the guess is),
  KL divergence to the final layer (how far from the final answer), or the rank / probability of a target token.

Typical picture: early layers echo the input token, middle layers are unsure, and late layers settle on the answer.

Token symbols: """ + " · ".join(f"`{s.split(' ', 1)[0]}` {s.split(' ', 1)[1]}" for s in SYMBOLS) + "."
    )

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar to see the lens.")
    st.stop()
backend = state.backend()
info = backend.info()
if not info.has_lm_head:
    st.warning(f"{info.name} is an encoder without a language-model head: the logit lens does not apply to it.")
    st.stop()

with shown_in_page("Reading the prompt"):
    n = len(backend.tokenize(text))


@st.fragment
def lens_view(n: int) -> None:
    """The controls and the heatmap: changing a control reruns this view only, not the page."""
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    link_options("metric", {k: m.label for k, m in METRICS.items()})
    metric = c1.selectbox("Colour by", list(METRICS), format_func=lambda k: METRICS[k].label, key="metric",
                          bind="query-params",
                          help="\n\n".join(f"**{m.label}**: {m.help}" for m in METRICS.values()))
    target = c2.text_input("Target token", key="target", bind="query-params", placeholder="default: final top-1",
                           help="Type a token (e.g. ' Paris', with its leading space) to follow its rank and "
                                "probability.")
    top_k = c3.number_input("Top-k in hover", min_value=1, max_value=20, value=5, key="top_k", bind="query-params")
    stride = c4.number_input("Layer stride", min_value=1, max_value=max(1, info.n_layers),
                             value=2 if present.is_on() else 1, key="stride",
                             bind="query-params", help="Show every n-th layer (the final layer is always shown).")

    # Long prompts: only the positions on screen are decoded (the rest when the window moves there),
    # so a 2048-token prompt shows its last 48 positions in seconds instead of decoding all of them.
    window = None
    if n > WINDOW:
        # In the URL, so that a shared link shows the same stretch; a new prompt starts again at its end.
        stale = st.session_state.get("window")
        if st.session_state.get("_window_n") not in (None, n) or (
                stale is not None and not 0 <= min(stale) <= max(stale) <= n - 1):
            st.session_state.pop("window", None)
        st.session_state["_window_n"] = n
        lo, hi = st.slider("Positions shown", 0, n - 1, (n - WINDOW, n - 1), key="window", bind="query-params",
                           help=f"Long prompts: choose the stretch of positions to decode and draw "
                                f"({WINDOW} at first).")
        window = (min(lo, hi), max(lo, hi) + 1)

    bar = st.empty()
    with shown_in_page("Logit lens"):
        result = backend.logit_lens(
            text, LensOptions(top_k=int(top_k), target=target or None, positions=window),
            progress=lambda f, m: bar.progress(f, text=f"Decoding every layer: {m}"),
        )
    bar.empty()
    if result.target_note:
        st.caption(f"ℹ️ {result.target_note}")

    fig = logit_lens_figure(result, metric=metric, stride=int(stride))
    chart(fig, key="lens-heatmap", export={"view": "logit-lens", "numbers": result, "texts": text, "model": info.name})
    last = result.positions[-1]
    st.caption(
        f"{info.name} · {len(result.tokens)} tokens · {info.n_layers} layers"
        + (f" · positions {window[0]}–{window[1] - 1} shown" if window else "") + ". "
        f"The model's own next-token prediction "
        + ("at the last position" if last == n - 1 else f"at position {last}")
        + f": “{result.final_prediction[-1]}”. Use the camera icon on the chart to save a PNG for slides."
    )
    download_json(result, "logit_lens",
                  "Download the numbers (JSON)" + (" of the positions shown" if window else ""))


lens_view(n)
