"""Compare & patch page: which activations of a clean prompt restore its answer in a corrupted one."""
import streamlit as st
from lens.options import CellPatchOptions

from ui.routing import require_app_router

require_app_router()

from lens.examples import PATCH_PAIRS  # noqa: E402
from lens.figures.patching import (clicked_cell, comparison_figure, lens_rows_figure, metric_text,  # noqa: E402
                                   patch_figure, reach_figure, reading)
from lens.model.tokens import visible  # noqa: E402
from lens.figures.logit_lens import logit_lens_figure  # noqa: E402
from lens.options import PatchOptions, ablation_from_text  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, download_json, page_header  # noqa: E402

FIRST = next(iter(PATCH_PAIRS))
SITES = {"Residual stream": "resid", "Attention": "attn", "MLP": "mlp", "Heads": "head"}


def _use_pair() -> None:
    name = st.session_state.get("pair")
    if name in PATCH_PAIRS:
        clean, corrupt, target, foil = PATCH_PAIRS[name]
        st.session_state.update(clean=clean, corrupt=corrupt, patch_target=target, foil=foil)


page_header("patching")

backend = state.backend()
info = backend.info()
if not (info.has_lm_head and info.is_causal):
    st.warning(f"{info.name} is not a causal language model: patching its next-token answer does not apply.")
    st.stop()

c0, c1 = st.columns([2, 3], vertical_alignment="bottom")
c0.selectbox("Example pair", list(PATCH_PAIRS), index=None, key="pair", placeholder="pick an example pair…",
             on_change=_use_pair)
site_label = c1.segmented_control("Patch", list(SITES), default="Residual stream", key="site", bind="query-params")
site = SITES.get(site_label or "Residual stream", "resid")
clean_default, corrupt_default, target_default, foil_default = PATCH_PAIRS[FIRST]
a, b, t, f = st.columns([4, 4, 1.2, 1.2], vertical_alignment="bottom")
clean = a.text_input("Clean prompt", value=clean_default, key="clean", bind="query-params")
corrupt = b.text_input("Corrupted prompt", value=corrupt_default, key="corrupt", bind="query-params")
target = t.text_input("Target", value=target_default, key="patch_target", bind="query-params",
                      help="The clean prompt's answer: one token, with its leading space (' Paris').")
foil = f.text_input("Foil", value=foil_default, key="foil", bind="query-params",
                    help="The corrupted prompt's answer (' Rome'). Leave it empty to use the target's log-probability.")
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

# A click on a cell of the grid picks it for "Patch one cell" (before that tab's widgets exist).
picked = clicked_cell((st.session_state.get("patch") or {}).get("selection", {}).get("points", []))
if picked is not None and picked != st.session_state.get("_patch_pick"):
    st.session_state["_patch_pick"] = picked
    st.session_state["cell_row"] = "emb" if picked[0] == 0 else f"L{picked[0]}"
    st.session_state["cell_pos"] = str(picked[1])
    st.toast(f"Row {st.session_state['cell_row']}, position {picked[1]}: see the tab “Patch one cell”",
             icon=":material/touch_app:")

HEIGHT = present.SCREEN_CHART - 90 if present.is_on() else 480  # two rows of inputs and the tabs above
grid_tab, rows_tab, cell_tab, ablate_tab, models_tab = st.tabs(
    ["Patching grid", "The lens of both prompts", "Patch one cell", "Ablate", "Two models"])
with grid_tab:
    chart(patch_figure(result, height=HEIGHT), key="patch",
          export={"view": "patch", "numbers": result, "texts": [clean, corrupt], "model": info.name},
          **({"on_select": "rerun", "selection_mode": "points"} if site == "resid" else {}))
    st.caption(f"{reading(result)} Metric: {metric_text(result)} at the last position.")
    if not present.is_on():
        download_json(result, f"patch-{site}")

with rows_tab:
    chart(lens_rows_figure(result, height=HEIGHT), key="patch-rows")
    st.caption("Where each prompt's answer can be *read* (the logit lens at the last position), beside where "
               "patching says it is *computed* (the grid). The lens often reads the answer only in the last layers, "
               "while the grid shows the subject carrying it from the first ones.")

with cell_tab:
    L, T = info.n_layers, len(result.corrupt_tokens)
    c_row, c_pos, c_out = st.columns([1, 1, 3], vertical_alignment="bottom")
    rows = ["emb", *(f"L{r}" for r in range(1, L + 1))]  # what the URL shows: ?cell_row=L5&cell_pos=2
    row = c_row.selectbox("Row", rows, key="cell_row", bind="query-params",
                          **({} if "cell_row" in st.session_state else {"index": min(L, L // 3)}),
                          help="The residual-stream row whose vector comes from the clean run (emb: the input of L1).")
    positions = [str(p) for p in range(T)]
    first_diff = next((p for p in range(T) if result.tokens[p] != result.corrupt_tokens[p]), T - 1)
    pos = c_pos.selectbox("Position", positions, key="cell_pos", bind="query-params",
                          **({} if "cell_pos" in st.session_state else {"index": first_diff}),
                          help="0-based, as on the grid's axis.")
    row_i = rows.index(row) if row in rows else L // 3
    pos_i = int(pos) if pos in positions else first_diff
    patched = plain = None
    with shown_in_page("Patching one cell", stop=False):
        patched = backend.patched_lens(clean, corrupt, CellPatchOptions(row_i, pos_i))
        plain = backend.logit_lens(corrupt)
    if patched is not None:
        before, after = visible(plain.final_prediction[-1]), visible(patched.final_prediction[-1])
        c_out.markdown(f"Final prediction of the corrupted prompt: **{before}** "
                       f"({plain.top_probs[-1, -1, 0]:.0%}) → after the patch **{after}** "
                       f"({patched.top_probs[-1, -1, 0]:.0%})")
        chart(reach_figure(patched, row_i, pos_i, height=HEIGHT - 40), key="patch-cell")

with ablate_tab:
    a1, a2, a3, a4, a5 = st.columns([2, 1.5, 1.5, 1.2, 1.2], vertical_alignment="bottom")
    heads_text = a1.text_input("Heads (layer.head, …)", key="ablate_heads", bind="query-params", placeholder="e.g. 20.3, 21.0")
    mlp_text = a2.text_input("MLP blocks", key="ablate_mlp", bind="query-params", placeholder="e.g. 1, 2")
    skip_text = a3.text_input("Skip layers", key="ablate_skip", bind="query-params", placeholder="e.g. 15")
    swap_text = a4.text_input("Swap L:M", key="ablate_swap", bind="query-params", placeholder="e.g. 10:11")
    mode = a5.selectbox("Replace by", ["zero", "mean"], key="ablate_mode", bind="query-params")
    with shown_in_page("Ablating", stop=False):
        ablation = ablation_from_text(heads_text, mlp_text, skip_text, swap_text, mode or "zero")
        if ablation.empty:
            st.info("Name heads, MLP blocks or layers to take out of the model, or two layers to swap: the lens of the "
                    "clean prompt on the modified model appears here, beside the unmodified prediction.")
        else:
            modified, original = backend.ablated_lens(clean, ablation), backend.logit_lens(clean)
            st.markdown(f"Final prediction of the clean prompt: **{visible(original.final_prediction[-1])}** "
                        f"({original.top_probs[-1, -1, 0]:.0%}) → on the modified model "
                        f"**{visible(modified.final_prediction[-1])}** ({modified.top_probs[-1, -1, 0]:.0%})")
            chart(logit_lens_figure(modified).update_layout(height=HEIGHT - 40), key="ablated-lens")
            st.caption("The clean prompt's logit lens on the modified model. Zero ablation removes what a head or MLP "
                       "writes; mean ablation puts in its average over the prompt's positions instead (the usual "
                       "control: it keeps the part that does not depend on the token). A skipped layer passes its "
                       "input on; swapped layers run in each other's place (Lad et al. 2024, \"layers as painters\").")

with models_tab:
    m1, m2 = st.columns([2, 3], vertical_alignment="bottom")
    choices = [m for m in state.model_choices() if m != info.name] or state.model_choices()
    other_ref = m1.selectbox("Compare the sidebar's model with", choices, key="other_model", bind="query-params",
                             accept_new_options=not state.HOSTING.demo,
                             help="Another model with the same tokenizer and depth: a fine-tuned local folder beside "
                                  "its base, say.")
    other = state.backend_for(other_ref) if other_ref else None
    if other is not None:
        comparison = None
        with shown_in_page("Comparing the models", stop=False):
            comparison = backend.compare_with(other, clean)
        if comparison is not None:
            m2.markdown(f"On the clean prompt the two lenses pick the same top-1 token in "
                        f"**{comparison.agree.mean():.0%}** of the cells; at the last row, "
                        f"{comparison.agree[-1].mean():.0%}.")
            diff_tab, side_tab = st.tabs(["Difference per cell", "Both lenses side by side"])
            with diff_tab:
                chart(comparison_figure(comparison, height=HEIGHT - 80), key="compare-models")
                st.caption("Each cell: the KL divergence between the two models' logit-lens distributions (0: they "
                           "predict alike), with the top-1 token of each where they differ (first|second).")
            with side_tab:
                left, right = st.columns(2)
                for where, b, key in ((left, backend, "lens-a"), (right, other, "lens-b")):
                    lens = b.logit_lens(clean)
                    fig = logit_lens_figure(lens).update_layout(height=HEIGHT - 80, title_text=f"{b.info().name}")
                    chart(fig, key=key, where=where)
