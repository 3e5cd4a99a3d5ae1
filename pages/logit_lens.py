"""Logit lens page: a layers × positions heatmap of what each layer would predict."""
import streamlit as st
from lens.options import FitOptions, LanguageOptions
from streamlit.errors import StreamlitAPIException

from ui.routing import require_app_router

require_app_router()

from lens.explain.options import CellOptions  # noqa: E402
from lens.figures.early_exit import early_exit_figure  # noqa: E402
from lens.figures.explain import cell_steps, tok  # noqa: E402
from lens.figures.language import language_figure  # noqa: E402
from lens.figures.lens_comparison import lens_comparison_figure  # noqa: E402
from lens.figures.logit_lens import METRICS, live_payload, logit_lens_figure, stride_to_fit  # noqa: E402
from lens.figures.style import slide_rows  # noqa: E402
from lens.examples import TRANSLATIONS  # noqa: E402
from lens.model.tokens import visible  # noqa: E402
from lens.options import LENS_LABELS, LensOptions  # noqa: E402
from lens.analysis.retarget import retarget  # noqa: E402
from lens.views import query_value  # noqa: E402
from lens.views.logit_lens import lens_ahead, lens_with_alternatives  # noqa: E402
from ui import live, lookahead, present, state  # noqa: E402
from ui.backends import HOSTING  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (PLOT_CONFIG, chart, download_json, export_controls, link_options,  # noqa: E402
                        link_value_unused, one_of, page_header, say_link_values_unused, whole_in)

WINDOW = 48  # positions shown at once by default on long prompts

page_header("logit_lens")

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


def lens_names() -> dict[str, str]:
    """The lenses offered: every kind the backend knows; the Jacobian lens once this model has one (it is
    imported from a checkpoint with the CLI, not fitted on the page)."""
    have = {f.kind for f in backend.lens_fits()}
    return {k: v for k, v in LENS_LABELS.items() if k != "jacobian" or k in have}


HEATMAP = "lens-live"  # the live heatmap's key (and its "Colour by" box's channel)
TARGET_PLACEHOLDER = "default: final top-1"
TARGET_HELP = "Type a token (e.g. ' Paris', with its leading space) to follow its rank and probability."
LIVE_TARGET_HELP = TARGET_HELP + " The list offers the model's top answers at the last position: those switch at once."
LIVE = live.available()  # else (no runtime, no plotly.js file) the plain chart, redrawn by the server


def metric_from_browser(metric: str) -> None:
    """The live chart's metric, reported after a switch in the browser: the box (and so the URL) follows."""
    if metric in METRICS:
        st.session_state["metric"] = metric


def stride_from_browser(value: str) -> None:
    """The layer stride the live chart shows, reported after a change in the browser: the box and the URL follow."""
    if value.isdigit() and 1 <= int(value) <= max(1, info.n_layers):
        st.session_state["stride"] = int(value)


def target_from_browser(value: str) -> None:
    """The target the live chart shows (one it offered, or another typed and committed there)."""
    st.session_state["target"] = value


def exits_from_browser(value: str) -> None:
    if value in ("on", "off"):
        st.session_state["exits"] = value == "on"


def cell_clicked(layer: int, position: int) -> None:
    """A clicked heatmap cell: "Show the work" opens on it."""
    for key, value in (("cell_layer", layer), ("cell_pos", position)):
        st.session_state[key] = value
        try:  # a closed panel's boxes start from the link: it must name this cell, not one from before
            st.query_params[key] = str(value)
        except StreamlitAPIException:
            pass  # the panel is open: its bound box takes the value (and writes the link) itself
    st.session_state["panel"] = WORK


@st.fragment
def lens_view(n: int) -> None:
    """The controls and the heatmap: changing a control reruns this view only, not the page."""
    names = lens_names()
    c0, c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 1, 1, 1.3], vertical_alignment="bottom")
    metric_labels = {k: m.label for k, m in METRICS.items()}
    # Link values these boxes cannot take (a typo, an old link): said under the controls, not ignored.
    unused = {"lens": link_value_unused("lens", one_of(names, names.values())),
              "metric": link_value_unused("metric", one_of(METRICS, metric_labels.values())),
              "top_k": link_value_unused("top_k", whole_in(1, 20)),
              "stride": link_value_unused("stride", whole_in(1, max(1, info.n_layers)))}
    link_options("lens", names)
    lens = c0.selectbox("Lens", list(names), format_func=names.get, key="lens", bind="query-params",
                        help="How each layer is read: as it is (logit lens) or through a map to the last layer "
                             "(linear shortcut, tuned lens; Jacobian lens once a checkpoint is imported).")
    link_options("metric", metric_labels)
    metric_help = "\n\n".join(f"**{m.label}**: {m.help}" for m in METRICS.values())
    metric = c1.selectbox("Colour by", list(METRICS), format_func=lambda k: METRICS[k].label, key="metric",
                          bind="query-params", help=metric_help)
    if LIVE:  # the browser's own box, which recolours the live chart at once (this one is hidden then)
        live.metric_box(HEATMAP, "Colour by", metric_labels, metric, help=metric_help.replace("**", ""), where=c1)
    target = c2.text_input("Target token", key="target", bind="query-params", placeholder=TARGET_PLACEHOLDER,
                           help=TARGET_HELP)
    top_k = c3.number_input("Top-k in hover", min_value=1, max_value=20, value=5, key="top_k", bind="query-params")
    # Presenter mode: as many rows as hold cell text at slide size (fewer rows, each readable).
    stride_default = stride_to_fit(info.n_layers + 1, slide_rows(present.SCREEN_CHART)) if present.is_on() else 1
    stride_help = "Show every n-th layer (the final layer is always shown)."
    exits_help = ("An orange line under the layer from which each column's top-1 is the model's final answer "
                  "for good.")
    # (No default of its own once the live chart has set it through session state: Streamlit warns otherwise.)
    stride = c4.number_input("Layer stride", min_value=1, max_value=max(1, info.n_layers),
                             value="min" if "stride" in st.session_state else min(stride_default, max(1, info.n_layers)),
                             key="stride", bind="query-params", help=stride_help)
    c5.toggle("Exits", key="exits", bind="query-params", help=exits_help)
    # Outside presenter mode the stride and the exit marks switch in the browser too (presenter mode fits each
    # stride's rows to the screen on the server).
    live_rows = LIVE and not present.is_on()
    if live_rows:
        live.number_box(HEATMAP, "stride", "Layer stride", int(stride), 1, max(1, info.n_layers), help=stride_help,
                        where=c4)
        live.toggle_box(HEATMAP, "Exits", bool(st.session_state.get("exits")), help=exits_help, where=c5,
                        option="exits")
    used = {"lens": LENS_LABELS[lens], "metric": METRICS[metric].label, "top_k": f"top-{int(top_k)}",
            "stride": f"a stride of {int(stride)}"}
    say_link_values_unused([(unused[key], what, used[key]) for key, what in (
        ("lens", "lens"), ("metric", "colour"), ("top_k", "top-k"), ("stride", "layer stride"))])

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

    if lens != "logit" and not fitted_lens_ready(lens):
        return
    bar = st.empty()
    progress = lambda f, m: bar.progress(f, text=f"Decoding every layer: {m}")  # noqa: E731
    options = LensOptions(top_k=int(top_k), target=target or None, positions=window, lens=lens)
    lookahead.register(lambda typed: lens_ahead(backend, typed, options, WINDOW), text)
    with shown_in_page("Logit lens"):
        # The default target's lens, the final top tokens followed as targets too (the live chart offers them),
        # and the lens with the target typed.
        base, result = lens_with_alternatives(backend, text, options, progress)
    bar.empty()
    if result.target_note:
        st.caption(f"ℹ️ {result.target_note}")

    exits = bool(st.session_state.get("exits"))
    export = {"view": "logit-lens", "numbers": result, "texts": text, "model": info.name,
              "params": {"metric": metric, "target": target or None, "stride": int(stride), "top_k": int(top_k),
                         "lens": lens, "exits": exits}}
    if LIVE:
        # Every metric's figure at once: the browser recolours without a rerun. The metric it shows comes back
        # after a pause (URL, exports); a clicked cell opens "Show the work" on it. A view drawn before (the
        # rerun that reports a switched metric, a prompt seen again) reuses its figures.
        # The numbers' digest too: a lens fitted again gives other numbers for the same prompt and options.
        # The payload's targets: the default, the final top tokens, and a target typed that is none of those.
        # (A token decoded as "" cannot be told from the default target: not offered.)
        targets = {t: retarget(base, t) for t in base.alternative_tokens if t}
        typed = target if target and target not in targets else None
        if typed:
            targets[typed] = result
        # What the figures are made of: another offered target shown is the same payload.
        numbers = live.digest(base.top_probs, base.kl_to_final, base.target_prob,
                              *([result.target_prob] if typed else []))
        # Outside presenter mode one payload serves every stride and both exit choices; every target offered.
        same = (info.name, text, int(top_k), typed, window, lens, present.is_on(), numbers,
                None if live_rows else (int(stride), exits))
        payload = live.payload_for(same, lambda: live_payload(base, stride=int(stride), show_exit=exits,
                                                               style=present.styled if present.is_on() else None,
                                                               targets=targets))
        final = len(base.layers) - 1
        first = {}  # each offered target's row among the alternatives (two decoded alike: the first, as retarget)
        for j, t in enumerate(base.alternative_tokens):
            if t in targets:
                first.setdefault(t, j)
        offered = {t: f"{visible(t)} · {base.alternative_prob[j, final, -1]:.1%} at position {base.positions[-1]}"
                   for t, j in first.items()}
        if typed:
            offered[typed] = f"{visible(typed)} · typed"
        live.text_box(HEATMAP, "target", "Target token", target or "", where=c2, help=LIVE_TARGET_HELP,
                      placeholder=TARGET_PLACEHOLDER, options=offered)
        shown = {"target": target or ""}
        on_option = {"target": target_from_browser}
        if live_rows:
            shown |= {"stride": str(int(stride)), "exits": "on" if exits else "off"}
            on_option |= {"stride": stride_from_browser, "exits": exits_from_browser}
        clicked = live.heatmap(payload, metric, key=HEATMAP, hide=["metric", "target"] + (
                                   ["stride", "exits"] if live_rows else []), on_metric=metric_from_browser,
                               on_cell=cell_clicked, config=PLOT_CONFIG, options=shown, on_option=on_option)
        if clicked.cell:
            st.rerun(scope="app")  # the panel is in another fragment
        # The exported figure is built when an export is clicked, not on every run.
        export_controls(lambda: logit_lens_figure(result, metric=metric, stride=int(stride), show_exit=exits),
                        "lens-heatmap", export)
    else:
        chart(logit_lens_figure(result, metric=metric, stride=int(stride), show_exit=exits), key="lens-heatmap",
              export=export)
    last = result.positions[-1]
    st.caption(
        f"{info.name} · {len(result.tokens)} tokens · {info.n_layers} layers"
        + (f" · positions {window[0]}–{window[1] - 1} shown" if window else "") + ". "
        f"The model's own next-token prediction "
        + ("at the last position" if last == n - 1 else f"at position {last}")
        + f": “{result.final_prediction[-1]}”. "
        + ("" if present.is_on() else ("Click a cell" if LIVE else "*More → Show the work*")
           + " to walk it through its computation. ")
        + "Use the camera icon on the chart to save a PNG for slides."
    )
    download_json(result, "logit_lens",
                  "Download the numbers (JSON)" + (" of the positions shown" if window else ""))


def fitted_lens_ready(kind: str) -> bool:
    """Whether this model has a lens of ``kind``; if not, say so and offer to fit it here (with progress)."""
    if any(f.kind == kind for f in backend.lens_fits()):
        return True
    if HOSTING.demo:
        st.info(f"This demo server has no {LENS_LABELS[kind]} for {info.name}: its host can fit one before the "
                f"talk with `python -m lens fit-lens --kind {kind}`. The logit lens works as always.")
        return False
    if kind == "jacobian":  # imported, never fitted here
        st.info(f"{info.name} has no Jacobian lens. Import a checkpoint from a terminal: "
                "`python -m lens fit-lens --kind jacobian --checkpoint FILE`.")
        return False
    if kind == "linear":
        st.info("This model's linear-shortcut lens is not fitted yet. Fitting reads the shipped corpus once "
                "(about 17,000 tokens; about a minute and a half for the bundled model on a laptop CPU) and keeps the "
                "maps in `cache/lenses/`, so it happens once per model. From a terminal: `python -m lens fit-lens`.")
        label = "Fit the linear lens now"
    else:
        st.info("This model has no tuned lens yet. Training starts from the linear shortcut and runs 100 steps of "
                "gradient descent on the KL to the final distribution (several minutes on a CPU). You can also load "
                "a checkpoint of the tuned-lens package: `python -m lens fit-lens --kind tuned --checkpoint FOLDER`.")
        label = "Train a tuned lens now"
    if st.button(label, key=f"fit-{kind}", type="primary"):
        bar = st.progress(0.0, text="Starting…")
        with shown_in_page(f"Fitting the {kind} lens"):
            backend.fit_lens(FitOptions(kind), progress=lambda f, m: bar.progress(min(f, 1.0), text=m))
        bar.empty()
        st.rerun()
    return False


# The panel's URL values are those of the views' registry entries (?panel=exit opens early exit).
COMPARE, EXIT, LANGUAGE = (query_value(v, "panel") for v in ("lens-comparison", "early-exit", "language"))
WORK = "work"  # one cell's computation, step by step (a table, not a view: no export)
PANELS = {COMPARE: "Compare lenses", EXIT: "Early exit", LANGUAGE: "Language of each layer", WORK: "Show the work"}


@st.fragment
def lens_panels(with_heatmap: bool = True) -> None:
    """What the lens says beyond the heatmap: lenses side by side, exit layers, scripts per layer.
    In presenter mode a panel takes the heatmap's place (one screen each)."""
    unused = link_value_unused("panel", one_of(PANELS, PANELS.values()))
    link_options("panel", PANELS)
    panel = st.segmented_control("More", list(PANELS), format_func=PANELS.get, key="panel", bind="query-params")
    if present.is_on() and bool(panel) == with_heatmap and st.session_state.get("_panel_drawn") != panel:
        st.session_state["_panel_drawn"] = panel
        st.rerun(scope="app")  # the heatmap and the panel trade places
    say_link_values_unused([(unused, "panel", "none")])
    lens = st.session_state.get("lens") or "logit"
    if lens != "logit" and not any(f.kind == lens for f in backend.lens_fits()):
        lens = "logit"  # not fitted yet: the panels read the logit lens (fitting is offered above)
    if panel == COMPARE:
        st.caption("Each lens this model has, on your prompt: per layer, the mean KL divergence to the model's "
                   "final distribution (lower: closer to the answer) and the share of positions whose top-1 is "
                   "already the answer.")
        with shown_in_page("Comparing lenses", stop=False):
            cmp = backend.lens_comparison(text) if n <= 512 else None
            if cmp is None:
                st.info("The comparison reads every position; shorten the prompt to 512 tokens or fewer.")
            else:
                chart(lens_comparison_figure(cmp), key="lens-compare",
                      export={"view": "lens-comparison", "numbers": cmp, "texts": text, "model": info.name,
                              "params": {}})
                if len(cmp.lenses) == 1:
                    st.caption("Only the logit lens so far: pick *linear shortcut* above to fit one and compare.")
    elif panel == EXIT:
        with shown_in_page("Early exit", stop=False):
            r = backend.logit_lens(text, LensOptions(top_k=1, lens=lens, positions=(max(0, n - 48), n)))
            # Past 48 tokens the view reads the same window (the chart's last 48), so a saved run or code is this chart.
            chart(early_exit_figure(r), key="lens-exit",
                  export={"view": "early-exit", "numbers": r, "texts": text, "model": info.name,
                          "params": {"lens": lens, "positions": [n - 48, n] if n > 48 else None}})
            early = sum(e is not None and e < len(r.layers) - 1 for e in r.exit_layer)
            st.caption(f"{LENS_LABELS[lens]}: {early} of {len(r.exit_layer)} positions"
                       + (" (the last 48)" if n > 48 else "") + " have the model's final answer as their top-1 "
                       "before the last layer, and keep it to the end.")
    elif panel == WORK:
        show_the_work()
    elif panel == LANGUAGE:
        c1, c2 = st.columns([3, 2])
        pick = c2.selectbox("Translation example", ["(your prompt)"] + list(TRANSLATIONS), key="lang_example",
                            bind="query-params")
        if pick != "(your prompt)":
            prompt, words = TRANSLATIONS[pick]
            c1.code(prompt, language=None)
        else:
            prompt = text
            words = c1.text_input("Words to follow (comma-separated, as they would be written next)",
                                  key="track", bind="query-params", placeholder="e.g. Blume,flower")
            words = tuple(w for w in words.split(",") if w) if words else ()
        with shown_in_page("Language of each layer", stop=False):
            m = backend.latent_language(prompt, LanguageOptions(words=tuple(words), lens=lens))
            chart(language_figure(m), key="lens-language",
                  export={"view": "language", "numbers": m, "texts": prompt, "model": info.name,
                          "params": {"position": None, "track": ",".join(words) or None, "lens": lens}})


def show_the_work() -> None:
    """One cell of the logit lens walked through with its real numbers: residual vector, final norm, logits,
    softmax; the layer and position are in the URL. A click on a cell of the live heatmap sets them
    (``cell_clicked``); the two boxes choose one exactly, its row and column as the heatmap labels them."""
    L, tokens = info.n_layers, backend.tokenize(text)
    unused = {"cell_layer": link_value_unused("cell_layer", whole_in(0, L)),
              "cell_pos": link_value_unused("cell_pos", whole_in(0, n - 1))}
    for key, ok, default in (("cell_layer", lambda v: 0 <= v <= L, L), ("cell_pos", lambda v: 0 <= v <= n - 1, n - 1)):
        if key in st.session_state and st.session_state[key] is not None and not ok(st.session_state[key]):
            del st.session_state[key]  # a value kept from a longer prompt
        # The boxes start at the last cell unless the link names one; set here rather than as the boxes'
        # defaults, because a clicked cell sets them too (Streamlit warns of a box with both).
        if key not in st.session_state and (key not in st.query_params or unused[key] is not None):
            st.session_state[key] = default
    c1, c2, c3 = st.columns([1, 1, 3], vertical_alignment="bottom")
    # value=None: no default of the boxes' own (they start above), so every cell, the embeddings' too, is in
    # the link; an emptied box shows the last cell.
    layer = c1.number_input("Layer (0: embeddings)", 0, L, None, key="cell_layer", bind="query-params",
                            help=f"The lens row: 0 the embeddings, {L} the model's own output.")
    pos = c2.number_input("Position", 0, n - 1, None, key="cell_pos", bind="query-params",
                          help="0 is the first token, as the heatmap's columns are numbered.")
    layer, pos = L if layer is None else layer, n - 1 if pos is None else pos
    c3.markdown(f"Position {int(pos)} is {tok(visible(tokens[int(pos)]))}: the cell predicts the token after it.",
                unsafe_allow_html=True)
    say_link_values_unused([(unused["cell_layer"], "layer", f"layer {int(layer)}"),
                            (unused["cell_pos"], "position", f"position {int(pos)}")])
    with shown_in_page("Showing the work", stop=False):
        r = backend.explain_cell(text, CellOptions(layer=int(layer), position=int(pos)))
        top = r.top[0]
        st.markdown(f"**{'Layer ' + r.layer_label if r.layer else 'The embeddings'}, position {r.position}**: "
                    f"top-1 {tok(top['token'])} with p = {top['prob']:.4g} — the heatmap's cell"
                    + (" (the model's own output)." if r.is_final else "."), unsafe_allow_html=True)
        for tab, (_, blocks) in zip(st.tabs([title for title, _ in cell_steps(r)], key="work_step"), cell_steps(r)):
            with tab:
                for block in blocks:
                    st.markdown(block, unsafe_allow_html=True)


# Presenter mode: the heatmap, or the panel the link or the "More" control names (both would not fit a screen).
panel_only = present.is_on() and bool(st.session_state.get("panel") or st.query_params.get("panel"))
if not panel_only:
    lens_view(n)
lens_panels(with_heatmap=not panel_only)
