"""Who writes the answer: direct logit attribution, the sub-layer lens and attention knockout of one prompt."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.attribution.options import DEFAULT_WINDOW, DLAOptions, KnockoutOptions, SublayerOptions  # noqa: E402
from lens.attribution.options import sources_from_text  # noqa: E402
from lens.errors import LensError  # noqa: E402
from lens.figures.attribution import (clicked_head, dla_figure, dla_layers_figure, dla_reading,  # noqa: E402
                                      fit_rows, head_attention_figure, head_name, head_tokens_figure, knockout_figure,
                                      knockout_reading, metric_text, sublayer_figure, sublayer_reading,
                                      sublayer_span)
from lens.figures.patching import readable_rows  # noqa: E402
from lens.model.tokens import visible  # noqa: E402
from lens.options import check_position_value  # noqa: E402
from lens.views.attention import link_note  # noqa: E402
from lens.views.attribution import TABS  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_options, link_value_unused, page_header,  # noqa: E402
                        say_link_values_unused, whole_in)

ALIGN = {"centre": "centred", "start": "from it"}
ss = st.session_state
PRESENTING = present.is_on()

page_header("attribution")

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar to see who writes its answer.")
    st.stop()
backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal):
    st.warning(f"{info.name} is not a causal language model: there is no next-token answer to attribute.")
    st.stop()
L = info.n_layers

c_t, c_f, c_p, c_note = st.columns([1.2, 1.2, 1, 3.6], vertical_alignment="bottom")
target = c_t.text_input("Target", value=None, key="dla_target", bind="query-params", placeholder="the top-1",
                        help="One token, with its leading space (' Paris'). Empty: the model's own top-1 answer.") or None
foil = c_f.text_input("Foil", value=None, key="dla_foil", bind="query-params", placeholder="none",
                      help="One token (' Rome'): the metric is logit(target) − logit(foil). Empty: logit(target) "
                           "alone.") or None
position_text = c_p.text_input("Position", value=None, key="dla_position", bind="query-params", placeholder="last",
                               help="Direct attribution's position: 0-based, negative from the end. Empty: the last.")
position, unused = None, []
if position_text:
    try:
        position = check_position_value(position_text.strip())
    except LensError:
        unused.append((position_text, "position", "the last"))
tokens = backend.tokenize(text)
if position is not None and not -len(tokens) <= position < len(tokens):
    unused.append((position_text, "position", "the last"))
    position = None
say_link_values_unused(unused, where=c_note)

tab_note = link_note("tab", st.query_params.get("tab"), list(TABS.values()), "this page's tabs",
                     f"“{TABS['dla']}”")
if tab_note:
    st.caption(f"ℹ️ The link's {tab_note}")
dla_tab, sub_tab, ko_tab = st.tabs(list(TABS.values()), key="tab", bind="query-params")
HEIGHT = present.SCREEN_CHART if PRESENTING else 560
FONT = 18 if PRESENTING else 12  # the row labels' size: every k-th row labelled where all would not fit
BELOW = 121 if PRESENTING else 60  # px under a plot for its x axis (presenting: slide-size labels)

if dla_tab.open:
    with dla_tab:
        r = None
        with shown_in_page("Direct logit attribution", stop=False):
            with st.spinner("Splitting the answer into its parts…"):
                r = backend.dla(text, DLAOptions(target=target, foil=foil, position=position))
        if r is not None:
            export = {"view": "dla", "numbers": r, "texts": text, "model": info.name,
                      "params": {"target": target, "foil": foil, "position": position}}
            heads = [head_name(l, h) for l in range(r.heads.shape[0]) for h in range(r.heads.shape[1])]
            # A click on a head opens it below (set before its box exists: no default of its own, no warning).
            picked = clicked_head((ss.get("dla") or {}).get("selection", {}).get("points", []))
            if picked is not None and head_name(*picked) != ss.get("_dla_pick"):
                ss["_dla_pick"] = ss["dla_head"] = head_name(*picked)
            left, right = st.columns([1, 1] if PRESENTING else [3, 2])
            chart(fit_rows(dla_figure(r, height=HEIGHT), HEIGHT, FONT, BELOW), key="dla",
                  where=left, export=export, share=0.5 if PRESENTING else 0.6,
                  **({"on_select": "rerun", "selection_mode": "points"} if heads else {}))
            asked = st.query_params.get("dla_head")
            # Presenting, the head's box is not drawn: the link (or a click) names the head.
            head = next((h for h in (ss.get("dla_head"), asked) if h in heads), None)
            if PRESENTING and head is not None:  # a picked head takes the bars' place
                li, hi = heads.index(head) // r.heads.shape[1], heads.index(head) % r.heads.shape[1]
                chart(head_tokens_figure(r, li, hi, height=HEIGHT), key="dla-head-tokens", where=right, share=0.5)
            else:
                chart(fit_rows(dla_layers_figure(r, height=HEIGHT), HEIGHT, FONT, BELOW,
                               keep=("emb",) if PRESENTING else ("biases", "emb")),
                      key="dla-layers", where=right, export=export, share=0.5 if PRESENTING else 0.4)
            if not PRESENTING:
                st.caption(f"{dla_reading(r)} Metric: {metric_text(r)}"
                           + ("" if target else " (the model's top-1)") + ". " + (f"Note: {r.note}. " if r.note else "")
                           + ("Click a head to see where it looks and what it writes." if heads else ""))
                if heads:
                    best = heads[int(r.heads.argmax())]
                    note = link_note("head", asked, heads, "this model's heads", "none")
                    h1, h2 = st.columns([1, 4], vertical_alignment="bottom")
                    head = h1.selectbox("Head", heads, index=None, key="dla_head", bind="query-params",
                                        placeholder=f"e.g. {best}", help="layer.head, as on the heatmap's axes")
                    if note:
                        h2.caption(f"ℹ️ The link's {note}")
                    if head in heads:
                        li, hi = heads.index(head) // r.heads.shape[1], heads.index(head) % r.heads.shape[1]
                        h2.markdown(f"**{head}**: direct part **{r.heads[li, hi]:+.3f}**; its attention from "
                                    f"position {r.position} ({visible(r.tokens[r.position])}) and the tokens its "
                                    "output raises and lowers through the frozen final norm and the unembedding.")
                        a1, a2 = st.columns(2)
                        chart(head_attention_figure(r, li, hi), key="dla-head-attention", where=a1, share=0.5)
                        chart(head_tokens_figure(r, li, hi), key="dla-head-tokens", where=a2, share=0.5)
                download_json(r, "dla")

if sub_tab.open:
    with sub_tab:
        r = None
        with shown_in_page("The sub-layer lens", stop=False):
            with st.spinner("Decoding every attention and MLP output…"):
                r = backend.sublayer_lens(text, SublayerOptions(target=target))
        if r is not None:
            export = {"view": "sublayer-lens", "numbers": r, "texts": text, "model": info.name,
                      "params": {"target": target}}
            span = sublayer_span(r)
            cols = st.columns(2)
            for col, block in zip(cols, ("attn", "mlp")):
                fig = readable_rows(sublayer_figure(r, block, height=HEIGHT, span=span), HEIGHT, FONT)
                chart(fig, key=f"sublayer-{block}", where=col, export=export, share=0.5)
            if not PRESENTING:
                st.caption(f"{sublayer_reading(r)} Each cell: the token its write promotes most; colour: the "
                           f"logit of {visible(r.target)}" + ("" if target else " (the model's top-1)")
                           + " from that write alone (hover: what it promotes and suppresses)."
                           + (f" Shown: {r.note}." if r.note else ""))
                download_json(r, "sublayer-lens")

if ko_tab.open:
    with ko_tab:
        bad = {"ko_window": link_value_unused("ko_window", whole_in(1, L))}
        if PRESENTING:
            side, main = st.columns([1, 3])
            k1, k2, k3, say = side, side, side, side
        else:
            k1, k2, k3, say = st.columns([1.6, 1, 1.6, 2.6], vertical_alignment="bottom")
            main = st
        sources_text = k1.text_input("Sources", value=None, key="ko_sources", bind="query-params",
                                     placeholder="each token",
                                     help="Positions whose attention edge to the last position is blocked, e.g. the "
                                          "subject's: 2,3 or 2-4 (0-based, negative from the end). Empty: each "
                                          "token on its own.")
        window = k2.number_input("Window", 1, L, min(DEFAULT_WINDOW, L), key="ko_window", bind="query-params",
                                 help="Layers blocked together: a window centred on each layer, or starting at it.")
        link_options("ko_align", ALIGN)  # ?ko_align=start as well as the label the URL keeps
        align = k3.segmented_control("Window's place", list(ALIGN), format_func=ALIGN.get,
                                     default=None if "ko_align" in st.session_state else "centre",  # (set: no warning)
                                     key="ko_align", bind="query-params", required=True) or "centre"
        say_link_values_unused([(bad["ko_window"], "window", f"{int(window)} layers")], where=say)
        r = None
        with shown_in_page("Attention knockout", stop=False):
            sources = sources_from_text(sources_text)
            bar = main.progress(0.0, text="Knocking out attention…")
            r = backend.knockout(text, KnockoutOptions(target=target, sources=sources, window=int(window),
                                                       align=align),
                                 progress=lambda x, m: bar.progress(min(1.0, x), text=m))
            bar.empty()
        if r is not None:
            shown = ",".join(map(str, r.sources)) if r.sources is not None else None
            height = min(HEIGHT, 160 + 26 * len(r.rows)) if not PRESENTING else HEIGHT
            chart(knockout_figure(r, height=max(height, 300)), key="knockout", where=main,
                  share=0.75 if PRESENTING else 1.0,
                  export={"view": "knockout", "numbers": r, "texts": text, "model": info.name,
                          "params": {"target": target, "sources": shown, "window": int(window), "align": align}})
            if not PRESENTING:
                st.caption(f"{knockout_reading(r)} Each cell: the change of p({visible(r.target)}) when the last "
                           f"position may not read that row's tokens in the {r.window} layers "
                           f"{'around' if r.align == 'centre' else 'from'} the column's layer (blocked before the "
                           "softmax, every head).")
                download_json(r, "knockout")
