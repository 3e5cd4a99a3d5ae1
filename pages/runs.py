"""Saved runs: the views kept with their numbers, opened again without recomputing; two side by side."""
import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.runs import difference_figure  # noqa: E402
from lens.runs import RunStore, open_view  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import chart, page_header  # noqa: E402

ANY = "(any)"

page_header("runs")
store = None
with shown_in_page("Opening the saved runs"):
    store = RunStore()
everything = store.list()
if not everything:
    st.info("No saved run yet: use **Save run** under a chart, or `--save NAME` on any command "
            f"(`python -m lens logit-lens --prompt … --save NAME`). Runs are kept in `{store.path}`.")
    st.stop()

f1, f2, f3 = st.columns([3, 2, 2], vertical_alignment="bottom")
words = f1.text_input("Find", key="runs_find", bind="query-params", placeholder="words in a name, prompt or note")
model = f2.selectbox("Model", [ANY, *sorted({r["model"] for r in everything})], key="runs_model", bind="query-params")
view = f3.selectbox("View", [ANY, *sorted({r["view"] for r in everything})], key="runs_view", bind="query-params")
runs = store.list(text=words or "", model="" if model == ANY else model, view="" if view == ANY else view)
st.caption(f"{len(runs)} of {len(everything)} saved runs, newest first · kept in `{store.path}`")
by_id = {str(r["id"]): r for r in everything}


st.dataframe([{"id": r["id"], "name": r["name"], "view": r["view"], "model": r["model"], "created": r["created"],
               "note": r["note"]} for r in runs], hide_index=True, width="stretch", height=min(36 * len(runs) + 38, 260))
# Plain ids (the URL holds what the box shows: ?run=3&run=5 opens the same runs); the table names them.
chosen = st.multiselect("Open runs by id (pick two to compare)", list(by_id), key="run", bind="query-params",
                        max_selections=2)
if not chosen:
    st.stop()

opened = []
for run_id in chosen:
    with shown_in_page(f"Opening run {run_id}", stop=False):
        run = store.get(int(run_id))
        opened.append((run, open_view(run)))

if len(opened) == 1:
    run, rendered = opened[0]
    st.subheader(run.name)
    st.caption(f"{rendered.view.title} · {run.model} · options {run.params or 'the defaults'} · "
               f"drawn from the saved numbers. {rendered.caption}")
    for i, fig in enumerate(rendered.figures):
        chart(fig, key=f"run-{run.id}-{i}")
    note = st.text_area("Note", value=run.note, key=f"note-{run.id}")
    c1, c2 = st.columns([1, 5])
    if c1.button("Save the note", key=f"save-note-{run.id}"):
        store.set_note(run.id, note)
        st.toast("Note saved", icon=":material/check:")
    with c2.popover("Delete this run", icon=":material/delete:"):
        st.caption("A deleted run cannot be brought back.")
        if st.button("Delete it", type="primary", key=f"delete-{run.id}"):
            store.delete(run.id)
            st.query_params.pop("run", None)
            st.rerun()
elif len(opened) == 2:
    cols = st.columns(2)
    for where, (run, rendered) in zip(cols, opened):
        where.markdown(f"**{run.id} · {run.name}** · {run.model}")
        chart(rendered.figures[0], key=f"side-{run.id}", where=where, share=0.5)
        where.caption(rendered.caption)
    (a, ra), (b, rb) = opened
    diff = difference_figure(ra.figures[0], rb.figures[0], (f"run {a.id}", f"run {b.id}")) \
        if ra.view.name == rb.view.name else None
    if diff is None:
        st.caption("No difference is drawn: the two charts do not share their rows and columns (another view, "
                   "another number of layers or of positions).")
    else:
        chart(diff, key="runs-difference")
