"""Probes: at which layer a labelled concept becomes linearly readable, and its direction as a steering vector."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.errors import LensError  # noqa: E402
from lens.figures.probes import accuracy_figure, probe_reading, probe_table  # noqa: E402
from lens.probes.data import SHIPPED, set_from_bytes, shipped, to_jsonl  # noqa: E402
from lens.probes.options import MAX_FOLDS, ProbeOptions  # noqa: E402
from lens.steering.store import SavedVector, VectorStore, check_name  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_value_unused, one_of, page_header, presenter_table,  # noqa: E402
                        say_link_values_unused, whole_in)

ss = st.session_state
PRESENTING = present.is_on()
FILE = "your CSV"
SETS = (*SHIPPED, FILE)

page_header("probes")
backend = state.backend()
info = backend.info()

unused = [(link_value_unused("set", one_of(SETS)), "set", "true-false"),
          (link_value_unused("folds", whole_in(2, MAX_FOLDS)), "folds", 5),
          (link_value_unused("l2", lambda v: 1e-6 <= float(v) <= 1e6), "L2 strength", 1.0)]
c = st.columns([1.4, 0.8, 0.8, 4], vertical_alignment="bottom")
name = c[0].selectbox("Labelled set", SETS, key="set", bind="query-params",
                      help="true-false: 72 plain statements, half false; reviews: 60 short reviews, half negative; "
                           "or a CSV with a prompt and a label column (two labels).")
folds = c[1].number_input("Folds", 2, MAX_FOLDS, 5, key="folds", bind="query-params",
                          help="k-fold cross-validation: each prompt is scored by a probe fitted without it.")
l2 = c[2].number_input("L2 λ", 1e-6, 1e6, 1.0, format="%g", key="l2", bind="query-params",
                       help="The penalty on the probe's weights (on standardised features); larger: simpler probes.")
if name == FILE:
    up = c[3].file_uploader("CSV file", type=["csv", "jsonl"], key="probe_file",
                            help="A header row with `prompt` and `label` (two values, e.g. true/false); other "
                                 "columns are ignored. Read as text, never run.")
elif not PRESENTING:
    c[3].caption(f"{SHIPPED[name][2]}; the probe reads “{SHIPPED[name][1]}”.")
say_link_values_unused(unused)

probe_set = None
with shown_in_page("The probe set", stop=False):
    if name == FILE:
        if up is None:
            st.info("Upload a CSV (or JSONL) with a prompt and a label column to probe your own concept.")
            st.stop()
        probe_set = set_from_bytes(up.getvalue(), up.name)
    else:
        probe_set = shipped(name)
if probe_set is None:
    st.stop()

r = None
with shown_in_page("Probes", stop=False):
    bar = st.progress(0.0, text="Reading every prompt's stream, then fitting a probe per layer…")
    r = backend.probe(probe_set, ProbeOptions(folds=int(folds), l2=float(l2)),
                      progress=lambda f, m: bar.progress(min(1.0, f), text=f"Probes: {m}"))
    bar.empty()
if r is None:
    st.stop()

export = {"view": "probe", "numbers": r, "texts": to_jsonl(probe_set), "model": info.name,
          "params": {"folds": int(folds), "l2": float(l2)}}
st.markdown(probe_reading(r))
chart(accuracy_figure(r, height=present.SCREEN_CHART - 40 if PRESENTING else 440), key="probe-acc", export=export)
if PRESENTING:
    st.stop()


def save_direction() -> None:
    """A callback (one save per click): the probe's direction at the chosen layer saved as a steering vector."""
    layer = int(ss["probe_layer"])
    row = layer - 1  # the lens row of the stream entering block ``layer``
    try:
        v = VectorStore().save(SavedVector(
            check_name(ss.get("probe_vector_name") or ""), info.name, info.fingerprint, layer, "probe",
            {"set": probe_set.name, "classes": list(r.classes), "accuracy": float(r.accuracy[row]),
             "folds": r.folds, "l2": r.l2}, r.directions[row]))
        ss["probe_saved"] = (f"Saved “{v.name}” (layer {layer}, ‖v‖ = {v.norm:.3g}): pick it on Steer the model, "
                             "vector “saved”.")
    except LensError as exc:
        ss["probe_saved"] = f"Not saved: {exc}"


best = r.layers.index(r.best_layer)
s = st.columns([0.8, 1.6, 1.3, 3.3], vertical_alignment="bottom")
s[0].number_input("Layer", 1, info.n_layers, min(info.n_layers, max(1, best + 1)), key="probe_layer",
                  help="The stream entering this block (the row after block layer − 1): where the direction is "
                       "read and where steering adds it. Default: the best row.")
s[1].text_input("Vector name", value=f"{probe_set.name} probe", key="probe_vector_name")
s[2].button("Save as steering vector", key="probe_save", on_click=save_direction)
said = ss.pop("probe_saved", None)
if said:
    s[3].caption(said)
st.caption(f"Held-out accuracy per layer ({r.folds}-fold); chance {r.chance:.0%}, its 95 % band "
           f"{r.band[0]:.0%}–{r.band[1]:.0%} over {r.n} prompts. The dotted line is the training accuracy.")
presenter_table(probe_table(r))
download_json(r, "probes")
