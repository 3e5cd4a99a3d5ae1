"""Neurons & heads: the MLP neurons whose weights write a token, one neuron's page, and the heads' OV copying and
composition, read from the weights."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.errors import LensError  # noqa: E402
from lens.figures.weights import (composition_figure, contexts_html, copying_figure, heads_reading,  # noqa: E402
                                  neuron_activation_figure, neuron_name, neuron_reading, neuron_tokens_figure,
                                  neurons_figure, neurons_reading, parse_neuron, partners_figure)
from lens.model.tokens import visible  # noqa: E402
from lens.views.attention import link_note  # noqa: E402
from lens.views.weights import TABS  # noqa: E402
from lens.weights.options import MAX_NEURONS, HeadWeightOptions, NeuronOptions, NeuronPageOptions  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_options, link_value_unused, page_header, presenter_table,  # noqa: E402
                        say_link_values_unused, whole_in)

ss = st.session_state
PRESENTING = present.is_on()
COMPOSITIONS = {"q": "Q (queries read it)", "k": "K (keys read it)", "v": "V (values read it)"}

page_header("neurons")
backend = state.backend()
info = backend.info()
if not info.has_lm_head:
    st.warning(f"{info.name} has no language-model head: there are no token logits for neurons or heads to write.")
    st.stop()
text = state.prompt() or ""

tab_note = link_note("tab", st.query_params.get("tab"), list(TABS.values()), "this page's tabs",
                     f"“{TABS['neurons']}”")
if tab_note:
    st.caption(f"ℹ️ The link's {tab_note}")
neurons_tab, heads_tab = st.tabs(list(TABS.values()), key="tab", bind="query-params")
HEIGHT = present.SCREEN_CHART if PRESENTING else 520


def _neuron_page(layer: int, neuron: int, where, rows: int):
    """One neuron's page; (result or None)."""
    p = None
    with shown_in_page("The neuron's page", stop=False):
        bar = where.progress(0.0, text="Reading every neuron over the shipped corpus (once per model)…")
        p = backend.neuron(text or " ", NeuronPageOptions(layer=layer, neuron=neuron),
                           progress=lambda x, m: bar.progress(min(1.0, x), text=m))
        bar.empty()
    return p


if neurons_tab.open:
    with neurons_tab:
        unused = [(link_value_unused("top", whole_in(1, MAX_NEURONS)), "neurons listed", 10)]
        c_tok, c_top, c_neuron, c_note = st.columns([1.2, 0.8, 1.2, 3.8], vertical_alignment="bottom")
        token = c_tok.text_input("Token", value=" Paris", key="token", bind="query-params",
                                 help="One token, with its leading space (' Paris'): the neurons whose output "
                                      "vectors raise its logit most. Empty: the model's top-1 after the prompt.")
        top = c_top.number_input("Neurons", 1, MAX_NEURONS, 10, key="top", bind="query-params",
                                 help="How many promoters (and suppressors) to list.")
        r = None
        with shown_in_page("The neurons that write the token", stop=False):
            with st.spinner("Scoring every neuron…"):
                r = backend.neurons(NeuronOptions(token=token or None, top=int(top)), text)
        if r is not None:
            listed = [neuron_name(x["layer"], x["neuron"]) for x in r.neurons + r.suppressors]
            # A click on a bar picks its neuron (set before the box exists).
            points = (ss.get("neurons-bars") or {}).get("selection", {}).get("points", [])
            clicked = parse_neuron(points[0].get("y")) if points else None
            if clicked is not None and neuron_name(*clicked) != ss.get("_neuron_pick"):
                ss["_neuron_pick"] = ss["neuron"] = neuron_name(*clicked)
            asked = c_neuron.text_input("Neuron", value=None, key="neuron", bind="query-params",
                                        placeholder=listed[0], help="L<layer> N<neuron> (layer 1-based, neuron "
                                                                    "0-based), or click a bar")
            picked = parse_neuron(asked)
            n_per = r.n_neurons
            if asked and (picked is None or not (1 <= picked[0] <= info.n_layers and 0 <= picked[1] < n_per)):
                unused.append((asked, "neuron", listed[0]))
                picked = None
            say_link_values_unused(unused, where=c_note)
            export = {"view": "neurons", "numbers": r, "texts": text, "model": info.name,
                      "params": {"token": r.token, "top": int(top)}}
            if PRESENTING and picked is not None:  # a picked neuron takes the list's place
                layer, neuron = picked
                left, right = st.columns(2)
                p = _neuron_page(layer, neuron, st, 8)
                if p is not None:
                    chart(neuron_tokens_figure(p, height=HEIGHT, rows=5), key="neuron-tokens", where=left, share=0.5)
                    right.markdown(f"**Where {neuron_name(layer, neuron)} fires most** (shipped corpus)")
                    right.markdown(contexts_html(p, 5), unsafe_allow_html=True)
            else:
                left, right = st.columns([1, 1] if PRESENTING else [3, 2])
                rows = 5 if PRESENTING else None
                chart(neurons_figure(r, height=HEIGHT, rows=rows), key="neurons-bars", where=left, export=export,
                      share=0.5 if PRESENTING else 0.6, on_select="rerun", selection_mode="points")
                K = len(r.neurons)
                table = [{"neuron": neuron_name(x["layer"], x["neuron"]), "score": round(x["score"], 3),
                          "raises": " ".join(visible(t) for t in r.top_tokens[i][:4 if PRESENTING else 6])}
                         for i, x in enumerate(r.neurons + r.suppressors)]
                if PRESENTING:  # the chart's neurons: the first writers and the first suppressors
                    presenter_table(table[:min(rows, K)] + table[K:K + rows], where=right)
                else:
                    right.dataframe(table, hide_index=True, height=HEIGHT)
                    st.caption(f"{neurons_reading(r)} Click a bar (or name a neuron above) for its page; the "
                               "first page of a model reads every neuron over the shipped corpus once (minutes on a "
                               "laptop CPU), then it is cached." + (f" Note: {r.note}." if r.note else ""))
                    download_json(r, "neurons")
                    p = None
                    if picked is not None:
                        layer, neuron = picked
                        st.subheader(f"Neuron {neuron_name(layer, neuron)}")
                        p = _neuron_page(layer, neuron, st, 10)
                    if p is not None:
                        n_export = {"view": "neuron", "numbers": p, "texts": text, "model": info.name,
                                    "params": {"layer": layer, "neuron": neuron}}
                        a1, a2 = st.columns([2, 3])
                        chart(neuron_tokens_figure(p, height=520, rows=10), key="neuron-tokens", where=a1,
                              export=n_export, share=0.4)
                        chart(neuron_activation_figure(p, height=520), key="neuron-activation", where=a2,
                              export=n_export,
                              share=0.6)
                        st.caption(neuron_reading(p) + (" The activation is on the sidebar's prompt." if text else
                                                        " Type a prompt in the sidebar to see its activation there."))
                        st.markdown(f"**Where it fires** in the {p.corpus} corpus ({p.corpus_tokens:,} tokens): "
                                    "the highlighted token is where its activation peaks. A negative activation "
                                    "writes the opposite of its output vector.")
                        hi_col, lo_col = st.columns(2)
                        hi_col.markdown("Highest activations")
                        hi_col.markdown(contexts_html(p), unsafe_allow_html=True)
                        lo_col.markdown("Lowest activations")
                        lo_col.markdown(contexts_html(p, low=True), unsafe_allow_html=True)
                        download_json(p, "neuron")
                        if text:  # the neuron at one position of the prompt, step by step (lens/explain/neuron.py)
                            with st.expander("At this position: gate, up, activation and write, with the numbers"):
                                from lens.explain.options import NeuronAtOptions
                                from lens.figures.explain import neuron_steps

                                n_tok = len(p.prompt_tokens)
                                at = st.columns([1, 4])[0].number_input(
                                    "Position", 0, n_tok - 1, n_tok - 1, key="n_pos", bind="query-params",
                                    help="0 is the prompt's first token.")
                                with shown_in_page("The neuron at this position", stop=False):
                                    w = backend.explain_neuron(text, NeuronAtOptions(layer, neuron, int(at)))
                                    for tab, (_, blocks) in zip(st.tabs([t for t, _ in neuron_steps(w)]),
                                                                neuron_steps(w)):
                                        for block in blocks:
                                            tab.markdown(block, unsafe_allow_html=True)

if heads_tab.open:
    with heads_tab:
        unused = [(link_value_unused("comp", lambda v: v in COMPOSITIONS or v in COMPOSITIONS.values()),
                   "composition", COMPOSITIONS["v"])]
        h1, h2, h3, h_note = st.columns([1.4, 1.2, 1.4, 3], vertical_alignment="bottom")
        link_options("comp", COMPOSITIONS)  # a link naming the option itself (comp=q) opens at it
        kind = h1.selectbox("Composition", list(COMPOSITIONS), index=None if "comp" in st.session_state else 2,
                            format_func=COMPOSITIONS.get, key="comp",
                            bind="query-params", help="Which input of the later head reads the earlier head's "
                                                      "output: its queries, its keys or its values.")
        h = None
        with shown_in_page("The heads' weights", stop=False):
            bar = st.progress(0.0, text="Reading every head's weights…")
            h = backend.head_weights(HeadWeightOptions(composition=kind),
                                     progress=lambda x, m: bar.progress(min(1.0, x), text=m))
            bar.empty()
        if h is not None:
            heads = h.labels
            best = heads[int(h.scores.max(0).argmax())]
            asked = st.query_params.get("head")
            head = h2.selectbox("Head", heads, index=None, key="head", bind="query-params", placeholder=f"e.g. {best}",
                                help="A head (L<layer>H<head>): its strongest composition partners.")
            if asked and asked not in heads:
                unused.append((asked, "head", "none"))
            search = None if PRESENTING else h3.text_input("Copies token", value=None, key="copies",
                                                           bind="query-params",
                                                           help="List the heads that copy this token most.")
            say_link_values_unused(unused, where=h_note)
            export = {"view": "head-weights", "numbers": h, "texts": text, "model": info.name,
                      "params": {"composition": kind}}
            left, right = st.columns(2)
            if PRESENTING and head in heads:
                chart(partners_figure(h, heads.index(head), height=HEIGHT, n=5), key="head-partners", where=left,
                      share=0.5)
            else:
                chart(copying_figure(h, height=HEIGHT), key="heads-copying", where=left, export=export, share=0.5)
            chart(composition_figure(h, height=HEIGHT), key="heads-composition", where=right, export=export,
                  share=0.5)
            if not PRESENTING:
                st.caption(f"{heads_reading(h)} Copy scores over the shipped corpus's {h.vocab} most frequent "
                           f"tokens; {h.note}.")
                if head in heads:
                    i = heads.index(head)
                    l, k = divmod(i, h.n_heads)
                    c1, c2 = st.columns(2)
                    chart(partners_figure(h, i), key="head-partners", where=c1, share=0.5)
                    c2.markdown(f"**{head}** copy score **{h.copy_score[l, k]:+.2f}**  \ncopies: "
                                + ", ".join(f"`{visible(t)}`" for t in h.copy_tokens[l][k])
                                + "  \nsuppresses: " + ", ".join(f"`{visible(t)}`" for t in h.suppress_tokens[l][k]))
                rows = [{"head": heads[l * h.n_heads + k], "copy score": round(float(h.copy_score[l, k]), 3),
                         "copies": " ".join(visible(t) for t in h.copy_tokens[l][k]),
                         "suppresses": " ".join(visible(t) for t in h.suppress_tokens[l][k])}
                        for l in range(h.n_layers) for k in range(h.n_heads)]
                if search:
                    rows = [r_ for r_ in rows if visible(search) in r_["copies"].split(" ")]
                    if not rows:
                        st.caption(f"No head has {visible(search)} among the tokens it copies most.")
                st.dataframe(sorted(rows, key=lambda r_: -r_["copy score"]), hide_index=True, height=320)
                download_json(h, "head-weights")
