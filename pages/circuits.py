"""Attribution & circuits page: attribution patching beside real patching, and a circuit with its faithfulness."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.circuits.graph import Graph  # noqa: E402
from lens.circuits.options import CURVE_EDGES, DEFAULT_EDGES, AttributeOptions, CircuitOptions  # noqa: E402
from lens.figures.circuits import (agreement_text, circuit_figure, circuit_text, disagreement_rows,  # noqa: E402
                                   estimate_figure, faithfulness_figure, scatter_figure)
from lens.figures.patching import ROWS_NOTE, metric_text, readable_rows  # noqa: E402
from lens.views.attention import link_note  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.experiment import link_to_label, pair_boxes, pair_picker  # noqa: E402
from ui.widgets import chart, download_json, page_header  # noqa: E402

SITES = {"Residual stream": "resid", "Attention": "attn", "MLP": "mlp", "Heads": "head"}
TABS = {"atp": "Attribution patching", "circuit": "Circuit"}
ss = st.session_state
PRESENTING = present.is_on()
IG_STEPS = 5
IOI = "Indirect object: who gets the drink"


page_header("circuits")
link_to_label("tab", TABS)

backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal):
    st.warning(f"{info.name} is not a causal language model: there is no next-token answer to attribute.")
    st.stop()

p0, a, b, t, f = st.columns([2.2, 4, 4, 1.2, 1.2], vertical_alignment="bottom")
pair_picker(p0, "pick a pair…")
# The indirect-object pair first: its answer is written by heads a circuit of a few dozen edges finds (the
# factual pairs' subject is built by early MLPs, which the gradient estimates poorly).
clean, corrupt, target, foil = pair_boxes(a, b, t, f, start=IOI)
if not clean.strip() or not corrupt.strip() or not target:
    st.info("Type a clean and a corrupted prompt and the target token, or pick an example pair.")
    st.stop()

tab_note = link_note("tab", st.query_params.get("tab"), [*TABS, *TABS.values()], "this page's tabs",
                     f"“{TABS['atp']}”")
if tab_note:
    st.caption(f"ℹ️ The link's {tab_note}")
HEIGHT = present.SCREEN_CHART - 60 if PRESENTING else 520
atp_tab, circuit_tab = st.tabs(list(TABS.values()), key="tab", bind="query-params")

if atp_tab.open:
    with atp_tab:
        c0, c1, c2 = st.columns([3, 2, 2], vertical_alignment="bottom")
        site_label = c0.segmented_control("Grid", list(SITES), default="Residual stream", key="site",
                                          bind="query-params")
        site = SITES.get(site_label or "Residual stream", "resid")
        qk_fix = c1.toggle("QK fix", key="qk_fix", bind="query-params", disabled=site not in ("attn", "head"),
                           help="Attention and heads: each head's new attention pattern patched for real (the "
                                "softmax recomputed), only its new values estimated; one run per layer.")
        qk_fix = bool(qk_fix) and site in ("attn", "head")
        grad_drop = bool(c2.toggle("GradDrop", key="grad_drop", bind="query-params",
                                   help="Against cancellation (AtP*): one more backward pass per block, each without "
                                        "that block's gradient; a cell's estimate is the mean size |AtP| over the "
                                        "passes, compared with the size of real patching's effect."))
        r = None
        with shown_in_page("Attribution patching", stop=False):
            bar = st.progress(0.0, text="Estimating, then patching for real…")
            r = backend.attribute(clean, corrupt, AttributeOptions(target=target, foil=foil, site=site, qk_fix=qk_fix,
                                                                   verify=True, grad_drop=grad_drop),
                                  progress=lambda x, m: bar.progress(min(1.0, x), text=m))
            bar.empty()
        if r is not None:
            export = {"view": "attribute", "numbers": r, "texts": [clean, corrupt], "model": info.name,
                      "params": {"target": target, "foil": foil, "site": site, "qk_fix": qk_fix,
                                 "grad_drop": grad_drop}}
            left, right = st.columns([3, 2])
            grid = estimate_figure(r, height=HEIGHT)
            if site != "head":
                grid = readable_rows(grid, HEIGHT, 18 if PRESENTING else 12)
            chart(grid, key="atp-grid", where=left, export=export, share=0.6)
            chart(scatter_figure(r, height=HEIGHT), key="atp-scatter", where=right, export=export, share=0.4)
            # Presenting: one line (the scatter's title has the correlation; the metric is the foil's page-wide).
            st.caption(agreement_text(r) if PRESENTING else
                       f"{agreement_text(r)} Metric: {metric_text(r)} at the last position."
                       + ("" if site != "resid" else f" {ROWS_NOTE}"))
            if not PRESENTING:
                st.markdown("**Where they disagree most**")
                st.dataframe(disagreement_rows(r), hide_index=True)
                download_json(r, f"attribute-{site}")

if circuit_tab.open:
    with circuit_tab:
        E = int(Graph.of(info).valid.sum()) if info.has_head_sites else 0
        choices = [n for n in CURVE_EDGES if n < E] + [E]
        c0, c1, c2 = st.columns([3, 2, 2], vertical_alignment="bottom")
        asked = st.query_params.get("edges")
        if asked is not None and asked not in [str(n) for n in choices]:  # a link's count the slider lacks
            st.caption(f"ℹ️ The link's edge count {asked!r} is not one the slider offers "
                       f"({', '.join(map(str, choices[:6]))}, …, {E}): showing {DEFAULT_EDGES}.")
            del st.query_params["edges"]
        edges = c0.select_slider("Edges kept (before pruning)", choices, value=DEFAULT_EDGES, key="edges",
                                 bind="query-params")
        ig = c1.toggle(f"Integrated gradients ({IG_STEPS} steps)", key="ig", bind="query-params",
                       help="EAP-IG: each edge's gradient averaged over embeddings between the corrupted and the "
                            "clean prompt's, instead of taken at the corrupted run alone.")
        ig_steps = IG_STEPS if ig else 0
        rank = c2.segmented_control("Keep first", ["help", "size"], default="help", key="rank", bind="query-params",
                                    format_func={"help": "edges that help", "size": "largest |score|"}.get,
                                    help="Edges that help: the edges that raise the metric most (what restores the "
                                         "answer). Largest |score|: either sign, edge attribution patching's own "
                                         "ranking.") or "help"
        c = None
        with shown_in_page("Circuit", stop=False):
            bar = st.progress(0.0, text="Scoring every edge, then running the circuits…")
            c = backend.circuit(clean, corrupt, CircuitOptions(target=target, foil=foil, edges=int(edges),
                                                                  ig_steps=ig_steps, rank=rank),
                                progress=lambda x, m: bar.progress(min(1.0, x), text=m))
            bar.empty()
        if c is not None:
            export = {"view": "circuit", "numbers": c, "texts": [clean, corrupt], "model": info.name,
                      "params": {"target": target, "foil": foil, "edges": int(edges), "ig_steps": ig_steps,
                                 "rank": rank}}
            left, right = st.columns([3, 2])
            chart(circuit_figure(c, height=HEIGHT), key="circuit-graph", where=left, export=export, share=0.6)
            chart(faithfulness_figure(c, height=HEIGHT), key="circuit-curve", where=right, export=export, share=0.4)
            if not PRESENTING:
                st.caption(circuit_text(c) + (
                    " Each head's query, and each key/value head's keys and values, read an input of their own: an "
                    "edge into keys or values reaches every head that shares them." if info.has_qkv_sites else
                    " Each layer's heads read one input (the attention's), so an edge into a layer's attention "
                    "reaches every head of it that the circuit keeps."))
                download_json(c, f"circuit-{int(edges)}")
