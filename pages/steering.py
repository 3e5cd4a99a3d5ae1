"""Steer the model: plain and steered continuations side by side, the dose-response and the lens of both runs."""
from dataclasses import replace
from html import escape

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.steering import (PLAIN_COLOR, STEERED_COLOR, difference_figure, difference_reading,  # noqa: E402
                                   dose_figure, grid_figure, lens_figure, steer_reading, steer_table)
from lens.views.attention import link_note  # noqa: E402
from lens.errors import LensError  # noqa: E402
from lens.probes.data import SHIPPED  # noqa: E402
from lens.steering.options import MODES, POSITIONS, VECTORS  # noqa: E402
from lens.steering.store import VectorStore, check_name  # noqa: E402
from lens.views.steering import PRESETS, VIEWS, default_layer, options_from  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.state import PROMPT_KEY  # noqa: E402
from ui.widgets import (chart, download_json, link_options, link_value_unused, one_of, page_header,  # noqa: E402
                        presenter_table, say_link_values_unused, whole_in)

ss = st.session_state
PRESENTING = present.is_on()
DEFAULTS = VIEWS[0].params
UNITS = {"norm": "× norm", "raw": "raw"}
DOSE_TAB = "Dose-response"
WHERE = {"all": "all", "after-prompt": "after prompt", "front": "front"}

page_header("steering")
backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal) or info.post_ln:
    st.warning(f"{info.name} is not a causal language model with a residual stream: there is nothing to steer.")
    st.stop()
L = info.n_layers


def use_preset() -> None:
    name = ss.get("steer_preset")
    if name in PRESETS:
        prompt, pos, neg, layer, coef, unit, where = PRESETS[name]
        ss.update({PROMPT_KEY: prompt, "steer_pos": pos, "steer_neg": neg, "steer_layer": min(layer, L),
                   "steer_coef": coef, "steer_unit": unit, "steer_positions": where, "steer_vector": "contrast"})


def use_saved() -> None:
    """A saved vector is applied, by default, where it was read."""
    try:
        ss["steer_layer"] = min(L, VectorStore().get(ss.get("steer_saved")).layer)
    except LensError:
        pass  # said where the page reads it


# The link's values a widget cannot take: said under the controls (the widget shows its default).
unused = [(link_value_unused("steer_layer", whole_in(1, L)), "layer", default_layer(L)),
          (link_value_unused("steer_coef", lambda v: abs(float(v)) <= 1e4), "coefficient", DEFAULTS["coef"]),
          (link_value_unused("steer_mode", one_of(MODES)), "mode", "add"),
          (link_value_unused("steer_positions", one_of(POSITIONS, WHERE.values())), "positions", "all"),
          (link_value_unused("steer_unit", one_of(UNITS, UNITS.values())), "unit", "× norm"),
          (link_value_unused("steer_tokens", whole_in(1, 64)), "new tokens", DEFAULTS["max_new_tokens"]),
          (link_value_unused("steer_vector", one_of(VECTORS)), "vector", "contrast"),
          (link_value_unused("steer_probe", one_of(SHIPPED)), "probe set", "true-false")]
with shown_in_page("The saved vectors", stop=False):
    SAVED = VectorStore().names()
if "steer_saved" in st.query_params and st.query_params["steer_saved"] not in SAVED:
    unused.append((st.query_params["steer_saved"], "saved vector", "none: no vector of that name is saved"))

link_options("steer_unit", UNITS)  # a link may name the option ("raw") or its label
link_options("steer_positions", WHERE)
if PRESENTING:  # one row, the chart needs the screen's height: each choice box as wide as its longest choice
    # at slide size; no preset box (it only fills in the others, before the talk)
    c = [None, *st.columns([1.15, 1.45, 1.45, 0.75, 0.85, 1.05, 1.3, 1.4, 0.75], vertical_alignment="bottom")]
else:  # the vector, then how it is applied: ten boxes in one row cut their choices to a few letters
    c = [*st.columns([1.1, 1.1, 2.6, 2.6], vertical_alignment="bottom"), *st.columns(6, vertical_alignment="bottom")]
if c[0] is not None:
    c[0].selectbox("Preset", list(PRESETS), index=None, key="steer_preset", on_change=use_preset,
                   placeholder="pick one", help="Sets the prompt, both texts, the layer and the coefficient.")
vector = c[1].selectbox("Vector", VECTORS, key="steer_vector", bind="query-params",
                        help="contrast: positive − negative texts; token: a token's unembedding row; probe: a "
                             "shipped probe's direction at the layer (Probes page); saved: a vector saved by name.")
positive, negative, token, saved, probe_set = DEFAULTS["positive"], DEFAULTS["negative"], None, None, None
if vector == "contrast":
    positive = c[2].text_input("Positive", value=DEFAULTS["positive"], key="steer_pos", bind="query-params",
                               help="The text steered towards (several: one per line in a saved link).")
    negative = c[3].text_input("Negative", value=DEFAULTS["negative"], key="steer_neg", bind="query-params",
                               help="The text steered away from; the vector is positive − negative at the stream "
                                    "entering the layer, at each text's last token.")
elif vector == "token":
    token = c[2].text_input("Token", value=" love", key="steer_token", bind="query-params",
                            help="One token, with its leading space: steer along its unembedding row.")
elif vector == "probe":
    probe_set = c[2].selectbox("Probe set", list(SHIPPED), key="steer_probe", bind="query-params",
                               help="The probe's direction fitted at the stream entering the layer.")
else:
    saved = c[2].selectbox("Saved vector", SAVED, index=0 if SAVED else None, key="steer_saved",
                           bind="query-params", on_change=use_saved, placeholder="none saved yet",
                           help="Vectors saved with “Save vector” below, on the Probes page, or with "
                                "`steer --save-vector NAME`; `python -m lens vectors list` lists them.")
layer = c[4].number_input("Layer", 1, L, default_layer(L), key="steer_layer", bind="query-params",
                          help="The residual stream entering this block (1-based).")
coef = c[5].number_input("Coef.", -1e4, 1e4, float(DEFAULTS["coef"]), step=0.1, key="steer_coef",
                         bind="query-params", help="0 with “add”: exactly the plain run.")
unit = c[6].selectbox("Unit", list(UNITS), index=list(UNITS).index(DEFAULTS["unit"]), format_func=UNITS.get,
                      key="steer_unit", bind="query-params",
                      help="raw: c multiplies the difference vector; × norm: the added vector is c times the "
                           "stream's mean norm at that layer.")
mode = c[7].selectbox("Mode", list(MODES), key="steer_mode", bind="query-params",
                      help="add: h + c·v; orthogonal: the part along v times c; cap: the projection at most c; "
                           "ablate: the part along v removed.")
where = c[8].selectbox("Positions", list(POSITIONS), index=list(POSITIONS).index(DEFAULTS["positions"]),
                       format_func=WHERE.get, key="steer_positions", bind="query-params")
n_new = c[9].number_input("Tokens", 1, 64, DEFAULTS["max_new_tokens"], key="steer_tokens", bind="query-params",
                          help="New tokens of each continuation (greedy).")
say_link_values_unused(unused)
if vector == "saved" and not saved:
    st.info("No steering vector is saved yet: pick another vector, steer with it, and save it with “Save vector” "
            "under the texts (or save a probe's direction on the Probes page).")
    st.stop()

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar (or pick a preset) to steer its continuation.")
    st.stop()

params = {**DEFAULTS, "positive": positive, "negative": negative, "token": token, "saved": saved,
          "probe_set": probe_set, "layer": int(layer), "coef": float(coef),
          "unit": unit, "mode": mode, "positions": where, "max_new_tokens": int(n_new)}
r = None
with shown_in_page("Steering", stop=False):
    # The dose-response (most of the work: a pass per coefficient, a text at five) only where its tab is open, so
    # a preset shows both texts and the lens difference first.
    dose = (ss.get("steer_tab") or st.query_params.get("steer_tab")) == DOSE_TAB
    with st.spinner("Generating plainly and steered, then the lens of both runs"
                    + (" and the dose-response…" if dose else "…")):
        r = backend.steer(text, replace(options_from(params, L), dose=dose))
if r is None:
    st.stop()



def continuation(title: str, new: str, colour: str) -> str:
    # HTML, not markdown: a continuation's own characters (*, #, new lines) are text, not formatting
    def html(t: str) -> str:
        return escape(t).replace("\n", "<br>")
    return (f"<p><b>{escape(title)}</b><br>{html(text)}"
            f"<span style='color:{colour}; font-weight:600'>{html(new)}</span></p>")


left, right = st.columns(2)
left.markdown(continuation("Plain", r.plain_text, PLAIN_COLOR), unsafe_allow_html=True)
right.markdown(continuation(f"Steered ({r.mode}, layer {r.layer}, c = {r.coef:g})", r.steered_text, STEERED_COLOR),
               unsafe_allow_html=True)


def save_vector() -> None:
    """A callback (one save per click): the vector this run steered with, saved under the typed name."""
    try:
        v = VectorStore().save(backend.steering_vector(options_from(params, L), check_name(ss.get("steer_save_name"))))
        ss["steer_saved_note"] = (f"Saved “{v.name}” (layer {v.layer}, ‖v‖ = {v.norm:.3g}): vector “saved” picks it, "
                                  f"`python -m lens steer --vector '{v.name}'` steers with it.")
    except LensError as exc:
        ss["steer_saved_note"] = f"Not saved: {exc}"


if not PRESENTING:
    row = st.container(horizontal=True, vertical_alignment="center")
    with row.popover("Save vector", icon=":material/save:"):
        st.text_input("Name", key="steer_save_name", placeholder="e.g. love − hate L8",
                      help="Saved beside the saved runs (not the cache): reusable on this page and from the CLI.")
        st.button("Save", key="steer_save", type="primary", on_click=save_vector)
    note = ss.pop("steer_saved_note", None)
    row.caption(note or f"Vector: {r.vector_label}; ‖v‖ = {r.vector_norm:.3g}.")
export = {"view": "steer", "numbers": r, "texts": text, "model": info.name, "params": params}
TABS = {"difference": "Lens difference", "lenses": "Both lenses", "dose": DOSE_TAB}
tab_note = link_note("tab", st.query_params.get("steer_tab"), list(TABS.values()), "this page's tabs",
                     f"“{TABS['difference']}”")
if tab_note:
    st.caption(f"ℹ️ The link's {tab_note}")
diff_tab, lenses_tab, dose_tab = st.tabs(list(TABS.values()), key="steer_tab", bind="query-params")
HEIGHT = 300 if PRESENTING else 420
GRID = present.SCREEN_CHART - 110 if PRESENTING else 560  # presenting: room for the two texts
if diff_tab.open:
    with diff_tab:
        chart(difference_figure(r, height=GRID, max_rows=16 if PRESENTING else None, cell_text=not PRESENTING),
              key="steer-diff",
              export=export)
        if not PRESENTING:
            st.caption(difference_reading(r) + " Hover a cell for both runs' top-1 and log-probabilities.")
if lenses_tab.open:
    with lenses_tab:
        # Presenting: side by side, tokens in the hover; else one above the other, wide enough for the tokens.
        spots = st.columns(2) if PRESENTING else (st.container(), st.container())
        for run, where in zip(("plain", "steered"), spots):
            chart(grid_figure(r, run, height=GRID, max_rows=16 if PRESENTING else None, cell_text=not PRESENTING),
                  key=f"steer-grid-{run}", where=where, export=export, share=0.5 if PRESENTING else 1.0)
        if not PRESENTING:
            st.caption("Each cell: the top-1 token the lens reads at that layer and position, coloured by its "
                       "probability; both runs read the same text: the prompt left of the dotted line, the plain "
                       "continuation right of it.")
if dose_tab.open:
    with dose_tab:
        a, b = st.columns(2)
        chart(dose_figure(r, height=HEIGHT), key="steer-dose", where=a, export=export, share=0.5)
        chart(lens_figure(r, height=HEIGHT), key="steer-lens", where=b, export=export, share=0.5)
        if not PRESENTING:
            st.caption(steer_reading(r) + " Hover a dose-response point for its text.")
            presenter_table(steer_table(r))
if not PRESENTING:
    download_json(r, "steering")
