"""Compare & patch page: which activations of a clean prompt restore its answer in a corrupted one."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.examples import PATCH_PAIRS  # noqa: E402
from lens.figures.patching import metric_text, patch_figure, reading  # noqa: E402
from lens.options import PatchOptions  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, download_json  # noqa: E402

FIRST = next(iter(PATCH_PAIRS))
SITES = {"Residual stream": "resid", "Attention": "attn", "MLP": "mlp", "Heads": "head"}


def _use_pair() -> None:
    name = st.session_state.get("pair")
    if name in PATCH_PAIRS:
        clean, corrupt, target, foil = PATCH_PAIRS[name]
        st.session_state.update(clean=clean, corrupt=corrupt, patch_target=target, foil=foil)


st.title("Compare & patch")
with st.expander("What am I looking at?", expanded=False):
    st.markdown(
        """
Two prompts that differ in a few tokens: a **clean** one the model answers with the *target* (" Paris"), and a
**corrupted** one where it answers the *foil* (" Rome"). The model runs on the corrupted prompt again and again, each
time with **one** activation taken from the clean run, and we measure how far that single patch moves the answer back:
the metric is `logit(target) − logit(foil)` at the last position, and each cell shows
`(metric after the patch − corrupted) / (clean − corrupted)`: **0** (white) changes nothing, **1** (blue) restores the
clean answer fully, red pushes the other way.

- **Residual stream**: rows as in the logit lens (`emb` is the input of layer 1, `Ln` the output of layer n), columns are
  positions. Where the answer is *computed* shows up as a band: typically the subject's tokens in the middle layers,
  then the last token in the late layers, once the information has moved there.
- **Attention / MLP**: what one block's attention or MLP writes at one position. **Heads**: one head of one layer,
  patched at every position.

Causal tracing (Meng et al. 2022, ROME) and activation patching (Heimersheim & Nanda 2024) are the methods behind it.
The two prompts must have the same number of tokens: position by position, one vector replaces another.
"""
    )

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

chart(patch_figure(result, height=present.SCREEN_CHART - 30 if present.is_on() else 480), key="patch")  # two prompt rows above
st.caption(f"{reading(result)} Metric: {metric_text(result)} at the last position.")
if not present.is_on():
    download_json(result, f"patch-{site}")
