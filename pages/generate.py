"""Watch it generate: the model continues the prompt, and the logit lens follows each new token."""
from html import escape

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.generation import (GENERATION_TOP, generation_attention_figure, generation_figure,  # noqa: E402
                                     token_table)
from lens.figures.logit_lens import METRICS, stride_to_fit  # noqa: E402
from lens.figures.style import slide_rows  # noqa: E402
from lens.figures.sampling import sampling_summary, sampling_table  # noqa: E402
from lens.options import MAX_NEW_TOKENS, GenerateOptions, LensOptions  # noqa: E402
from lens.sampling.options import MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE, SampleOptions  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_options, link_value_unused, one_of, page_header,  # noqa: E402
                        say_link_values_unused, whole_in)

# The tabs, as the URL names them (?tab=Where+each+token+looked).
TABS = ("Lens, token by token", "Where each token looked", "Text, token by token", "Sampling on the spot")

page_header("generate")

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar to continue it.")
    st.stop()
backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal):
    st.warning(f"{info.name} is not a causal language model: it does not generate text.")
    st.stop()

metric_labels = {k: m.label for k, m in METRICS.items() if not k.startswith("target")}
# Link values these boxes cannot take (a typo, an old link): said under the controls, not ignored.
unused = {"new_tokens": link_value_unused("new_tokens", whole_in(1, MAX_NEW_TOKENS)),
          "gen_metric": link_value_unused("gen_metric", one_of(metric_labels, metric_labels.values())),
          "gen_stride": link_value_unused("gen_stride", whole_in(1, max(1, info.n_layers)))}
c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
# Presenter mode: fewer new tokens by default, so that each column is wide enough for its token at slide size.
n_new = c1.slider("New tokens", 1, MAX_NEW_TOKENS, 10 if present.is_on() else 20, key="new_tokens",
                  bind="query-params")
mode = c2.segmented_control("Decoding", ["Greedy", "Sampled"], default="Greedy", key="decoding",
                            bind="query-params") or "Greedy"
seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="seed", bind="query-params", disabled=mode == "Greedy")
temperature = c4.slider("Temperature", 0.1, 2.0, 0.8, 0.1, key="temperature", bind="query-params",
                        disabled=mode == "Greedy", help="Below 1 sharpens the distribution, above 1 flattens it.")
d1, d2 = st.columns([2, 1])
link_options("gen_metric", metric_labels)
metric = d1.selectbox("Colour by", list(metric_labels), format_func=metric_labels.get, key="gen_metric",
                      bind="query-params")
# Presenter mode: as many rows as hold cell text at slide size.
stride_default = (stride_to_fit(info.n_layers + 1, slide_rows(present.SCREEN_CHART, top=GENERATION_TOP))
                  if present.is_on() else 2)
stride = d2.number_input("Layer stride", 1, max(1, info.n_layers), min(stride_default, max(1, info.n_layers)),
                         key="gen_stride", bind="query-params",
                         help="Show every n-th layer (the final layer is always shown).")
say_link_values_unused([(unused["new_tokens"], "new tokens", int(n_new)),
                        (unused["gen_metric"], "colour", metric_labels[metric]),
                        (unused["gen_stride"], "layer stride", f"a stride of {int(stride)}")])

options = GenerateOptions(max_new_tokens=int(n_new), temperature=0.0 if mode == "Greedy" else float(temperature),
                          seed=int(seed))
gen = lens = None
with shown_in_page("Generating"):
    with st.spinner(f"Writing up to {int(n_new)} tokens and reading every layer…"):
        gen = backend.generate(text, options)
        lens = backend.generation_lens(text, options, LensOptions(top_k=1))

# Tabs: on a projector each part fills the screen on its own.
lens_tab, looked_tab, text_tab, sampling_tab = st.tabs(list(TABS), key="tab", bind="query-params")
# The generate view's options as shown (both charts: the lens, and where each token looked).
shown = {"max_new_tokens": options.max_new_tokens, "temperature": options.temperature, "seed": options.seed,
         "metric": metric, "stride": int(stride)}
chart(generation_figure(gen, lens, metric=metric, stride=int(stride)), key="generation", where=lens_tab,
      export={"view": "generate", "numbers": [gen, lens], "texts": text, "model": info.name,
              "params": {**shown, "chart": "lens"}})

with text_tab:
    new = gen.tokens[gen.n_prompt:]
    # Escaped text in one styled block: markdown would mangle tokens such as "*" or a bold run that
    # starts with a space.
    st.markdown('<div style="white-space: pre-wrap; font-size: 1.05rem"><b>The text:</b> '
                f'{escape("".join(gen.tokens[:gen.n_prompt]))}<span style="color:#2f6db5; font-weight:600">'
                f'{escape("".join(new))}</span></div>', unsafe_allow_html=True)
    decoding = "greedy" if gen.temperature == 0 else f"sampled at temperature {gen.temperature:g}, seed {gen.seed}"
    st.caption(f"{len(new)} new tokens ({decoding}; stopped: {gen.stopped}). In blue: what the model wrote.")
    # Presenter mode: the table scrolls inside its box, the page does not.
    st.dataframe(token_table(gen, lens), hide_index=True, width="stretch",
                 **({"height": 250} if present.is_on() else {}))
    download_json(gen, "generation", "Download the generated tokens (JSON)")

with looked_tab:
    skip = st.toggle("Leave out the first token", value=True, key="gen_skip_first", bind="query-params",
                     help="Most attention parks on the first token (an attention sink); without it the colours "
                          "show how the rest is shared. The shares are not renormalised.")
    flow = None
    with shown_in_page("Attention of the generated text", stop=False):
        with st.spinner("Reading the attention of every layer…"):
            flow = backend.generation_attention(text, options)
    if flow is not None:
        fig = generation_attention_figure(flow, skip_first=skip)
        if present.is_on():
            fig.update_layout(height=present.SCREEN_CHART - 50)  # the toggle above it shares the screen
        chart(fig, key="generation-attention",
              export={"view": "generate", "numbers": [gen, flow], "texts": text, "model": info.name,
                      "params": {**shown, "chart": "attention", "skip_first": bool(skip)}})


@st.fragment
def sampling_on_the_spot() -> None:
    """Temperature, top-k and top-p on the prompt's final logits, kept from one pass: moving a control reruns this
    panel only, and the backend redoes numpy on the kept logits (no model run)."""
    if not present.is_on():  # the speaker says it; the screen keeps its room for the table
        st.caption("The next token after the prompt: its logits are computed once and kept; each control below "
                   "recomputes the distribution from them at once (temperature, then top-k, then top-p, as "
                   "transformers' generate applies them). Struck through: the tokens a cut removes.")
    V = info.vocab_size
    unused = [(link_value_unused("s_temp", lambda v: MIN_TEMPERATURE <= float(v) <= 3.0), "temperature", 1.0),
              (link_value_unused("s_top_k", whole_in(0, V)), "top-k", "0 (off)"),
              (link_value_unused("s_top_p", lambda v: 0.05 <= float(v) <= 1.0), "top-p", "1 (off)"),
              (link_value_unused("s_seed", whole_in(0, MAX_SEED)), "seed", 0)]
    c1, c2, c3, c4 = st.columns(4)
    t = c1.slider("Temperature", MIN_TEMPERATURE, min(3.0, MAX_TEMPERATURE), 1.0, 0.05, key="s_temp",
                  bind="query-params",
                  help="Divides every logit: below 1 sharpens the distribution, above 1 flattens it.")
    k = c2.number_input("Top-k (0: off)", 0, V, 0, key="s_top_k", bind="query-params",
                        help="Keep only the k most likely tokens (ties with the k-th kept).")
    p = c3.slider("Top-p (1: off)", 0.05, 1.0, 1.0, 0.05, key="s_top_p", bind="query-params",
                  help="Then keep the most likely tokens until their probabilities sum to p.")
    seed = c4.number_input("Seed", 0, MAX_SEED, 0, key="s_seed", bind="query-params",
                           help="The draw: the same seed draws the same token from the same distribution.")
    say_link_values_unused(unused)
    with shown_in_page("Sampling", stop=False):
        r = backend.sample(text, SampleOptions(temperature=float(t), top_k=int(k), top_p=float(p), seed=int(seed),
                                               shown=2 if present.is_on() else 15))
        st.markdown(sampling_summary(r), unsafe_allow_html=True)
        st.markdown(sampling_table(r), unsafe_allow_html=True)


with sampling_tab:
    sampling_on_the_spot()
