"""The projections page (pages/projection.py) and its views: the projection and the geometry
through depth. Both read one prompt or a corpus (a list of texts)."""
from __future__ import annotations

from ..errors import LensError
from ..options import GeometryOptions, ProjectionOptions
from .entry import GEOMETRY, TEXTS, Drawn, Page, View

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


def render_projection(backend, info, texts, *, method, dims, color_by, word) -> Drawn:
    from ..figures.projection import COLOR_BY, trajectory_figure
    from ..model.tokens import word_matches

    corpus = isinstance(texts, list)
    color_by = color_by or ("text" if corpus else "layer")
    if color_by not in COLOR_BY:
        raise LensError(f"unknown colouring {color_by!r}; choose from {', '.join(COLOR_BY)}")
    r = backend.projection(texts, ProjectionOptions(method=method, dims=int(dims)))
    highlight = word_matches(r.tokens, word) if word else None
    return Drawn([r], [trajectory_figure(r, color_by=color_by, highlight=highlight, sentences=texts if corpus else None)],
                 f"{len(r.tokens)} tokens × {len(r.layers)} layers, {r.method.upper()}.")


def render_geometry(backend, info, texts, *, word, metric) -> Drawn:
    """One chart per measure (or only ``metric``'s), the layer × layer similarity among them."""
    from ..figures.projection import layer_similarity_figure, metric_figure
    from ..results import EXPLANATIONS

    g = backend.geometry(texts, GeometryOptions(word=word))
    if metric is not None and metric not in EXPLANATIONS:
        raise LensError(f"unknown geometry measure {metric!r}; choose from {', '.join(EXPLANATIONS)}")
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
        {"method": "pca", "dims": 2, "color_by": None, "word": None}, render_projection, reads=TEXTS),
    View("geometry", "Geometry through depth", GEOMETRY, "projection?geometry=true", (
        "Numbers on the projection's picture, layer by layer: how alike different tokens are (anisotropy), how "
        "alike the occurrences of one word are (self-similarity), how spread out the vectors are, how long, and how "
        "similar each layer is to every other.",),
        {"word": None, "metric": None}, render_geometry, reads=TEXTS),
)
