"""Attention flow: where the information behind a prediction came from, layer by layer."""
import streamlit as st
from lens.options import FlowOptions, HeadOptions, NodeOptions, RolloutOptions, RouteOptions

from ui.routing import require_app_router

require_app_router()

from lens.analysis.flow_plan import plan_flow  # noqa: E402
from lens.figures.attention import (SUMMARY_METRICS, clicked_node, head_grid_figure, head_summary_figure,  # noqa: E402
                                    node_bars_figure, node_table, pattern_figure, rollout_figure, route_figure,
                                    token_labels)
from lens.model.tokens import visible  # noqa: E402
from lens.options import ROUTE_MAX_TOKENS  # noqa: E402
from lens.views import query_value  # noqa: E402
from ui import state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, download_json, link_options, page_header  # noqa: E402

# The choices of view: the labels that the registry's entries put in the URL (?view=Heads).
ROUTES, ROLLOUT, HEADS = (query_value(v, "view") for v in ("routes", "rollout", "heads"))


def download(result, name: str) -> None:
    download_json(result, name, f"Download the numbers (JSON): {name}")


page_header("attention")

text = state.prompt()
if not text:
    st.info("Type a prompt in the sidebar to see where its information flows.")
    st.stop()
backend = state.backend()
info = backend.info()
with shown_in_page("Reading the prompt"):
    tokens = backend.tokenize(text)
T = len(tokens)

# An encoder (post-LN) has no routes: open it on rollout, which applies.
first_view = ROUTES if info.supports_routes else ROLLOUT
# One row of controls, so that the chart starts high on the screen (a talk's 1280×720).
view_col, pos_col, extra_col = st.columns([2, 2, 2], vertical_alignment="bottom")
view = view_col.segmented_control("View", [ROUTES, ROLLOUT, HEADS], default=first_view, key="view",
                                  bind="query-params") or first_view
labels = token_labels(tokens, width=14)
POSITIONS = [str(i) for i in range(T)]  # strings: what the URL holds


def pos_label(i: str) -> str:
    return labels[int(i)] if i.isdigit() and int(i) < T else i


position = T - 1
if view != HEADS:  # the head views show every position at once
    link_options("position", {i: pos_label(i) for i in POSITIONS})
    position = pos_col.selectbox("Output position (the prediction to explain)", POSITIONS, key="position",
                                 **({} if "position" in st.session_state else {"index": T - 1}),
                            bind="query-params", format_func=pos_label,
                            help="The position whose next-token prediction is traced back. Default: the last token.")
    position = int(position) if position is not None and position in POSITIONS else T - 1

# ---------------------------------------------------------------- routes
if view == ROUTES:
    if not info.supports_routes:
        st.warning(f"Routes do not apply to {info.name}: {info.routes_note}. "
                   f"Attention patterns and rollout do: pick *{HEADS}* or *{ROLLOUT}* above.")
    elif T > ROUTE_MAX_TOKENS:
        st.warning(f"Routes keep every layer's attention (layers × heads × T² numbers); they are limited to "
                   f"{ROUTE_MAX_TOKENS} tokens and this prompt has {T}. Shorten the prompt.")
    else:
        threshold = extra_col.slider("Threshold (drop edges below this importance)", 0.01, 0.10, 0.04, 0.01,
                                     key="threshold", bind="query-params")
        graph = None
        with shown_in_page("Routes", stop=False):
            with st.spinner("Tracing the routes…"):
                graph = backend.route_graph(text, RouteOptions(position, float(threshold)))
        if graph is not None:
            # A click on a node selects it for the drill-down (before the drill-down widgets exist).
            sel = (st.session_state.get("route-graph") or {}).get("selection", {}).get("points", [])
            if sel and sel != st.session_state.get("_route_sel"):
                st.session_state["_route_sel"] = sel
                node = clicked_node(sel)
                if node is not None:
                    st.toast(f"Drill-down below: layer {node[0]}, position {node[1]}, "
                             f"{'attention' if node[2] == 'attn' else 'MLP'}", icon=":material/arrow_downward:")
                    st.session_state["node_layer"] = node[0]
                    st.session_state["node_pos"] = str(node[1])
                    st.session_state["node_block"] = "attention" if node[2] == "attn" else "MLP"
            cur = (st.session_state.get("node_layer"), st.session_state.get("node_pos"),
                   "attn" if st.session_state.get("node_block", "attention") == "attention" else "mlp")
            fig = route_figure(graph, cur if cur[0] else None)
            chart(fig, key="route-graph", on_select="rerun", selection_mode="points",
                  export={"view": "routes", "numbers": graph, "texts": text, "model": info.name})
            st.caption("Edge width = importance; blue: attention from another position, grey: residual, orange: MLP "
                       "(through the diamond). Click a node to drill down, below. "
                       f"{len(graph.edge_layer)} edges; {graph.targets_computed} attention-block nodes evaluated "
                       f"(only what can reach the prediction is computed). Model's prediction here: "
                       f"“{visible(graph.prediction)}”.")

            # In presenter mode the drill-down shows once a node is clicked (hidden until then, to fit).
            opened = bool(st.session_state.get("_route_sel"))  # set by a click on the graph
            with st.container(key="drill-down-open" if opened else "drill-down"):
                st.subheader("Drill down into one node")
                c1, c2, c3 = st.columns(3)
                ss = st.session_state  # a clicked node set these keys: then no default is passed
                layer = c1.number_input("Layer", 1, info.n_layers, key="node_layer", bind="query-params",
                                        **({} if "node_layer" in ss else {"value": info.n_layers}))
                link_options("node_pos", {i: pos_label(i) for i in POSITIONS})
                npos = c2.selectbox("Position", POSITIONS, key="node_pos", bind="query-params", format_func=pos_label,
                                    **({} if "node_pos" in ss else {"index": position}))
                npos = int(npos) if npos in POSITIONS else position
                block = c3.segmented_control("Block", ["attention", "MLP"], key="node_block", bind="query-params",
                                             **({} if "node_block" in ss else {"default": "attention"})) or "attention"
                detail = None
                with shown_in_page("Drill-down", stop=False):
                    detail = backend.node_detail(text, NodeOptions(int(layer), npos, "attn" if block == "attention" else "mlp"))
                if detail is not None:
                    chart(node_bars_figure(detail), key="node-bars")
                    st.markdown("**Logit lens of this node** (what the stream here would predict): " + " · ".join(
                        f"`{visible(t)}` {p:.2f}" for t, p in zip(detail.lens_tokens, detail.lens_probs.tolist())))
                    st.dataframe(node_table(detail), hide_index=True, width="stretch")
                    st.caption("Promotes / suppresses: the tokens whose logits the write raises / lowers most when it is "
                               "projected onto the vocabulary (final norm's scale, then the unembedding). "
                               + (detail.note or ""))
                    download(detail, "node")
            download(graph, "routes")

# ---------------------------------------------------------------- rollout and flow
elif view == ROLLOUT:
    st.caption("Rollout: heads averaged, residual added, attention multiplied through the layers. "
               "Each row sums to 1.")
    roll = None
    with shown_in_page("Rollout", stop=False):
        with st.spinner("Multiplying the attention of every layer…"):
            roll = backend.rollout(text, RolloutOptions(position))
    skip_sink = extra_col.toggle("Leave out the first token", value=False, key="rollout_skip_first", bind="query-params",
                          help="Most attention parks on the first token (an attention sink); leaving its column out "
                               "lets the colour scale show how the rest is shared. The numbers are not renormalised.")
    if roll is not None:
        chart(rollout_figure(roll, skip_first=skip_sink), key="rollout",
              export={"view": "rollout", "numbers": roll, "texts": text, "model": info.name})
        download(roll, "rollout")
    plan = plan_flow(info.n_layers, T, position, info.is_causal)
    st.markdown("**Attention flow** (max-flow through the same graph, networkx)")
    st.caption(f"Flow solves one max-flow problem per input token and layer on a graph of ~L·T²/2 edges, so it is "
               f"limited: every layer's row up to {plan.limit_all} tokens, the last layer's row up to "
               f"{plan.limit_last} tokens (counting up to the chosen position) for this {info.n_layers}-layer model. "
               f"Here: {plan.sources} tokens.")
    if not plan.feasible:
        st.info(f"This prompt is too long for attention flow ({plan.sources} > {plan.limit_last} tokens up to the "
                "chosen position). Pick an earlier position or a shorter prompt; rollout above has no such limit.")
    elif st.toggle("Compute attention flow", key="flow", bind="query-params",
                   help="A few seconds on this CPU; the result is cached."):
        if plan.layers:
            st.caption(f"Only the last layer's row ({plan.sources} > {plan.limit_all} tokens for every layer).")
        flow = None
        with shown_in_page("Attention flow", stop=False):
            with st.spinner("Solving max-flow problems…"):
                flow = backend.attention_flow(text, FlowOptions(position, plan.layers))
        if flow is not None:
            chart(rollout_figure(flow, skip_first=skip_sink), key="flow-chart",
                  export={"view": "flow", "numbers": flow, "texts": text, "model": info.name})
            download(flow, "flow")

# ---------------------------------------------------------------- heads
else:
    layer = pos_col.number_input("Layer", 1, info.n_layers, 1, key="head_layer", bind="query-params")
    pats = None
    with shown_in_page("Head patterns", stop=False):
        with st.spinner(f"Reading the attention of layer {int(layer)}…"):
            pats = backend.head_patterns(text, HeadOptions(int(layer)))
    if pats is not None:
        grid_col, head_col = st.columns(2)  # side by side: both on one screen
        chart(head_grid_figure(pats), key="head-grid", where=grid_col,
              export={"view": "heads", "numbers": pats, "texts": text, "model": info.name})
        heads = [str(h) for h in range(pats.n_heads)]
        link_options("head", {h: f"head {h}" for h in heads})
        head = head_col.pills("Click a head to enlarge it", heads, key="head", bind="query-params",
                              **({} if "head" in st.session_state else {"default": "0"}),
                              format_func=lambda h: f"head {h}")
        head = int(head) if head in heads else 0
        chart(pattern_figure(pats, head), key="head-pattern", where=head_col)
        download(pats, "head_patterns")
    st.subheader("Every head at a glance")
    link_options("head_metric", {k: v[0] for k, v in SUMMARY_METRICS.items()})
    metric = st.selectbox("Score", list(SUMMARY_METRICS), format_func=lambda k: SUMMARY_METRICS[k][0],
                          key="head_metric", bind="query-params",
                          help="\n\n".join(f"**{v[0]}**: {v[2]}" for v in SUMMARY_METRICS.values()))
    summary = None
    with shown_in_page("Head scores", stop=False):
        with st.spinner("Scoring every head…"):
            summary = backend.head_summary(text)
    if summary is not None:
        st.caption(SUMMARY_METRICS[metric][2] + (
            f" The repeated sequence: {summary.repeat_length} random tokens, twice." if metric != "entropy" else
            f" Uniform attention over the whole prompt would be {summary.max_entropy:.2f} nats."))
        chart(head_summary_figure(summary, metric), key="head-summary",
              export={"view": "heads", "numbers": summary, "texts": text, "model": info.name})
        download(summary, "head_summary")

st.caption(f"{info.name} · {T} tokens · {info.n_layers} layers · {info.n_heads} heads. "
           "Use the camera icon on a chart to save a PNG for slides.")
