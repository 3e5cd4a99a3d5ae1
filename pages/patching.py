"""Compare & patch page: which activations of a clean prompt restore its answer in a corrupted one."""
import streamlit as st
from lens.options import CellPatchOptions

from ui.routing import require_app_router

require_app_router()

from lens.analysis.compare import peek_shape, shape_of, why_not_comparable  # noqa: E402
from lens.figures.patching import (ROWS_NOTE, clicked_cell, comparison_figure, lens_rows_figure,  # noqa: E402
                                   metric_text, noise_figure, noise_reading, patch_figure, reach_figure, reading,
                                   readable_rows)
from lens.model.tokens import visible  # noqa: E402
from lens.figures.logit_lens import logit_lens_figure, stride_to_fit  # noqa: E402
from lens.figures.style import slide_rows  # noqa: E402
from lens.model.registry import BUNDLED, TINY_ARCHS  # noqa: E402
from lens.options import NoiseOptions, PatchOptions, ablation_from_text  # noqa: E402
from lens.views.attention import link_note  # noqa: E402
from ui import present, state  # noqa: E402
from ui.backends import loaded_models  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.experiment import link_to_label, pair_boxes, pair_picker  # noqa: E402
from ui.widgets import chart, download_json, page_header  # noqa: E402

SITES = {"Residual stream": "resid", "Attention": "attn", "MLP": "mlp", "Heads": "head"}
# The tabs: Streamlit keeps the label in the URL (?tab=Patch+one+cell); a link may also name one by its short name.
TABS = {"grid": "Patching grid", "lens": "The lens of both prompts", "cell": "Patch one cell", "ablate": "Ablate",
        "models": "Two models", "noise": "Noise on the subject"}
ss = st.session_state


page_header("patching")
link_to_label("tab", TABS)

backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal):
    st.warning(f"{info.name} is not a causal language model: patching its next-token answer does not apply.")
    st.stop()

c0, c1 = st.columns([2, 3], vertical_alignment="bottom")
pair_picker(c0)
site_label = c1.segmented_control("Patch", list(SITES), default="Residual stream", key="site", bind="query-params")
site = SITES.get(site_label or "Residual stream", "resid")
a, b, t, f = st.columns([4, 4, 1.2, 1.2], vertical_alignment="bottom")
clean, corrupt, target, foil = pair_boxes(a, b, t, f)
if not clean.strip() or not corrupt.strip() or not target:
    st.info("Type a clean and a corrupted prompt and the target token, or pick an example pair.")
    st.stop()

result = None
with shown_in_page("Patching", stop=False):
    bar = st.progress(0.0, text="Patching…")
    result = backend.patch(clean, corrupt, PatchOptions(target=target, foil=foil or None, site=site),
                           progress=lambda x, m: bar.progress(min(1.0, x), text=m))
    bar.empty()
if result is None:
    st.stop()

L, T = info.n_layers, len(result.corrupt_tokens)
ROWS = ["emb", *(f"L{r}" for r in range(1, L + 1))]  # what the URL shows: ?cell_row=L5&cell_pos=2
POSITIONS = [str(p) for p in range(T)]
FIRST_DIFF = next((p for p in range(T) if result.tokens[p] != result.corrupt_tokens[p]), T - 1)
DEFAULT_ROW = ROWS[min(L, L // 3)]

# A click on a cell of the grid patches it alone: its tab opens on it (set before the widgets exist).
picked = clicked_cell((ss.get("patch") or {}).get("selection", {}).get("points", []))
if picked is not None and picked != ss.get("_patch_pick"):
    ss["_patch_pick"] = picked
    ss["tab"] = TABS["cell"]  # drawn last run: set again, it writes itself into the URL
    # The cell's boxes were not drawn on the grid's tab: a value set for them now would not reach the URL, so the
    # URL names the cell and the page runs again from it (as a link naming a cell does).
    try:
        st.query_params.update(cell_row=ROWS[picked[0]], cell_pos=str(picked[1]))
    except st.errors.StreamlitAPIException:  # drawn after all: set them instead
        ss["cell_row"], ss["cell_pos"] = ROWS[picked[0]], str(picked[1])
    else:
        st.rerun()

tab_note = link_note("tab", st.query_params.get("tab"), [*TABS, *TABS.values()], "this page's tabs",
                     f"“{TABS['grid']}”")
if tab_note:
    st.caption(f"ℹ️ The link's {tab_note}")
HEIGHT = present.SCREEN_CHART - 90 if present.is_on() else 480  # two rows of inputs and the tabs above
# Bound to the URL, so a link opens the tab it was copied from; only the open tab is computed.
grid_tab, rows_tab, cell_tab, ablate_tab, models_tab, noise_tab = st.tabs(list(TABS.values()), key="tab",
                                                                         bind="query-params")
if grid_tab.open:
    with grid_tab:
        chart(patch_figure(result, height=HEIGHT), key="patch",
              export={"view": "patch", "numbers": result, "texts": [clean, corrupt], "model": info.name,
                      "params": {"target": target, "foil": foil or None, "site": site}},
              **({"on_select": "rerun", "selection_mode": "points"} if site == "resid" else {}))
        # Presenting, the reading alone (the chart's title names the metric): the caption's last line ran under
        # the Leave presenter mode button.
        st.caption(reading(result) if present.is_on() else
                   f"{reading(result)} Metric: {metric_text(result)} at the last position. " + ROWS_NOTE
                   + (" Click a cell to patch it alone." if site == "resid" else ""))
        if not present.is_on():
            download_json(result, f"patch-{site}")

PRESENTING = present.is_on()
SIDE = present.SCREEN_CHART - 40  # presenting: a chart beside its controls, under the inputs and the tabs


def strided(n_rows: int) -> int:
    """Presenting: the layer stride whose rows hold slide-size text on a SIDE px chart (every row otherwise)."""
    return stride_to_fit(n_rows, slide_rows(SIDE)) if PRESENTING else 1


if rows_tab.open:
    with rows_tab:
        chart(lens_rows_figure(result, height=HEIGHT), key="patch-rows")
        if not PRESENTING:
            st.caption("Where each prompt's answer can be *read* (the logit lens at the last position), beside where "
                       "patching says it is *computed* (the grid). The lens often reads the answer only in the last "
                       "layers, while the grid shows the subject carrying it from the first ones.")

if cell_tab.open:
    with cell_tab:
        notes = [link_note("row", st.query_params.get("cell_row"), ROWS, f"the rows emb, L1–L{L}",
                           f"row {ss.get('cell_row') if ss.get('cell_row') in ROWS else DEFAULT_ROW}", "patching"),
                 link_note("position", st.query_params.get("cell_pos"), POSITIONS, f"the prompts' {T} tokens",
                           f"position {ss.get('cell_pos') if ss.get('cell_pos') in POSITIONS else FIRST_DIFF}",
                           "patching")]
        if PRESENTING:  # the controls beside the chart: the chart gets the screen's height
            side, main = st.columns([1, 3])
            c_row, c_pos, c_out = side.columns(2, vertical_alignment="bottom") + [side]
        else:
            c_row, c_pos, c_out = st.columns([1, 1, 4], vertical_alignment="bottom")
            main = st
        # No defaults of their own (None: a third of the way up, the first token that differs), so that a click
        # on the grid sets them without a warning, and a link without them follows the prompts.
        row = c_row.selectbox("Row", ROWS, index=None, key="cell_row", bind="query-params", placeholder=DEFAULT_ROW,
                              help="The residual-stream row whose vector comes from the clean run (emb: the input "
                                   "of L1).")
        pos = c_pos.selectbox("Position", POSITIONS, index=None, key="cell_pos", bind="query-params",
                              placeholder=str(FIRST_DIFF),
                              help="0-based, as on the grid's axis.")
        notes = [n for n in notes if n]
        for note in notes:
            c_out.caption(f"ℹ️ The link's {note}")
        row_i = ROWS.index(row) if row in ROWS else ROWS.index(DEFAULT_ROW)
        pos_i = int(pos) if pos in POSITIONS else FIRST_DIFF
        patched = plain = None
        with shown_in_page("Patching one cell", stop=False):
            patched = backend.patched_lens(clean, corrupt, CellPatchOptions(row_i, pos_i))
            plain = backend.logit_lens(corrupt)
        if patched is not None:
            before, after = visible(plain.final_prediction[-1]), visible(patched.final_prediction[-1])
            c_out.markdown(f"The corrupted prompt's prediction: **{before}** ({plain.top_probs[-1, -1, 0]:.0%}) → "
                           f"with this cell from the clean run: **{after}** ({patched.top_probs[-1, -1, 0]:.0%})")
            chart(reach_figure(patched, row_i, pos_i, height=SIDE if PRESENTING else 640, stride=strided(L + 1)),
                  key="patch-cell", where=main, share=0.75 if PRESENTING else 1.0)
            if not (PRESENTING and notes):  # presenting, the link's notes take its place in the column
                c_out.caption("Outlined: the cells the patch can reach, its row and those above, at its position and "
                              "after (a decoder reads only back)."
                              + (f" Every {strided(L + 1)}th row shown." if strided(L + 1) > 1 else ""))

if ablate_tab.open:
    with ablate_tab:
        if PRESENTING:
            side, main = st.columns([1.3, 3])
            a1, a2 = side.columns(2)
            a3, a4 = side.columns(2)
            a5, out = side, side
        else:
            a1, a2, a3, a4, a5 = st.columns([2, 1.5, 1.5, 1.2, 1.2], vertical_alignment="bottom")
            main = out = st
        heads_text = a1.text_input("Heads (L.H, …)", key="ablate_heads", bind="query-params",
                                   placeholder="e.g. 20.3, 21.0", help="Heads to take out, as layer.head.")
        mlp_text = a2.text_input("MLP blocks", key="ablate_mlp", bind="query-params", placeholder="e.g. 1, 2")
        skip_text = a3.text_input("Skip layers", key="ablate_skip", bind="query-params", placeholder="e.g. 15")
        swap_text = a4.text_input("Swap L:M", key="ablate_swap", bind="query-params", placeholder="e.g. 10:11")
        mode = a5.selectbox("Replace by", ["zero", "mean"], key="ablate_mode", bind="query-params")
        with shown_in_page("Ablating", stop=False):
            ablation = ablation_from_text(heads_text, mlp_text, skip_text, swap_text, mode or "zero")
            if ablation.empty:
                main.info("Name heads, MLP blocks or layers to take out of the model, or two layers to swap: the lens "
                          "of the clean prompt on the modified model appears here, beside the unmodified prediction.")
            else:
                modified, original = backend.ablated_lens(clean, ablation), backend.logit_lens(clean)
                out.markdown(f"The clean prompt's prediction: **{visible(original.final_prediction[-1])}** "
                             f"({original.top_probs[-1, -1, 0]:.0%}) → on the modified model "
                             f"**{visible(modified.final_prediction[-1])}** ({modified.top_probs[-1, -1, 0]:.0%})")
                fig = readable_rows(logit_lens_figure(modified, stride=strided(L + 1)), SIDE if PRESENTING else 640)
                chart(fig, key="ablated-lens", where=main, share=0.7 if PRESENTING else 1.0)
                if not PRESENTING:
                    st.caption("The clean prompt's logit lens on the modified model. Zero ablation removes what a "
                               "head or MLP writes; mean ablation puts in its average over the prompt's positions "
                               "instead (the usual control: it keeps the part that does not depend on the token). A "
                               "skipped layer passes its input on; swapped layers run in each other's place (Lad et "
                               "al. 2024, \"layers as painters\").")


def other_shape(ref: str):
    """``ref``'s shape: from its backend when it is loaded, else from its files; a bundled model whose files do
    not tell (a GGUF not converted yet) is loaded. None when only loading would tell."""
    if ref in loaded_models():
        other = state.backend_for(ref)
        return shape_of(other.info()) if other is not None else None
    shape = peek_shape(ref)
    if shape is None and ref in BUNDLED:
        other = state.backend_for(ref)
        shape = shape_of(other.info()) if other is not None else None
    return shape


def candidates() -> list[str]:
    """The models this server offers beside the sidebar's: its list (bundled, or the demo's), the tiny test
    models when the sidebar runs one, and any other model loaded here (a folder someone typed)."""
    out = state.model_choices()
    if not state.HOSTING.demo:
        if info.source == "tiny":
            out += [f"tiny-{a}" for a in TINY_ARCHS]
        out += [m for m in loaded_models() if ":" not in m]  # "nnsight:…": the same model on another engine
    return [m for m in dict.fromkeys(out) if m != info.name]


if models_tab.open:
    with models_tab:
        base = shape_of(info)
        shapes = {ref: other_shape(ref) for ref in candidates()}
        reasons = {ref: why_not_comparable(base, s) if s is not None else f"{ref}: its files do not say what it is"
                   for ref, s in shapes.items()}
        offered = [ref for ref, why in reasons.items() if why is None]
        asked = st.query_params.get("other_model")
        # Presenting: the choices in a column beside the chart, which gets the screen's height.
        m1, m2 = st.columns([1, 3]) if PRESENTING else st.columns([2, 3], vertical_alignment="bottom")
        other_ref = m1.selectbox(
            "Compare the sidebar's model with", offered, index=0 if offered else None, key="other_model",
            bind="query-params", accept_new_options=not state.HOSTING.demo,
            placeholder="no other model on offer" if state.HOSTING.demo else "type a model folder or hub id…",
            help=f"A causal language model with the tokenizer ({base.vocab_size:,} tokens) and the depth "
                 f"({base.n_layers} layers) of {info.name}: a fine-tuned copy beside its base, say.")
        if not offered:
            why = "; ".join(reasons.values())
            m2.markdown(
                f"No model on this server can be compared with **{info.name}**: that needs a causal language model "
                f"with its tokenizer ({base.vocab_size:,} tokens) and its {base.n_layers} layers"
                + (f" ({why})." if why else ".")
                + ("" if state.HOSTING.demo else f" Type the folder of one on this machine (a fine-tuned copy of "
                   f"{info.name}, say) or a hub id in the box."))
        if asked is not None and asked != other_ref and state.HOSTING.demo:  # the demo's box cannot take it
            m1.caption(f"ℹ️ The link's model {asked[:60]} is not on offer here"
                       + (f": showing {other_ref}." if other_ref else "."))
        other = None
        if other_ref:
            # Typed or linked: what its files or its loaded backend tell, before anything is compared.
            shape = shapes[other_ref] if other_ref in shapes else other_shape(other_ref)
            why = why_not_comparable(base, shape) if shape is not None else None
            if why is None:
                other = state.backend_for(other_ref)
                why = why_not_comparable(base, shape_of(other.info())) if other is not None and shape is None else None
            if why is not None:
                (m2 if PRESENTING else st).warning(
                    f"{why[:1].upper()}{why[1:]}: it cannot be compared with {info.name} cell by cell.", icon="⚠️")
                other = None
        if other is not None:
            comparison = None
            with shown_in_page("Comparing the models", stop=False):
                comparison = backend.compare_with(other, clean)
            if comparison is not None:
                (m1 if PRESENTING else m2).markdown(
                    f"On the clean prompt the two lenses pick the same top-1 token in "
                    f"**{comparison.agree.mean():.0%}** of the cells; at the last row, "
                    f"{comparison.agree[-1].mean():.0%}.")
                show = (m1 if PRESENTING else st).segmented_control(
                    "Show", ["Difference", "Both lenses"], default="Difference", key="models_show",
                    bind="query-params", required=True) or "Difference"
                where = m2 if PRESENTING else st
                height = present.SCREEN_CHART if PRESENTING else 640
                if show == "Difference":
                    chart(readable_rows(comparison_figure(comparison), height), key="compare-models", where=where,
                          share=0.75 if PRESENTING else 1.0)
                    if not PRESENTING:
                        st.caption("Each cell: the KL divergence between the two models' logit-lens distributions "
                                   "(0: they predict alike), with the top-1 token of each where they differ "
                                   "(first|second).")
                else:
                    left, right = where.columns(2)
                    for col, b, key in ((left, backend, "lens-a"), (right, other, "lens-b")):
                        fig = readable_rows(logit_lens_figure(b.logit_lens(clean), stride=strided(L + 1)), height)
                        fig.update_xaxes(title_text="position · token")  # the lens's own title is too wide here
                        chart(fig.update_layout(title_text=f"{b.info().name}"), key=key, where=col,
                              share=0.375 if PRESENTING else 0.5)


if noise_tab.open:
    with noise_tab:
        if site == "head":
            st.info("Noise tracing restores the residual stream, attention or MLP outputs: pick one of those above.")
            st.stop()
        labels = [f"{p}·{visible(t)}" for p, t in enumerate(result.tokens)]
        differs = [labels[p] for p in range(T) if result.tokens[p] != result.corrupt_tokens[p]]
        n1, n2, n3 = st.columns([4, 1, 1], vertical_alignment="bottom")
        # The tokens the corrupted prompt changes are the subject by default: the noise takes their place.
        noised = n1.multiselect("Noise on", labels, default=differs or labels[1:2], key="noise_on",
                                bind="query-params",
                                help="The tokens whose embeddings get the noise (typically the subject's). Only "
                                     "the clean prompt is used here: no second prompt.")
        samples = n2.number_input("Samples", 1, 20, 5, key="noise_samples", bind="query-params",
                                  help="Noise samples averaged per cell (seeded: the same number gives the same "
                                       "chart).")
        seed = n3.number_input("Seed", 0, 10_000, 0, key="noise_seed", bind="query-params")
        if not noised:
            st.info("Pick the tokens to put noise on.")
            st.stop()
        subject = [labels.index(x) for x in noised]
        traced = None
        with shown_in_page("Tracing with noise", stop=False):
            bar = st.progress(0.0, text="Tracing with noise…")
            traced = backend.noise_trace(clean, NoiseOptions(
                target=target, subject=tuple(subject), foil=foil or None, site=site, samples=int(samples),
                seed=int(seed)), progress=lambda x, m: bar.progress(min(1.0, x), text=m))
            bar.empty()
        if traced is not None:
            chart(noise_figure(traced, height=HEIGHT - (70 if PRESENTING else 0)), key="noise",
                  export={"view": "noise-trace", "numbers": traced, "texts": clean, "model": info.name,
                          "params": {"target": target, "subject": ",".join(map(str, subject)),
                                     "foil": foil or None, "site": site, "samples": int(samples),
                                     "seed": int(seed)}})
            st.caption(noise_reading(traced) if PRESENTING else
                       f"{noise_reading(traced)} {traced.samples} noise samples of standard deviation "
                       f"{traced.noise_std:.3f} (3× the prompt's embeddings'). {ROWS_NOTE}")
            if not PRESENTING:
                download_json(traced, f"noise-{site}")
