"""Watch it generate: the model continues the prompt, and the logit lens follows each new token."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.generation import generation_figure, token_table  # noqa: E402
from lens.figures.logit_lens import METRICS  # noqa: E402
from lens.model.tokens import visible  # noqa: E402
from lens.options import MAX_NEW_TOKENS, GenerateOptions, LensOptions  # noqa: E402
from ui import state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, download_json  # noqa: E402

st.title("Watch it generate")
with st.expander("What am I looking at?", expanded=False):
    st.markdown(
        """
The model continues your prompt one token at a time, each time taking the token it finds most likely
(**greedy**) or drawing one at random in proportion to its probabilities (**sampled**, with a seed so that
the same seed gives the same text). Press **▶ Play**: the logit lens grows one column per new token, and
the boxed column is the position whose prediction became the newest token. Read a column from the bottom
up to see at which layer the model settled on the word it wrote. The table lists, for each new token,
the probability it had and the first layer from which the lens's top guess was that token to the end.
"""
    )

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar to continue it.")
    st.stop()
backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal):
    st.warning(f"{info.name} is not a causal language model: it does not generate text.")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
n_new = c1.slider("New tokens", 1, MAX_NEW_TOKENS, 20, key="new_tokens", bind="query-params")
mode = c2.segmented_control("Decoding", ["Greedy", "Sampled"], default="Greedy", key="decoding",
                            bind="query-params") or "Greedy"
seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="seed", bind="query-params", disabled=mode == "Greedy")
temperature = c4.slider("Temperature", 0.1, 2.0, 0.8, 0.1, key="temperature", bind="query-params",
                        disabled=mode == "Greedy", help="Below 1 sharpens the distribution, above 1 flattens it.")
d1, d2 = st.columns([2, 1])
metric = d1.selectbox("Colour by", [k for k in METRICS if not k.startswith("target")],
                      format_func=lambda k: METRICS[k].label, key="gen_metric", bind="query-params")
stride = d2.number_input("Layer stride", 1, max(1, info.n_layers), 2, key="gen_stride", bind="query-params",
                         help="Show every n-th layer (the final layer is always shown).")

options = GenerateOptions(max_new_tokens=int(n_new), temperature=0.0 if mode == "Greedy" else float(temperature),
                          seed=int(seed))
gen = lens = None
with shown_in_page("Generating"):
    with st.spinner(f"Writing up to {int(n_new)} tokens and reading every layer…"):
        gen = backend.generate(text, options)
        lens = backend.generation_lens(text, options, LensOptions(top_k=1))

chart(generation_figure(gen, lens, metric=metric, stride=int(stride)), key="generation",
      export={"view": "generate", "numbers": [gen, lens], "texts": text, "model": info.name})
new = gen.tokens[gen.n_prompt:]
st.markdown("**The text:** " + "".join(visible(t) if i < gen.n_prompt else f"**{visible(t)}**"
                                       for i, t in enumerate(gen.tokens)).replace("␣", " "))
st.caption(f"{len(new)} new tokens ({'greedy' if gen.temperature == 0 else f'sampled at temperature {gen.temperature:g}, seed {gen.seed}'}; "
           f"stopped: {gen.stopped}). Bold: what the model wrote.")
st.dataframe(token_table(gen, lens), hide_index=True, width="stretch")
download_json(gen, "generation", "Download the generated tokens (JSON)")
