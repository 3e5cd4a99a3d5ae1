"""Layer anatomy page: what each layer adds, which blocks could be skipped, which layers are alike, where the
outlier dimensions live, and what the late layers correct (autocontrastive decoding); for the sidebar's prompt or,
averaged with its spread, for every prompt of a suite."""
from html import escape

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.anatomy.options import AnatomyOptions, ContrastiveOptions  # noqa: E402
from lens.anatomy.readings import (cka_pair_reading, contrastive_reading, erasure_reading, norm_reading,  # noqa: E402
                                   outlier_reading, similarity_reading, skip_reading, suite_erasure_reading,
                                   suite_norm_reading, suite_outlier_reading, suite_similarity_reading,
                                   suite_skip_reading)
from lens.figures.anatomy import (BAND, FIRST_LEFT_OUT, change_figure, cka_figure, cka_pair_figure,  # noqa: E402
                                  contrastive_figure, erasure_figure, massive_figure, norm_figure, outlier_figure,
                                  skip_figure, suite_change_figure, suite_cka_figure, suite_erasure_figure,
                                  suite_massive_figure, suite_norm_figure, suite_outlier_figure, suite_skip_figure)
from lens.suites.suite import example, example_names  # noqa: E402
from lens.model.registry import TINY_ARCHS  # noqa: E402
from lens.views.anatomy import VIEWS, default_amateur  # noqa: E402
from lens.views.attention import link_note  # noqa: E402
from ui import present, state  # noqa: E402
from ui.backends import loaded_models  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_options, link_value_unused, one_of, page_header,  # noqa: E402
                        say_link_values_unused, suite_file, whole_in)

TABS = ("Norms & change", "Skip & swap", "Similarity", "Outliers", "Token erasure", "Autocontrastive")
SOURCES = {"prompt": "This prompt", "suite": "A suite"}  # ?source=suite (the URL keeps the label once clicked)
OWN = "your own file…"
PRESENTING = present.is_on()
ss = st.session_state


def first_sentence(text: str) -> str:
    """Presenting: a reading's first sentence (the speaker says the rest)."""
    head, dot, _ = text.partition(". ")
    return head + dot.strip() if dot else text


def say(text: str, where=st) -> None:
    where.caption(first_sentence(text) if PRESENTING else text)


def continuation(title: str, new: str) -> str:
    # HTML, not markdown: the text's own characters (*, #, new lines) are text, not formatting
    def html(t: str) -> str:
        return escape(t).replace("\n", "<br>")
    return (f"<p><b>{escape(title)}</b><br>{html(text)}"
            f"<span style='color:#9467bd; font-weight:600'>{html(new)}</span></p>")


page_header("anatomy")
backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal) or info.post_ln:
    st.warning(f"{info.name} is not a causal language model with a residual stream: its layers are not measured here.")
    st.stop()
L = info.n_layers
DEFAULT_AMATEUR = default_amateur(L)


def others() -> list[str]:
    """The models this server offers beside the sidebar's (for CKA between two models)."""
    out = state.model_choices()
    if not state.HOSTING.demo:
        if info.source == "tiny":
            out += [f"tiny-{a}" for a in TINY_ARCHS]
        out += [m for m in loaded_models() if ":" not in m]
    return [m for m in dict.fromkeys(out) if m != info.name]


choices = others()
unused = [(link_value_unused("source", one_of(SOURCES, SOURCES.values())), "measure on", SOURCES["prompt"])]
link_options("source", SOURCES)
c = st.columns([1.5, 1.5, 1.1, 1.6, 0.8], vertical_alignment="bottom")
source = c[0].segmented_control("Measure on", list(SOURCES), format_func=SOURCES.get, key="source",
                                default=None if "source" in ss else "prompt",  # a link's ?source=suite set it
                                bind="query-params", help="The sidebar's prompt, or every prompt of a suite (each "
                                "measured on its own, then the mean over them with its spread).") or "prompt"
SUITE_MODE = source == "suite"
swap = c[1].toggle("Swap neighbours too", value=VIEWS[0].params["swap"], key="swap", bind="query-params",
                   help="Beside skipping each block, run every two neighbouring blocks in each other's place.")
if SUITE_MODE:
    names = example_names()
    unused.append((link_value_unused("suite", one_of(names, [OWN])), "suite", names[0]))
    suite_name = c[2].selectbox("Suite", [*names, OWN], key="suite", bind="query-params",
                                help="A shipped suite (the Prompt suites page shows its prompts), or a suite file of "
                                     "your own (.jsonl, .csv or .txt, as that page reads it).")
else:
    unused += [(link_value_unused("amateur", whole_in(1, max(1, L - 1))), "amateur layer", DEFAULT_AMATEUR),
               (link_value_unused("other_model", one_of(choices)), "second model", "none")]  # before the box drops it
    amateur = c[2].number_input("Amateur layer", 1, max(1, L - 1), DEFAULT_AMATEUR, key="amateur",
                                bind="query-params", disabled=L < 2,
                                help="Autocontrastive decoding: the block whose logit lens is the amateur.")
    other_ref = c[3].selectbox("Second model (CKA)", choices, index=None, key="other_model", bind="query-params",
                               placeholder="none", help="Compare this model's layers with another model's (the same "
                                                        "tokenizer: a fine-tuned copy, say) on the Similarity tab.")
say_link_values_unused(unused)
HEIGHT = present.SCREEN_CHART - 40 if PRESENTING else 440  # a row of controls and the tabs above


def tabs():
    tab_note = link_note("tab", st.query_params.get("tab"), TABS, "this page's tabs", f"“{TABS[0]}”")
    if tab_note:
        st.caption(f"ℹ️ The link's {tab_note}")
    return st.tabs(list(TABS), key="tab", bind="query-params")


def suite_page() -> None:
    """Every prompt of the chosen suite measured, each chart the mean over them with the 10–90 % band."""
    with shown_in_page("Reading the suite"):
        if suite_name == OWN:
            suite = suite_file("anatomy_suite_file",
                               help="JSONL (one object a line) or CSV (a header row) with a `prompt` column, or .txt, "
                                    "one prompt a line; read here, never run as code.",
                               missing="Upload a suite file: each of its prompts is measured (a pair's clean prompt).")
        else:
            suite = example(suite_name)
    bar = st.empty()
    with shown_in_page("Layer anatomy over the suite"):
        s = backend.anatomy_suite(suite, AnatomyOptions(swap=bool(swap)),
                                  progress=lambda f, m: bar.progress(min(1.0, f), text=f"{suite.name}: {m}"))
    bar.empty()
    n = len(s.prompts)
    if not PRESENTING:
        st.markdown("\n".join(f"- {first_sentence(x)}" for x in (
            suite_skip_reading(s), suite_similarity_reading(s), suite_outlier_reading(s))))
        st.caption(f"{n} prompts of {suite.name}, each measured as one prompt is (positions 1…, {FIRST_LEFT_OUT}; "
                   f"the skips at its last position); lines and bars: the mean over the prompts; bands and error "
                   f"bars: {BAND}.")
    export = {"view": "anatomy-suite", "numbers": s, "texts": suite.to_jsonl(), "model": info.name,
              "params": {"suite": suite.name, "swap": bool(swap)}}
    norms_tab, skip_tab, sim_tab, out_tab, erase_tab, contrast_tab = tabs()
    if norms_tab.open:
        with norms_tab:
            a, b = st.columns(2)
            chart(suite_norm_figure(s, height=HEIGHT), key="anatomy-suite-norm", where=a, export=export, share=0.5)
            chart(suite_change_figure(s, height=HEIGHT), key="anatomy-suite-change", where=b, export=export,
                  share=0.5)
            say(suite_norm_reading(s))
    if skip_tab.open:
        with skip_tab:
            chart(suite_skip_figure(s, height=HEIGHT), key="anatomy-suite-skip", export=export)
            say(suite_skip_reading(s))
    if sim_tab.open:
        with sim_tab:
            chart(suite_cka_figure(s, height=HEIGHT + 40), key="anatomy-suite-cka", export=export)
            say(suite_similarity_reading(s))
    if out_tab.open:
        with out_tab:
            a, b = st.columns(2)
            chart(suite_outlier_figure(s, height=HEIGHT), key="anatomy-suite-outliers", where=a, export=export,
                  share=0.5)
            chart(suite_massive_figure(s, height=HEIGHT), key="anatomy-suite-massive", where=b, export=export,
                  share=0.5)
            say(suite_outlier_reading(s))
    if erase_tab.open:
        with erase_tab:
            chart(suite_erasure_figure(s, height=HEIGHT), key="anatomy-suite-erasure", export=export)
            say(suite_erasure_reading(s))
    if contrast_tab.open:
        with contrast_tab:
            st.info("Autocontrastive decoding ranks and continues one prompt: choose **This prompt** above.")
    if not PRESENTING:
        download_json(s, f"{suite.name}-anatomy")


if SUITE_MODE:
    suite_page()
    st.stop()

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar to measure the model's layers on it.")
    st.stop()

r = None
with shown_in_page("Layer anatomy", stop=False):
    with st.spinner("Running the prompt, then once with each block skipped…"):
        r = backend.anatomy(text, AnatomyOptions(swap=bool(swap)))
if r is None:
    st.stop()

if not PRESENTING:  # the page's answers in three sentences, whichever tab is open
    st.markdown("\n".join(f"- {first_sentence(s)}" for s in (
        skip_reading(r), similarity_reading(r.rows, r.cka), outlier_reading(r))))
    st.caption(f"Every measure is over positions 1… ({FIRST_LEFT_OUT}: an attention sink whose norm dwarfs the "
               "rest); the skips and swaps read the next token at the last position; the bottom row is the last "
               "block's output as it leaves the block (the final norm not yet applied).")

export = {"view": "anatomy", "numbers": r, "texts": text, "model": info.name, "params": {"swap": bool(swap)}}
norms_tab, skip_tab, sim_tab, out_tab, erase_tab, contrast_tab = tabs()

if norms_tab.open:
    with norms_tab:
        a, b = st.columns(2)
        chart(norm_figure(r, height=HEIGHT), key="anatomy-norm", where=a, export=export, share=0.5)
        chart(change_figure(r, height=HEIGHT), key="anatomy-change", where=b, export=export, share=0.5)
        say(norm_reading(r))

if skip_tab.open:
    with skip_tab:
        chart(skip_figure(r, height=HEIGHT), key="anatomy-skip", export=export)
        say(skip_reading(r))

if sim_tab.open:
    with sim_tab:
        pair = None
        if other_ref:
            other = state.backend_for(other_ref)
            if other is not None:
                with shown_in_page("Comparing the layers of two models", stop=False):
                    pair = backend.cka_with(other, text)
        if pair is not None:
            a, b = st.columns(2)
            chart(cka_figure(r, height=HEIGHT + 40), key="anatomy-cka", where=a, export=export, share=0.5)
            chart(cka_pair_figure(pair, height=HEIGHT + 40), key="anatomy-cka-pair", where=b, share=0.5)
            say(similarity_reading(r.rows, r.cka) + " " + cka_pair_reading(pair))
        else:
            chart(cka_figure(r, height=HEIGHT + 40), key="anatomy-cka", export=export)
            say(similarity_reading(r.rows, r.cka))

if out_tab.open:
    with out_tab:
        a, b = st.columns(2)
        chart(outlier_figure(r, height=HEIGHT), key="anatomy-outliers", where=a, export=export, share=0.5)
        chart(massive_figure(r, height=HEIGHT), key="anatomy-massive", where=b, export=export, share=0.5)
        say(outlier_reading(r))

if erase_tab.open:
    with erase_tab:
        chart(erasure_figure(r, height=HEIGHT), key="anatomy-erasure", export=export)
        say(erasure_reading(r) + ("" if PRESENTING else " Row emb is the embeddings themselves (position embeddings "
                                  "included where the model adds them)."))

if contrast_tab.open:
    with contrast_tab:
        cr = None
        if L < 2:
            st.info("Autocontrastive decoding needs two blocks or more.")
        else:
            with shown_in_page("Autocontrastive decoding", stop=False):
                with st.spinner("Ranking and continuing with and without the amateur…"):
                    cr = backend.contrastive(text, ContrastiveOptions(amateur_layer=int(amateur)))
        if cr is not None:
            left, right = st.columns([3, 2]) if not PRESENTING else st.columns([1, 1])
            chart(contrastive_figure(cr, height=HEIGHT), key="anatomy-contrastive", where=left, share=0.6,
                  export={"view": "contrastive", "numbers": cr, "texts": text, "model": info.name,
                          "params": {"amateur_layer": int(amateur),
                                     "max_new_tokens": ContrastiveOptions().max_new_tokens}})
            right.markdown(continuation("Plain (greedy)", cr.plain_text), unsafe_allow_html=True)
            right.markdown(continuation(f"Contrastive (amateur L{cr.amateur_layer})", cr.contrast_text),
                           unsafe_allow_html=True)
            say(contrastive_reading(cr), where=right)

if not PRESENTING:
    download_json(r, "anatomy")
