"""The dashboard's views by name: the result, its figures and what they show, from one call.

``render_view(backend, "routes", prompt, threshold=0.05)`` is what an export, the tour
and ``python -m lens export`` use; the pages build the same figures from the same
backend calls, with their own widgets. Every view states in ``about`` what a reader
is looking at, in plain sentences (the exported HTML prints them under the chart).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .backend import Backend
from .errors import LensError
from .options import DEFAULT_THRESHOLD, GeometryOptions, LensOptions, ProjectionOptions


@dataclass(frozen=True)
class View:
    name: str
    title: str
    page: str  # the dashboard page that shows it, as a URL path
    about: tuple[str, ...]  # "what am I looking at", one paragraph per entry
    params: dict  # the options it takes, with their defaults


VIEWS: dict[str, View] = {v.name: v for v in (
    View("logit-lens", "Logit lens", "logit_lens", (
        "Each layer keeps a vector for every token of the prompt (the residual stream). The logit lens reads it "
        "early: it applies the model's final norm and output matrix to it, as if that layer were the last, and asks "
        "which next token it would predict.",
        "Rows are layers (emb: the token embeddings; the top row is the model's real output). Columns are positions; "
        "a cell predicts the token after its column's token, and shows that layer's top-1 guess. Colour: the chosen "
        "measure (confidence, entropy, KL divergence to the final layer, or a target token's rank or probability).",
        "Token symbols: ␣ a space, ↵ a new line, ⇥ a tab, <0xE2> one byte of a character split over several tokens.",
        "With the linear-shortcut or tuned lens, each layer's vector first goes through a map fitted to turn it into "
        "the last layer's vector (Din et al. 2023; Belrose et al. 2023): early layers that look like noise to the "
        "logit lens often already hold the answer in another basis. An orange line under a cell marks the layer "
        "from which the column's top-1 is the model's final answer for good."),
        {"metric": "probability", "target": None, "stride": 1, "top_k": 5, "lens": "logit", "exits": False}),
    View("lens-comparison", "Lenses compared", "logit_lens?panel=compare", (
        "The same prompt read by each lens the model has: the plain logit lens and the fitted ones (linear shortcut, "
        "tuned). Left: per layer, the mean over positions of the KL divergence from the model's final distribution "
        "to the layer's reading (lower is closer). Right: the share of positions whose top-1 is already the model's "
        "own prediction.",
        "A fitted lens that sits far below the logit lens in the early and middle layers shows that those layers "
        "hold the answer in a basis the unembedding cannot read directly."),
        {}),
    View("early-exit", "Early exit", "logit_lens?panel=exit", (
        "For each position, the saturation layer (Geva et al. 2022): the first layer from which the lens's top-1 "
        "is the model's final prediction and stays so to the last layer. A model that stopped computing there "
        "would write the same token (the idea behind early-exit models such as LayerSkip).",
        "Right: the share of positions that could stop at or before each layer."),
        {"lens": "logit"}),
    View("language", "Language of each layer", "logit_lens?panel=language", (
        "At one position, how each layer's reading spreads its probability over scripts (every vocabulary token "
        "counted by the script of its letters) and over tracked words read by their first token. In translation "
        "prompts, middle layers of multilingual models often favour the English word before the last layers "
        "switch to the target language (Wendler et al. 2024).",),
        {"position": None, "track": None, "lens": "logit"}),
    View("generate", "Watch it generate", "generate", (
        "The model continues the prompt one token at a time (greedy: its top-1 each time; sampled: drawn from "
        "its probabilities with a fixed seed). Press Play: the logit lens grows one column per new token, and the "
        "boxed column is the position whose prediction became the newest token.",
        "Read a column from the bottom up to see at which layer the model settled on the word it wrote."),
        {"max_new_tokens": 20, "temperature": 0.0, "seed": 0, "metric": "probability", "stride": 2}),
    View("rollout", "Attention rollout", "attention?view=Rollout+%26+flow", (
        "Rollout (Abnar & Zuidema, 2020) averages each layer's heads, adds the residual connection and multiplies "
        "the attention matrices of all layers: row l says how much of the chosen position after layer l comes from "
        "each input token. Rows sum to 1.",
        "It ignores what the values carry, so it is a rough picture; in models with an attention sink (attention "
        "parked on the first token) it piles much of the weight onto that token."),
        {"position": None}),
    View("flow", "Attention flow", "attention?view=Rollout+%26+flow&flow=true", (
        "Attention flow treats the same head-averaged attention matrices as pipes and computes, by max-flow, how "
        "much can be pushed from the chosen position at each layer back to each input token.",),
        {"position": None}),
    View("routes", "Information-flow routes", "attention?view=Routes", (
        "Routes (Ferrando & Voita, 2024): one column per position and two nodes per layer (the stream after the "
        "attention block and after the MLP). An edge's width is how much that part contributed to the node it "
        "enters, normalised so that all parts entering a node sum to 1; edges below the threshold are dropped and "
        "only what still reaches the chosen prediction is drawn.",
        "Blue: attention (information moved from another position); grey: the residual (kept in place); orange: "
        "the MLP."),
        {"position": None, "threshold": DEFAULT_THRESHOLD}),
    View("heads", "Attention heads", "attention?view=Heads", (
        "Without a layer: one score per head of every layer. Induction heads attend to the token that followed the "
        "previous occurrence of the current token; previous-token heads to the token just before; both are measured "
        "on a repeated random sequence. Entropy is measured on the prompt (0: all attention on one token).",
        "With a layer: that layer's attention pattern per head (rows: the position reading, columns: the token "
        "read)."),
        {"layer": None, "metric": "induction"}),
    View("projection", "Projection of the residual stream", "projection", (
        "Every token's vector at every layer, projected onto two (or three) directions fitted to all layers at "
        "once (PCA keeps the directions of largest spread). A grey line follows each token from the embeddings to "
        "the last layer, and the token's name sits at its last point.",
        "Each layer is scaled to the same overall size first and the first token (an attention sink with a huge "
        "vector) is left out. With several texts (a corpus), each is traced on its own: the same word in different "
        "contexts can be compared."),
        {"method": "pca", "dims": 2, "color_by": None, "word": None}),
    View("geometry", "Geometry through depth", "projection?geometry=true", (
        "Numbers on the projection's picture, layer by layer: how alike different tokens are (anisotropy), how "
        "alike the occurrences of one word are (self-similarity), how spread out the vectors are, how long, and how "
        "similar each layer is to every other.",),
        {"word": None, "metric": None}),
    View("patch", "Activation patching", "patching", (
        "Two prompts that differ in a few tokens: a clean one the model answers with the target, a corrupted one it "
        "answers with the foil. The corrupted prompt is run again with one activation taken from the clean run, "
        "cell by cell; a cell shows how much of the answer that single patch restores: (m(patched) − m(corrupt)) / "
        "(m(clean) − m(corrupt)), m the target's logit minus the foil's at the last position.",
        "0 (white): the patch changes nothing; 1 (blue): it restores the clean answer; red pushes the other way. "
        "Rows: emb (the input of layer 1) then each layer's output, as in the logit lens; columns: positions."),
        {"target": None, "foil": None, "site": "resid"}),
)}


@dataclass
class RenderedView:
    """One view of one prompt (or corpus): its result(s), its figures and its explanation."""

    view: View
    model: str
    texts: str | list[str]
    params: dict
    results: list  # the typed results behind the figures
    figures: list = field(default_factory=list)  # plotly figures, the main one first
    caption: str = ""  # one line on what this particular chart shows


def _params(view: View, given: dict) -> dict:
    unknown = sorted(set(given) - set(view.params))
    if unknown:
        raise LensError(f"the {view.name} view has no option {', '.join(unknown)}; it takes "
                        f"{', '.join(view.params) or 'none'}")
    return {**view.params, **{k: v for k, v in given.items() if v is not None}}


def view_named(name: str) -> View:
    if name not in VIEWS:
        raise LensError(f"unknown view {name!r}; choose from {', '.join(VIEWS)}")
    return VIEWS[name]


def render_view(backend: Backend, name: str, texts: str | Sequence[str], **given) -> RenderedView:
    """The result and figures of view ``name`` for ``texts`` (a prompt; a corpus for the projections)."""
    from .figures.attention import head_grid_figure, head_summary_figure, rollout_figure, route_figure
    from .figures.logit_lens import METRICS, logit_lens_figure
    from .figures.projection import COLOR_BY, layer_similarity_figure, metric_figure, trajectory_figure
    from .model.tokens import visible, word_matches
    from .results import EXPLANATIONS

    view = view_named(name)
    p = _params(view, given)
    info = backend.info()
    corpus = not isinstance(texts, str)
    if corpus and name not in ("projection", "geometry", "patch"):
        raise LensError(f"the {name} view takes one prompt, not a list of texts")
    if name == "patch" and (not corpus or len(texts) != 2):
        raise LensError("the patch view takes two prompts: the clean one and the corrupted one")
    texts = list(texts) if corpus else texts
    out = RenderedView(view, info.name, texts, p, [])

    if name == "generate":
        from .figures.generation import generation_figure
        from .options import GenerateOptions

        if p["metric"] not in METRICS or p["metric"].startswith("target"):
            raise LensError(f"unknown colour metric {p['metric']!r}; choose probability, entropy or kl")
        options = GenerateOptions(int(p["max_new_tokens"]), float(p["temperature"]), int(p["seed"]))
        gen = backend.generate(texts, options)
        lens = backend.generation_lens(texts, options, LensOptions(top_k=1))
        out.results = [gen, lens]
        out.figures = [generation_figure(gen, lens, metric=p["metric"], stride=int(p["stride"]))]
        out.caption = f"{len(gen.token_ids) - gen.n_prompt} new tokens: “{gen.text}”"
    elif name == "patch":
        from .figures.patching import patch_figure, reading
        from .options import PatchOptions

        if not p["target"]:
            raise LensError("the patch view needs a target token (e.g. ' Paris')")
        r = backend.patch(texts[0], texts[1], PatchOptions(target=p["target"], foil=p["foil"], site=p["site"]))
        out.results, out.figures, out.caption = [r], [patch_figure(r)], reading(r)
    elif name == "logit-lens":
        if p["metric"] not in METRICS:
            raise LensError(f"unknown colour metric {p['metric']!r}; choose from {', '.join(METRICS)}")
        r = backend.logit_lens(texts, LensOptions(top_k=int(p["top_k"]), target=p["target"], lens=p["lens"]))
        out.results, out.figures = [r], [logit_lens_figure(r, metric=p["metric"], stride=int(p["stride"]),
                                                           show_exit=bool(p["exits"]))]
        out.caption = f"{info.name} predicts “{visible(r.final_prediction[-1])}” after the last token."
    elif name == "lens-comparison":
        from .figures.lens_comparison import lens_comparison_figure

        c = backend.lens_comparison(texts)
        out.results, out.figures = [c], [lens_comparison_figure(c)]
        out.caption = f"{', '.join(c.lenses)} lenses of {info.name} on {len(c.tokens)} tokens."
    elif name == "early-exit":
        from .figures.early_exit import early_exit_figure

        r = backend.logit_lens(texts, LensOptions(top_k=1, lens=p["lens"]))
        out.results, out.figures = [r], [early_exit_figure(r)]
        done = sum(e is not None and e < len(r.layers) - 1 for e in r.exit_layer)
        out.caption = f"{done} of {len(r.exit_layer)} positions have their final answer before the last layer."
    elif name == "language":
        from .figures.language import language_figure

        words = tuple(w for w in (p["track"].split(",") if p["track"] else []) if w)
        m = backend.latent_language(texts, position=None if p["position"] is None else int(p["position"]),
                                    words=words, lens=p["lens"])
        out.results, out.figures = [m], [language_figure(m)]
        out.caption = f"Probability per script at position {m.position}, {m.lens} lens."
    elif name in ("rollout", "flow"):
        r = (backend.attention_flow(texts, p["position"]) if name == "flow"
             else backend.rollout(texts, p["position"]))
        out.results, out.figures = [r], [rollout_figure(r)]
        out.caption = f"Position {r.position} ({visible(r.tokens[r.position])}), traced back to every input token."
    elif name == "routes":
        g = backend.route_graph(texts, p["position"], float(p["threshold"]))
        out.results, out.figures = [g], [route_figure(g)]
        out.caption = (f"Routes to the prediction “{visible(g.prediction)}” at position {g.position}: "
                       f"{len(g.edge_layer)} edges above {g.threshold}.")
    elif name == "heads":
        if p["layer"] is None:
            s = backend.head_summary(texts)
            out.results, out.figures = [s], [head_summary_figure(s, p["metric"])]
            out.caption = f"Every head of {info.name}, scored by {p['metric'].replace('_', '-')}."
        else:
            h = backend.head_patterns(texts, int(p["layer"]))
            out.results, out.figures = [h], [head_grid_figure(h)]
            out.caption = f"The attention of each head of layer {h.layer}."
    elif name == "projection":
        color_by = p["color_by"] or ("text" if corpus else "layer")
        if color_by not in COLOR_BY:
            raise LensError(f"unknown colouring {color_by!r}; choose from {', '.join(COLOR_BY)}")
        r = backend.projection(texts, ProjectionOptions(method=p["method"], dims=int(p["dims"])))
        highlight = word_matches(r.tokens, p["word"]) if p["word"] else None
        out.results, out.figures = [r], [trajectory_figure(r, color_by=color_by, highlight=highlight,
                                                           sentences=texts if corpus else None)]
        out.caption = f"{len(r.tokens)} tokens × {len(r.layers)} layers, {r.method.upper()}."
    else:  # geometry
        g = backend.geometry(texts, GeometryOptions(word=p["word"]))
        if p["metric"] is not None and p["metric"] not in EXPLANATIONS:
            raise LensError(f"unknown geometry measure {p['metric']!r}; choose from {', '.join(EXPLANATIONS)}")
        keys = [p["metric"]] if p["metric"] else list(EXPLANATIONS)
        figs = [layer_similarity_figure(g) if k == "layer_similarity" else metric_figure(g, k) for k in keys]
        out.results, out.figures = [g], [f for f in figs if f is not None]
        out.caption = f"{len(g.layers)} layers of {info.name}" + (f", following “{p['word']}”." if p["word"] else ".")
    return out
