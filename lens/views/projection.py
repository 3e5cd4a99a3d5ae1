"""The projections page (pages/projection.py) and its views: the projection and the geometry
through depth. Both read one prompt or a corpus (a list of texts)."""
from __future__ import annotations

from ..errors import LensError
from ..options import GeometryOptions, ProjectionOptions
from ..senses import sense_similarity, senses_of
from .entry import GEOMETRY, TEXTS, Drawn, Page, View

SENSES = "senses"  # the geometry view's measure comparing a word's senses (not one of EXPLANATIONS' metrics)
SENSES_TITLE = "Same sense or not"


def measure_title(key: str) -> str:
    """A geometry measure's name, as the page's measure box shows it (and its URL holds it)."""
    from ..results import EXPLANATIONS

    return SENSES_TITLE if key == SENSES else EXPLANATIONS[key][0]

PAGE = Page(
    "projection", "Projections", ":material/scatter_plot:",
    "how token representations move and reorganise through the layers", GEOMETRY,
    """
At every layer the model keeps one vector per token (the *residual stream*), with hundreds of numbers.
This page squeezes those vectors onto a flat (or 3-D) picture so you can watch them move as they pass through the layers.

- **Trajectories**: one projection is fitted to the vectors of *all* layers at once. Each dot is one token at one layer;
  the grey line joins the same token from the embeddings (`emb`) to the last layer, and the token's name sits at its last point.
- **Layer by layer**: a separate projection per layer, each rotated to match the previous one, played as an animation.
  Watch tokens that start apart (different words) cluster by meaning or by role as depth grows.
- **PCA** keeps the directions of largest spread (axes show how much of the spread they keep); **UMAP** keeps neighbourhoods
  but distorts distances. Each layer is scaled to the same overall size first (vectors grow with depth), and the first
  token is left out: models park a huge vector there (an "attention sink") that would squash everything else.
- **Corpus mode** traces several sentences separately and shows them together, to compare the *same word* in different
  contexts: does "bank" by a river end up near "bank" with money?

Below the picture, **geometry through depth** puts numbers on what you see, one chart per measure with a one-line reading.
""")


def _on(option) -> bool:
    """A switch that the page has on by default: None (the page's default) is on."""
    return True if option is None else bool(option)


def render_projection(backend, info, texts, *, method, dims, color_by, word, mode, rows, skip_first, skip_special,
                      rms_scale) -> Drawn:
    """``mode`` "joint": one projection of all layers, a path per token (``rows``: the first and last row shown,
    indices into the result's layers; None: all); "aligned": one PCA per layer, played as an animation.
    An option left at None is the page's default (joint; every row; the first and special tokens left out,
    each layer scaled to unit RMS), so that a link leaves it out."""
    from ..figures.projection import COLOR_BY, aligned_figure, trajectory_caption, trajectory_figure
    from ..model.tokens import word_matches

    mode = mode or "joint"
    skip_first, skip_special, rms_scale = map(_on, (skip_first, skip_special, rms_scale))

    corpus = isinstance(texts, list)
    color_by = color_by or ("text" if corpus else "layer")
    if color_by not in COLOR_BY:
        raise LensError(f"unknown colouring {color_by!r}; choose from {', '.join(COLOR_BY)}")
    r = backend.projection(texts, ProjectionOptions(method=method, mode=mode, dims=int(dims), rms_scale=rms_scale,
                                                    skip_first=skip_first, skip_special=skip_special))
    if mode == "aligned":
        return Drawn([r], [aligned_figure(r, color_by=color_by)],
                     f"{len(r.tokens)} tokens × {len(r.layers)} layers, one PCA per layer, aligned.")
    shown = None
    if rows is not None:
        lo, hi = sorted(int(x) for x in rows)
        if not 0 <= lo <= hi < len(r.layers):
            raise LensError(f"rows {lo}–{hi} are out of range: the projection has rows 0–{len(r.layers) - 1}")
        shown = list(range(lo, hi + 1))
    highlight = word_matches(r.tokens, word) if word else None
    senses = senses_of(texts) if corpus else None
    fig = trajectory_figure(r, color_by=color_by, rows=shown, highlight=highlight,
                            sentences=texts if corpus else None, senses=senses)
    marks = trajectory_caption(r, color_by, shown, highlight=highlight, legend=corpus, senses=senses is not None)
    return Drawn([r], [fig], f"{len(r.tokens)} tokens × {len(r.layers)} layers, {r.method.upper()}; {marks}.")


def render_geometry(backend, info, texts, *, word, metric, skip_first, skip_special) -> Drawn:
    """One chart per measure (or only ``metric``'s), the layer × layer similarity among them; ``metric``
    "senses": the word's similarity within and across the senses of a shipped corpus (lens.senses).
    ``skip_first``, ``skip_special``: tokens left out of the measures, as in the projection (None: the page's
    default, left out)."""
    from ..figures.projection import layer_similarity_figure, metric_figure, sense_figure
    from ..results import EXPLANATIONS

    options = GeometryOptions(_on(skip_first), _on(skip_special))
    if metric == SENSES:
        if isinstance(texts, str):
            raise LensError("the senses of a word are compared across sentences: give a corpus")
        s = sense_similarity(backend, texts, word or "", options=options)
        return Drawn([s], [sense_figure(s)],
                     f"“{s.word}” in {len(texts)} sentences: {s.pairs_within} pairs of the same sense, "
                     f"{s.pairs_across} of different senses.")
    g = backend.geometry(texts, GeometryOptions(options.skip_first, options.skip_special, word))
    if metric is not None and metric not in EXPLANATIONS:
        raise LensError(f"unknown geometry measure {metric!r}; choose from {', '.join(EXPLANATIONS)} or {SENSES}")
    keys = [metric] if metric else list(EXPLANATIONS)
    figs = [layer_similarity_figure(g) if k == "layer_similarity" else metric_figure(g, k) for k in keys]
    return Drawn([g], [f for f in figs if f is not None],
                 f"{len(g.layers)} layers of {info.name}" + (f", following “{word}”." if word else "."))


VIEWS = (
    View("projection", "Projection of the residual stream", GEOMETRY, "projection", (
        "Every token's vector at every layer, projected onto two (or three) directions fitted to all layers at "
        "once (PCA keeps the directions of largest spread). A grey line follows each token from the embeddings to "
        "the last layer, and the token's name sits at its last point.",
        "Each layer is scaled to the same overall size first and the first token (an attention sink with a huge "
        "vector) is left out. With several texts (a corpus), each is traced on its own: the same word in different "
        "contexts can be compared."),
        {"method": "pca", "dims": 2, "color_by": None, "word": None, "mode": None, "rows": None, "skip_first": None,
         "skip_special": None, "rms_scale": None}, render_projection, reads=TEXTS),
    View("geometry", "Geometry through depth", GEOMETRY, "projection?geometry=true", (
        "Numbers on the projection's picture, layer by layer: how alike different tokens are (anisotropy), how "
        "alike the occurrences of one word are (self-similarity), how spread out the vectors are, how long, and how "
        "similar each layer is to every other.",
        "For a shipped corpus whose sentences use one word in different senses (“bank” by a river, “bank” with "
        "money), the senses measure: the mean cosine between two occurrences of the word of the same sense, and "
        "of different senses, layer by layer."),
        {"word": None, "metric": None, "skip_first": None, "skip_special": None}, render_geometry, reads=TEXTS),
)
