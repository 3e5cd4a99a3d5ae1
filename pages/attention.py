"""Attention flow: where the information behind a prediction came from, layer by layer."""
import streamlit as st
from lens.options import FlowOptions, HeadOptions, NodeOptions, RolloutOptions, RouteOptions

from ui.routing import require_app_router

require_app_router()

from lens.analysis.flow_plan import plan_flow  # noqa: E402
from lens.explain.options import AttentionWeightOptions  # noqa: E402
from lens.figures.explain import attention_steps  # noqa: E402
from lens.figures.attention import (SCORES, SUMMARY_METRICS, clicked_node, head_grid_figure,  # noqa: E402
                                    head_summary_figure, node_bars_figure, node_table, pattern_figure,
                                    rollout_figure, route_figure, token_labels)
from lens.model.tokens import visible  # noqa: E402
from lens.options import ROUTE_MAX_TOKENS  # noqa: E402
from lens.views import query_value  # noqa: E402
from lens.views.attention import link_note  # noqa: E402
from ui import live, present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, download_json, live_chart, page_header  # noqa: E402

# The choices of view: the labels that the registry's entries put in the URL (?view=Heads).
ROUTES, ROLLOUT, HEADS = (query_value(v, "view") for v in ("routes", "rollout", "heads"))
PRESENTING = present.is_on()
NODE = ("node_layer", "node_pos", "node_block")  # the drill-down's choices, as the URL names them
PILLS_IN_A_ROW = 12  # presenting: up to this many head buttons fit across the screen; more go in a box
ss = st.session_state


def download(result, name: str) -> None:
    download_json(result, name, f"Download the numbers (JSON): {name}")


def link_to_labels(choices: dict[str, dict[str, str]]) -> None:
    """Links naming options by their values (?position=3, ?head=2): Streamlit keeps an option's label in the
    URL and drops a value it does not know, so the URL is rewritten to the labels and the page run again,
    before anything is computed (the widgets then start at them, and a copied link still names them)."""
    rewrite = {}
    for key, labels in choices.items():
        asked = st.query_params.get(key)
        if asked in labels and asked not in labels.values():
            rewrite[key] = labels[asked]
    if not rewrite:
        return
    try:
        st.query_params.update(rewrite)
    except st.errors.StreamlitAPIException:  # bound already in this session: set the widgets instead
        ss.update({k: v for k, v in rewrite.items() if k not in ss})
        return
    st.rerun()


NOTES: list[str] = []  # the link's values this run could not take, said in one line under the controls


SCORE_CHANNEL, SKIP_CHANNEL = "head-scores", "rollout-sink"  # the live boxes' channels (ui/live)


def score_from_browser(metric: str) -> None:
    """The score the live chart shows, reported by the browser ("": none, which shows the layer's heads)."""
    if metric in SCORES or metric == "":
        ss["head_metric"] = metric or None


def sink_from_browser(value: str) -> None:
    """The live switch's "Leave out the first token", reported by the browser: the toggle (and URL) follow."""
    if value in ("on", "off"):
        ss["rollout_skip_first"] = value == "on"


def head_clicked(layer: int, head: int) -> None:
    """A head clicked on the scores chart: its layer's patterns, that head enlarged."""
    ss["head_layer"] = layer
    ss["head"] = str(head)


def note(text: str | None) -> None:
    if text:
        NOTES.append(f"ℹ️ The link's {text}")
        notes_slot.caption(" ".join(NOTES))


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
labels = token_labels(tokens, width=14)
POSITIONS = [str(i) for i in range(T)]  # strings: what the URL holds once a position is picked by its label
LABELS = dict(zip(POSITIONS, labels))
HEADS_OF = [str(h) for h in range(info.n_heads)]
link_to_labels({"position": LABELS, "node_pos": LABELS, "w_query": LABELS, "w_key": LABELS,
                "head": {h: f"head {h}" for h in HEADS_OF},
                "head_metric": SCORES})

# An encoder (post-LN) has no routes: open it on rollout, which applies.
first_view = ROUTES if info.supports_routes else ROLLOUT
# One row of controls, so that the chart starts high on the screen (a talk's 1280×720).
view_col, pos_col, extra_col = st.columns([2, 2, 2], vertical_alignment="bottom")
view = view_col.segmented_control("View", [ROUTES, ROLLOUT, HEADS], default=first_view, key="view",
                                  bind="query-params") or first_view
notes_slot = st.empty()

position = T - 1
if view != HEADS:  # the head views show every position at once
    asked = st.query_params.get("position")
    # No default of its own (None: the last position), so that a click or a link may set it without a warning.
    picked = pos_col.selectbox("Output position (the prediction to explain)", POSITIONS, index=None, key="position",
                               bind="query-params", format_func=LABELS.get, placeholder=f"{labels[-1]} (the last)",
                               help="The position whose next-token prediction is traced back. Default: the last "
                                    "token.")
    position = int(picked) if picked in POSITIONS else T - 1
    note(link_note("position", asked, [*POSITIONS, *labels], f"the prompt's {T} tokens",
                   f"the last position, {T - 1}"))

def explain_weight(layer: int, head: int) -> None:
    """One weight of the head shown above, walked through: q and k, q·k/√d, the mask, the softmax, the output.
    Its query and key are in the URL (?w_query=, ?w_key=); a query's own row is what the pattern's row shows."""
    asked = {k: st.query_params.get(k) for k in ("w_query", "w_key")}
    c1, c2, c3 = st.columns([2, 2, 3], vertical_alignment="bottom")
    q = c1.selectbox("Query position (the row)", POSITIONS, index=T - 1, key="w_query", bind="query-params",
                     format_func=LABELS.get)
    k = c2.selectbox("Key position (the column)", POSITIONS, index=0, key="w_key", bind="query-params",
                     format_func=LABELS.get)
    q, k = int(q) if q in POSITIONS else T - 1, int(k) if k in POSITIONS else 0
    for key, what, used in (("w_query", "query", f"position {q}"), ("w_key", "key", f"position {k}")):
        c3.caption(link_note(what, asked[key], [*POSITIONS, *labels], f"the prompt's {T} tokens", used) or "")
    with shown_in_page("One attention weight", stop=False):
        r = backend.explain_attention(text, AttentionWeightOptions(layer=layer, head=head, query=q, key_position=k))
        if not PRESENTING:  # presenting, the last tab says it (one screen)
            st.markdown(f"**Layer {layer}, head {head}: query {q} → key {k}**: weight {r.weight:.4g} — the "
                        "pattern's cell above (row: query, column: key).")
        steps = attention_steps(r)
        for tab, (_, blocks) in zip(st.tabs([title for title, _ in steps], key="w_step"), steps):
            with tab:
                for block in blocks:
                    st.markdown(block, unsafe_allow_html=True)


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
            sel = (ss.get("route-graph") or {}).get("selection", {}).get("points", [])
            clicked = None
            if sel and sel != ss.get("_route_sel"):
                ss["_route_sel"] = sel
                clicked = clicked_node(sel)
                if clicked is not None:
                    if not PRESENTING:
                        st.toast(f"Drill-down below: layer {clicked[0]}, position {clicked[1]}, "
                                 f"{'attention' if clicked[2] == 'attn' else 'MLP'}", icon=":material/arrow_downward:")
                    ss.update(node_layer=clicked[0], node_pos=str(clicked[1]),
                              node_block="attention" if clicked[2] == "attn" else "MLP")
            # Presenting, the drill-down takes the graph's place once a node is picked (by a click, or a link
            # naming one); its choices are in the URL, so the link reopens it.
            # (The URL still names the node in the run after "Back": its widgets drop it from the URL as they run.)
            closing = ss.pop("_drill_down_closing", False)
            opened = not PRESENTING or clicked is not None or (
                not closing and any(k in st.query_params for k in NODE))
            # The graph goes here, drawn once the drill-down's widgets say which node to ring.
            graph_slot = st.container() if not PRESENTING or not opened else None

            def close_drill_down() -> None:
                ss.update({k: None for k in NODE}, _route_sel=None, _drill_down_closing=True)

            # Presenting and not opened: the drill-down's widgets are drawn but hidden (ui/present.py), so that a
            # click sets widgets that exist, which puts the node in the URL.
            with st.container(key="drill-down-open" if opened else "drill-down"):
                if not PRESENTING:
                    st.subheader("Drill down into one node")
                if opened and "node_block" not in st.query_params and ss.get("node_block") is None:
                    ss["node_block"] = "attention"
                c1, c2, c3, c4 = st.columns([2, 2, 2, 2 if PRESENTING else 0.01], vertical_alignment="bottom")
                asked = {k: st.query_params.get(k) for k in NODE}
                # No defaults of their own (None: the last layer, the output position), so that a click sets them
                # without a warning and a link without them follows the output position.
                layer = c1.number_input("Layer", 1, info.n_layers, value=None, key="node_layer", bind="query-params",
                                        placeholder=f"{info.n_layers} (the last)")
                npos = c2.selectbox("Position", POSITIONS, index=None, key="node_pos", bind="query-params",
                                    format_func=LABELS.get, placeholder=f"{labels[position]} (the output's)")
                block = c3.segmented_control("Block", ["attention", "MLP"], key="node_block", bind="query-params")
                if PRESENTING:
                    c4.button("Back to the routes", icon=":material/arrow_back:", on_click=close_drill_down,
                              key="drill-down-close")
                layer = int(layer) if layer is not None else info.n_layers
                npos = int(npos) if npos in POSITIONS else position
                block = block or "attention"
                if graph_slot is not None:
                    # Ringed: the node the drill-down below shows (presenting, none is shown under the graph).
                    fig = route_figure(graph, None if PRESENTING else
                                       (layer, npos, "attn" if block == "attention" else "mlp"))
                    with graph_slot:
                        chart(fig, key="route-graph", on_select="rerun", selection_mode="points",
                              export={"view": "routes", "numbers": graph, "texts": text, "model": info.name,
                                      "params": {"position": position, "threshold": float(threshold)}})
                        st.caption("Edge width = importance; blue: attention from another position, grey: residual, "
                                   "orange: MLP (through the diamond). Click a node to drill down"
                                   + (f", below. {len(graph.edge_layer)} edges; {graph.targets_computed} "
                                      "attention-block nodes evaluated (only what can reach the prediction is "
                                      "computed). " if not PRESENTING else ". ")
                                   + f"Model's prediction here: “{visible(graph.prediction)}”.")
                for k, what, valid, of, used in (
                        ("node_layer", "layer", range(1, info.n_layers + 1), f"the model's {info.n_layers} layers",
                         f"layer {layer}"),
                        ("node_pos", "position", [*POSITIONS, *labels], f"the prompt's {T} tokens",
                         f"position {npos}")):
                    note(link_note(what, asked[k], [str(v) for v in valid], of, used))
                detail = None
                if opened:
                    with shown_in_page("Drill-down", stop=False):
                        detail = backend.node_detail(text, NodeOptions(layer, npos,
                                                                       "attn" if block == "attention" else "mlp"))
                if detail is not None:
                    # Presenting: fewer sources and tokens per row, so that the table's columns fit beside the bars.
                    rows = node_table(detail, width=3, sources=1) if PRESENTING else node_table(detail)
                    lens_line = "**Logit lens of this node** (what the stream here would predict): " + " · ".join(
                        f"`{visible(t)}` {p:.2f}" for t, p in zip(detail.lens_tokens, detail.lens_probs.tolist()))
                    # Tall enough for every row: the last one is not left under the table's scroll bar.
                    table_height = 38 + 35 * len(rows) + 16
                    if PRESENTING:  # bars beside the table, on one screen
                        bars_col, table_col = st.columns([2, 3])
                        chart(node_bars_figure(detail, height=present.SCREEN_CHART - 60), key="node-bars",
                              where=bars_col, share=0.4)
                        table_col.dataframe(rows, hide_index=True, width="stretch",
                                            height=min(table_height, present.SCREEN_CHART - 100))
                        table_col.markdown(lens_line)
                    else:
                        chart(node_bars_figure(detail), key="node-bars")
                        st.markdown(lens_line)
                        st.dataframe(rows, hide_index=True, width="stretch", height=table_height)
                        st.caption("Promotes / suppresses: the tokens whose logits the write raises / lowers most "
                                   "when it is projected onto the vocabulary (final norm's scale, then the "
                                   "unembedding). " + (detail.note or ""))
                        download(detail, "node")
            download(graph, "routes")

# ---------------------------------------------------------------- rollout and flow
elif view == ROLLOUT:
    def sink_chart(figure, key: str, numbers, where, share: float, export: dict) -> None:
        """Rollout's or flow's heatmap, its "Leave out the first token" switched in the browser."""
        live_chart(figure, ["off", "on"], "on" if skip_sink else "off", key, (info.name, text, position,
                                                                              live.digest(numbers)),
                   ["rollout_skip_first"], sink_from_browser, where=where, export=export, share=share,
                   channel=SKIP_CHANNEL)

    plan = plan_flow(info.n_layers, T, position, info.is_causal)
    skip_help = ("Most attention parks on the first token (an attention sink); leaving its column out lets the "
                 "colour scale show how the rest is shared. The numbers are not renormalised.")
    skip_sink = extra_col.toggle("Leave out the first token", value=False, key="rollout_skip_first",
                                 bind="query-params", help=skip_help)
    if live.available():  # the browser's own switch: it redraws both charts at once (this one is hidden then)
        live.toggle_box(SKIP_CHANNEL, "Leave out the first token", bool(skip_sink), help=skip_help, where=extra_col)
    flow_help = ("A few seconds on this CPU; the result is cached." if plan.feasible else
                 f"This prompt is too long for attention flow ({plan.sources} > {plan.limit_last} tokens up to the "
                 "chosen position). Pick an earlier position or a shorter prompt; rollout has no such limit.")
    # Presenting, the flow switch sits with the other controls, and both charts side by side.
    flow_on = (extra_col if PRESENTING else st.container()).toggle(
        "Compute attention flow", key="flow", bind="query-params", disabled=not plan.feasible, help=flow_help)
    flow_on = flow_on and plan.feasible
    st.caption("Rollout: heads averaged, residual added, attention multiplied through the layers. "
               "Each row sums to 1." + (" Flow: max-flow through the same graph." if PRESENTING and flow_on else ""))
    roll_col, flow_col = st.columns(2) if PRESENTING and flow_on else (st, st)
    share = 0.5 if PRESENTING and flow_on else 1.0
    roll = None
    with shown_in_page("Rollout", stop=False):
        with st.spinner("Multiplying the attention of every layer…"):
            roll = backend.rollout(text, RolloutOptions(position))
    if roll is not None:
        sink_chart(lambda o: rollout_figure(roll, skip_first=o == "on"), "rollout", roll.rollout, roll_col, share,
                   {"view": "rollout", "numbers": roll, "texts": text, "model": info.name,
                    "params": {"position": position, "skip_first": bool(skip_sink)}})
        if not PRESENTING:
            download(roll, "rollout")
    if not PRESENTING:
        st.markdown("**Attention flow** (max-flow through the same graph, networkx)")
        st.caption(f"Flow solves one max-flow problem per input token and layer on a graph of ~L·T²/2 edges, so it is "
                   f"limited: every layer's row up to {plan.limit_all} tokens, the last layer's row up to "
                   f"{plan.limit_last} tokens (counting up to the chosen position) for this {info.n_layers}-layer "
                   f"model. Here: {plan.sources} tokens.")
        if not plan.feasible:
            st.info(f"This prompt is too long for attention flow ({plan.sources} > {plan.limit_last} tokens up to "
                    "the chosen position). Pick an earlier position or a shorter prompt; rollout above has no such "
                    "limit.")
    elif not plan.feasible:
        st.caption(f"Attention flow: too long a prompt ({plan.sources} > {plan.limit_last} tokens).")
    if flow_on:
        if plan.layers:
            flow_col.caption(f"Flow: only the last layer's row ({plan.sources} > {plan.limit_all} tokens for every "
                             "layer).")
        flow = None
        with shown_in_page("Attention flow", stop=False):
            with st.spinner("Solving max-flow problems…"):
                flow = backend.attention_flow(text, FlowOptions(position, plan.layers))
        if flow is not None:
            sink_chart(lambda o: rollout_figure(flow, skip_first=o == "on"), "flow-chart", flow.flow, flow_col, share,
                       {"view": "flow", "numbers": flow, "texts": text, "model": info.name,
                        "params": {"position": position, "layers": plan.layers, "skip_first": bool(skip_sink)}})
            if not PRESENTING:
                download(flow, "flow")

# ---------------------------------------------------------------- heads
else:
    def scores_chart(summary, metric: str, height, where, share: float) -> None:
        """Every head's score, the score switched in the browser; a click on a head shows its pattern."""
        live_chart(lambda m: head_summary_figure(summary, m, height=height), SCORES, metric, "head-summary",
                   (info.name, text, live.digest(summary.entropy, summary.prev_token, summary.induction), height),
                   ["head_metric"], score_from_browser, where=where, share=share, channel=SCORE_CHANNEL,
                   export={"view": "heads", "numbers": summary, "texts": text, "model": info.name,
                           "params": {"layer": None, "metric": metric}},
                   cells=(list(range(1, summary.n_layers + 1)), list(range(summary.n_heads))), on_cell=head_clicked)

    asked_layer, asked_head = st.query_params.get("head_layer"), st.query_params.get("head")
    asked_metric = st.query_params.get("head_metric")
    # Presenting a model with many heads: the head box beside the layer's (their buttons would not fit a row).
    head_in_box = PRESENTING and info.n_heads > PILLS_IN_A_ROW
    layer_at, head_at = pos_col.columns(2) if head_in_box else (pos_col, None)
    # No default of its own (it is the minimum, 1): a clicked head sets the box through session state, and a box
    # given a default as well makes Streamlit warn.
    layer = layer_at.number_input("Layer", 1, info.n_layers, key="head_layer", bind="query-params")
    note(link_note("layer", asked_layer, [str(v) for v in range(1, info.n_layers + 1)],
                   f"the model's {info.n_layers} layers", f"layer {int(layer)}"))
    # Presenting, the score box sits with the controls: picking a score shows every head's score in the
    # place of the layer's heads (one screen); clearing it brings them back. Without a score, no summary.
    patterns_area = st.container()  # the layer's heads, above the summary's section (drawn once it is known)
    metric_box = extra_col if PRESENTING else st.container()
    if not PRESENTING:
        metric_box.subheader("Every head at a glance")
    metric = metric_box.selectbox(
        "Score", list(SCORES), index=None, format_func=SCORES.get, key="head_metric", bind="query-params",
        placeholder="every head at a glance…" if PRESENTING else "pick a score to colour every head…",
        help="\n\n".join(f"**{SCORES[k]}**: {v[2]}" for k, v in SUMMARY_METRICS.items())
             + "\n\nOne score per head of every layer" + (", in the place of the layer's heads." if PRESENTING
                                                           else "."))
    note(link_note("score", asked_metric, [*SCORES, *SCORES.values()], "the scores " + ", ".join(SCORES.values()),
                   "none"))
    if metric is not None and live.available():  # the browser's own box, which recolours every head at once
        live.metric_box(SCORE_CHANNEL, "Score", {"": "none (the layer's heads)" if PRESENTING else "none", **SCORES},
                        metric, help="\n\n".join(f"{SCORES[k]}: {v[2]}" for k, v in SUMMARY_METRICS.items()),
                        where=metric_box)
    if not PRESENTING and metric is None:
        metric_box.caption("Entropy, previous-token and induction scores of every head of every layer.")
    summary = None
    if metric is not None:
        with shown_in_page("Head scores", stop=False):
            with st.spinner("Scoring every head…"):
                summary = backend.head_summary(text)
    with patterns_area:
        pats = None
        with shown_in_page("Head patterns", stop=False):
            with st.spinner(f"Reading the attention of layer {int(layer)}…"):
                pats = backend.head_patterns(text, HeadOptions(int(layer)))
        if pats is not None:
            heads = [str(h) for h in range(pats.n_heads)]
            named = [*heads, *(f"head {h}" for h in heads)]  # what a link may hold
            if ss.get("head") is None and asked_head not in named:
                ss["head"] = "0"  # no default of its own: a link or the session says which head, else head 0
            note(link_note("head", asked_head, named, f"layer {pats.layer}'s {pats.n_heads} heads",
                           f"head {ss['head'] if ss.get('head') in heads else 0}"))
            if head_in_box:
                pick = head_at.selectbox("Head", heads, index=None, key="head", bind="query-params",
                                         format_func=lambda h: f"head {h}")
                grid_col, head_col = st.columns(2)
            elif PRESENTING:  # one row of buttons across the screen, above both charts
                pick = st.pills("Click a head to enlarge it", heads, key="head", bind="query-params",
                                format_func=lambda h: f"head {h}", required=True)
                grid_col, head_col = st.columns(2)
            else:
                grid_col, head_col = st.columns(2)
                pick = head_col.pills("Click a head to enlarge it", heads, key="head", bind="query-params", wrap=True,
                                      format_func=lambda h: f"head {h}", required=True)
            head = int(pick) if pick in heads else 0
            height = present.SCREEN_CHART if PRESENTING else None
            # Presenting, a link naming a weight (?w_query=) shows its walk-through in the charts' place (one screen).
            walk_through = PRESENTING and not info.post_ln and st.query_params.get("w_query") is not None
            if walk_through:
                explain_weight(pats.layer, head)
            elif PRESENTING and summary is not None:  # every head's score in the layer's place
                scores_chart(summary, metric, height, grid_col, 0.5)
            else:
                chart(head_grid_figure(pats, columns=5 if PRESENTING else 6, height=height), key="head-grid",
                      where=grid_col, share=0.5,
                      export={"view": "heads", "numbers": pats, "texts": text, "model": info.name,
                              "params": {"layer": pats.layer}})
            if not walk_through:
                chart(pattern_figure(pats, head, height=height), key="head-pattern", where=head_col, share=0.5)
            if not PRESENTING:
                download(pats, "head_patterns")
            # Below the charts, in the normal view (presenting, the two charts fill the screen); a post-LN encoder's
            # attention reads no pre-norm residual stream of its own, whose steps the walk-through shows.
            if not PRESENTING and not info.post_ln:
                with st.expander(f"Explain one weight of layer {pats.layer}, head {head}: from q and k to the weight",
                                 expanded=True):
                    explain_weight(pats.layer, head)
    if summary is not None and not PRESENTING:
        st.caption(SUMMARY_METRICS[metric][2] + (
            f" The repeated sequence: {summary.repeat_length} random tokens, twice." if metric != "entropy" else
            f" Uniform attention over the whole prompt would be {summary.max_entropy:.2f} nats."))
        scores_chart(summary, metric, None, st, 1.0)
        download(summary, "head_summary")

if not PRESENTING:
    st.caption(f"{info.name} · {T} tokens · {info.n_layers} layers · {info.n_heads} heads. "
               "Use the camera icon on a chart to save a PNG for slides.")
