"""Projections page: how each token's representation moves through the layers, and the geometry in numbers."""
import time

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.examples import CORPORA  # noqa: E402
from lens.figures.projection import (COLOR_BY, LINE_METRICS, aligned_figure, layer_similarity_figure,  # noqa: E402
                                     metric_figure, sense_figure, trajectory_caption, trajectory_figure)
from lens.model.tokens import word_matches  # noqa: E402
from lens.options import GeometryOptions, ProjectionOptions  # noqa: E402
from lens.results import EXPLANATIONS  # noqa: E402
from lens.senses import sense_similarity, senses_of  # noqa: E402
from lens.views.projection import SENSES, measure_title  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_value_unused, one_of, page_header,  # noqa: E402
                        say_link_values_unused)

FIRST_CORPUS = next(iter(CORPORA))
# Widget options are what the URL shows (?source=Corpus&mode=Layer+by+layer&method=UMAP).
METHODS = {"PCA": "pca", "UMAP": "umap"}
MODES = {"Trajectories": "joint", "Layer by layer": "aligned"}
SOURCES = {"Prompt": "prompt", "Corpus": "corpus"}
# Presenter mode: the picture takes what a 1280×720 screen leaves under the title, two rows of controls and
# a one-line caption (and, for the geometry, the row that picks its measure).
PRESENT_CHART, PRESENT_GEOMETRY_CHART = 420, 410
PRESENTING = present.is_on()


def _use_corpus() -> None:
    name = st.session_state.get("corpus_example")
    if name in CORPORA:
        word, sentences = CORPORA[name]
        st.session_state["corpus"] = "\n".join(sentences)
        st.session_state["corpus_word"] = word


page_header("projection")

backend = state.backend()
info = backend.info()

# A link's values the boxes cannot take are named under the controls, with what is shown instead (a box
# quietly falls back to its default).
unused = {k: link_value_unused(k, one_of(v)) for k, v in (
    ("source", SOURCES), ("mode", MODES), ("method", METHODS), ("dims", ("2", "3")))}
# Few rows of controls, so that the picture starts high on the screen (a talk's 1280×720).
src_col, a_col, b_col = st.columns([1.2, 2, 2], vertical_alignment="bottom")
source = src_col.segmented_control("Texts", list(SOURCES), default="Prompt", key="source", bind="query-params",
                              help="**Prompt**: the sidebar prompt. **Corpus**: several sentences at once, "
                                   "each run through the model separately, to compare a word across contexts.")
source = SOURCES.get(source or "Prompt", "prompt")
if source == "corpus":
    a_col.selectbox("Shipped corpus", list(CORPORA), index=None, key="corpus_example", placeholder="pick a corpus…",
                    on_change=_use_corpus, help="Sentences that use one word in different senses.")
    word_default = CORPORA[FIRST_CORPUS][0]
    w_col, e_col = b_col.columns([3, 2], vertical_alignment="bottom")
    word = w_col.text_input("Word to follow across sentences", value=word_default, key="corpus_word",
                            bind="query-params", help="Matched token by token: leading space or ## ignored, any case.")
    with e_col.popover("Sentences", icon=":material/edit_note:"):
        corpus = st.text_area("Sentences, one per line", value="\n".join(CORPORA[FIRST_CORPUS][1]), key="corpus",
                              bind="query-params", height=220)
    texts = [line for line in corpus.splitlines() if line.strip()]
    if len(texts) > info.corpus_limit:
        st.caption(f"Using the first {info.corpus_limit} of {len(texts)} sentences.")
        texts = texts[:info.corpus_limit]
    if not texts:
        st.info("Type a few sentences, one per line, or pick a shipped corpus.")
        st.stop()
    inputs: str | list[str] = texts
else:
    text = state.prompt()
    if not text:
        st.info("Type a prompt in the sidebar to see its projection.")
        st.stop()
    word = a_col.text_input("Word to follow", key="word", bind="query-params",
                         placeholder="optional: a word that occurs at least twice in the prompt",
                         help="Its paths are drawn boldly, and its self-similarity is measured below. Matched token "
                              "by token: leading space or ## ignored, any case.")
    inputs = text

# On a projector the geometry is a view of its own (one measure at a time), switched on beside the options.
widths = [2, 2, 1, 2, 1.3] + ([1.6] if PRESENTING else [])
c1, c2, c3, c4, c5, *c6 = st.columns(widths, vertical_alignment="bottom")
mode_label = c1.selectbox("Layout", list(MODES), key="mode", bind="query-params",
                          help="**Trajectories**: one projection of all layers together; each token leaves a path "
                               "through depth. **Layer by layer**: one PCA per layer, aligned to the previous one, "
                               "played as an animation.")
mode = MODES[mode_label]
method = METHODS[c2.selectbox("Method", list(METHODS), key="method", bind="query-params",
                              help="**PCA** is exact and instant. **UMAP** keeps neighbourhoods; it takes a few "
                                   "seconds (the first time in a server process 20-40 s, while its code compiles); "
                                   "results are cached.")]
dims = c3.selectbox("Dimensions", [2, 3], key="dims", bind="query-params")
colour_options = [c for c in COLOR_BY if c != "text" or source == "corpus"]
previous = st.session_state.get("_projection_source")
if previous is not None and previous != source:
    st.session_state.pop("color", None)  # a switch of texts brings its own colouring (corpus: by sentence)
st.session_state["_projection_source"] = source
unused["color"] = link_value_unused("color", one_of(colour_options))
color_by = c4.selectbox("Colour by", colour_options,
                        index=colour_options.index("text" if source == "corpus" else "layer"), key="color",
                        bind="query-params", help="\n\n".join(f"**{k}**: {v}" for k, v in COLOR_BY.items()))
options_box = c5.popover("Options", icon=":material/tune:")
t1 = t2 = t3 = options_box
skip_first = t1.toggle("Leave out the first token", value=True, key="skip_first", bind="query-params",
                       help="Its vector is huge (an attention sink) and squashes everything else.")
skip_special = t2.toggle("Leave out special tokens", value=True, key="skip_special", bind="query-params",
                         help="[CLS], [SEP], BOS and the like.")
rms_scale = t3.toggle("Scale each layer to unit RMS", value=True, key="rms", bind="query-params",
                      help="Vectors grow with depth; without scaling the last layers dominate the picture.")

show_geometry = c6[0].toggle("Geometry", key="geometry", bind="query-params",
                             help="Numbers on the picture, one measure at a time, instead of the picture."
                             ) if PRESENTING else False

said = [(unused[k], what, used) for k, what, used in (
    ("source", "texts", "the " + source), ("mode", "layout", mode_label), ("method", "method", method.upper()),
    ("dims", "dimensions", dims), ("color", "colouring", color_by))]
say_link_values_unused(said)
note_room = 29 if any(raw is not None for raw, _, _ in said) else 0  # px the line takes on a projector

if mode == "aligned" and method == "umap":
    st.info("Layer by layer uses PCA: one UMAP per layer would take minutes. Choose Trajectories for UMAP.")
    method = "pca"
options = ProjectionOptions(method=method, mode=mode, dims=int(dims), rms_scale=rms_scale, skip_first=skip_first,
                            skip_special=skip_special)

bar = st.empty()
t0 = time.perf_counter()
result = None
with shown_in_page("Projection", stop=False):
    if method == "umap":
        with st.spinner("Fitting UMAP…"):
            result = backend.projection(inputs, options,
                                        progress=lambda f, m: bar.progress(min(1.0, f), text=f"UMAP: {m}"))
    else:
        n_texts = 1 if isinstance(inputs, str) else len(inputs)
        with st.spinner(f"Tracing {n_texts} {'text' if n_texts == 1 else 'texts'} and fitting PCA…"):
            result = backend.projection(inputs, options)
elapsed = time.perf_counter() - t0
bar.empty()

senses = senses_of(inputs) if isinstance(inputs, list) else None  # a shipped corpus names its senses
if result is not None:
    R = len(result.layers)
    rows = None
    if mode == "joint":
        labels = [("emb" if x == "emb" else f"L{x}") for x in result.layers]
        lo, hi = options_box.select_slider("Layers shown", options=labels, value=(labels[0], labels[-1]), key="rows",
                                           bind="query-params", help="Fewer layers make the paths easier to read.")
        r0, r1 = sorted((labels.index(lo), labels.index(hi)))
        rows = list(range(r0, r1 + 1))
        highlight = word_matches(result.tokens, word)
        fig = trajectory_figure(result, color_by=color_by, rows=rows, highlight=highlight,
                                sentences=inputs if isinstance(inputs, list) else None, senses=senses)
        marks = trajectory_caption(result, color_by, rows, highlight, legend=isinstance(inputs, list),
                                   senses=senses is not None)
    else:
        fig = aligned_figure(result, color_by=color_by,
                             **({"height": PRESENT_CHART - note_room} if PRESENTING else {}))
        marks = f"dots coloured by {COLOR_BY[color_by]}; ▶ plays the layers, the slider picks one"
    cached = elapsed < 0.5 * result.seconds
    fit = f"{result.method.upper()} fitted in {result.seconds:.2f} s" + (" (shown from the cache)" if cached else "")
    left = [w for w, on in (("the first token", skip_first), ("special tokens", skip_special)) if on]
    if PRESENTING:
        if not show_geometry:
            fig.update_layout(height=PRESENT_CHART - note_room)
            chart(fig, key="projection")
            st.caption(f"{marks[:1].upper()}{marks[1:]}.")
    else:
        chart(fig, key="projection",
              export={"view": "projection", "numbers": result, "texts": inputs, "model": info.name,
                      "params": {"method": method, "dims": int(dims), "color_by": color_by, "word": word or None,
                                 "mode": mode, "rows": [rows[0], rows[-1]] if rows else None,
                                 "skip_first": skip_first, "skip_special": skip_special, "rms_scale": rms_scale}})
        st.caption(
            f"{info.name} · {len(result.tokens)} tokens"
            + (f" from {result.n_texts} sentences" if result.n_texts > 1 else "")
            + f" × {R} layers · {fit}"
            + (f" · left out: {' and '.join(left)}" if left else "")
            + f". {marks[:1].upper()}{marks[1:]}. Hover a dot for its token and layer; the camera icon saves a PNG."
        )
        download_json(result, "projection", "Download the coordinates (JSON)")


def measures(shown, senses_known: bool) -> dict[str, str]:
    """The geometry's measures for these texts and word: key -> its name."""
    keys = [k for k in LINE_METRICS if getattr(shown, k).size] + ["layer_similarity"] + ([SENSES] if senses_known else [])
    return {k: measure_title(k) for k in keys}


def sense_chart(inputs, word: str, gopts: GeometryOptions, key: str, height: int | None = None, where=st,
                explain: bool = True) -> None:
    """The word's similarity within and across the senses of a shipped corpus (every pair of sentences)."""
    s = None
    with shown_in_page(f"Senses of {word!r}", stop=False):
        with st.spinner("Comparing the word across every pair of sentences…"):
            s = sense_similarity(backend, inputs, word, senses, gopts)
    if s is None:
        return
    fig = sense_figure(s)
    if height:
        fig.update_layout(height=height)
    chart(fig, key=key, where=where, export={
        "view": "geometry", "numbers": s, "texts": inputs, "model": info.name,
        "params": {"word": word, "metric": SENSES, "skip_first": gopts.skip_first, "skip_special": gopts.skip_special}})
    if explain:
        where.caption(f"Mean cosine between two “{s.word}”s of the same sense ({', '.join(dict.fromkeys(s.senses))}) "
                      "and of different senses, layer by layer: a gap means the context has pulled the senses "
                      "apart.")


@st.fragment
def geometry_section(inputs, skip_first: bool, skip_special: bool, word: str | None) -> None:
    """The per-layer metrics: computed (and cached) once per result, drawn only when asked for.
    A fragment: switching it on or off reruns this section, not the projection above."""
    st.header("Geometry through depth")
    if not st.toggle("Show the geometry through depth", value=False, key="geometry", bind="query-params",
                     help="Anisotropy, similarity, entropy, curvature, norms and the layer × layer similarity: "
                          "nine charts that put numbers on the picture above."):
        st.caption("Switch on to see, layer by layer, how alike, how spread out and how long the token vectors are.")
        return
    gopts = GeometryOptions(skip_first=skip_first, skip_special=skip_special)
    shown = measured(inputs, gopts, word)
    if shown is None:
        return
    keys = [k for k in LINE_METRICS if getattr(shown, k).size]
    for i in range(0, len(keys), 2):
        cols = st.columns(2)
        for col, key in zip(cols, keys[i:i + 2]):
            chart(metric_figure(shown, key), key=f"metric-{key}", where=col)
            col.caption(EXPLANATIONS[key][1])
    if shown.word:
        st.caption(f"“{shown.word}” occurs {shown.word_count} times in {shown.word_texts} "
                   f"{'sentence' if shown.word_texts == 1 else 'sentences'}. Baseline-adjusted means minus the "
                   "anisotropy baseline, so 0 = no more alike than two random tokens.")
    if senses is not None and shown.word:
        sense_chart(inputs, shown.word, gopts, "metric-senses", where=st.columns([3, 2])[0])
    c1, c2 = st.columns([3, 2])
    chart(layer_similarity_figure(shown), key="layer-similarity", where=c1,
          export={"view": "geometry", "numbers": shown, "texts": inputs, "model": backend.info().name,
                  "params": {"word": shown.word or None, "metric": "layer_similarity", "skip_first": gopts.skip_first,
                             "skip_special": gopts.skip_special}})
    c2.markdown(EXPLANATIONS["layer_similarity"][1])
    c2.caption("Each cell is the mean over tokens of the cosine between the token's vector at the two layers "
               "(raw residual stream, no scaling). Compare with the trajectories above: long flat stretches "
               "of a path match bright blocks here.")
    download_json(shown, "geometry", "Download the metrics (JSON)", where=c2)


def measured(inputs, gopts: GeometryOptions, word: str | None):
    """The geometry of ``inputs``, with the word's measures when one is followed (None after an error)."""
    geo = geo_word = None
    with shown_in_page("Geometry", stop=False):
        with st.spinner("Measuring every layer…"):
            geo = backend.geometry(inputs, gopts)
    if geo is not None and word and word.strip():
        with shown_in_page(f"Self-similarity of {word.strip()!r}", stop=False):
            geo_word = backend.geometry(inputs, GeometryOptions(gopts.skip_first, gopts.skip_special, word.strip()))
    return geo_word or geo


def geometry_on_screen(inputs, skip_first: bool, skip_special: bool, word: str | None) -> None:
    """Presenter mode: one measure of the geometry, picked in the URL-bound box, in place of the picture."""
    gopts = GeometryOptions(skip_first=skip_first, skip_special=skip_special)
    shown = measured(inputs, gopts, word)
    if shown is None:
        return
    choices = measures(shown, senses is not None and bool(shown.word))  # key -> name
    keys = {name: k for k, name in choices.items()}
    asked = st.query_params.get("measure")
    # The box lists the names, and the URL holds the name shown; a link may name the measure itself.
    if asked in choices and "measure" not in st.session_state:
        st.session_state["measure"] = choices[asked]
    pick_col, about_col = st.columns([2, 5], vertical_alignment="center")
    name = pick_col.selectbox("Measure", list(keys), key="measure", bind="query-params")
    key = keys[name]
    if asked and asked not in choices and asked not in keys:
        about_col.caption(f"ℹ️ The link's measure “{asked[:40]}” does not apply here: showing "
                          f"{name.lower()} instead.")
    elif key == SENSES:
        about_col.caption("How alike two occurrences of the word are within a sense and across senses.")
    else:
        about_col.caption(EXPLANATIONS[key][1])
    if key == SENSES:
        sense_chart(inputs, shown.word, gopts, "present-senses", height=PRESENT_GEOMETRY_CHART, explain=False)
        return
    fig = layer_similarity_figure(shown) if key == "layer_similarity" else metric_figure(shown, key)
    fig.update_layout(height=PRESENT_GEOMETRY_CHART)
    chart(fig, key=f"present-{key}")


if PRESENTING:
    if show_geometry:
        geometry_on_screen(inputs, skip_first, skip_special, word)
else:
    geometry_section(inputs, skip_first, skip_special, word)
