"""From a page's URL query to the registry's view, texts and options that draw it, and back again.

A scene keeps a page and its URL query (what a copied link holds). To draw it without the page (a deck, the Talk
page's player), the query is read as the page reads it: which view its choice keys open (``?view=Heads``,
``?tab=…``), which texts (the sidebar's ``prompt``; ``clean`` and ``corrupt``; ``source=Corpus`` with ``corpus``),
and every option the page binds to the URL (lens.tour.URL_KEYS, the table the tour's links are written with, read
backwards here). A URL parameter this table does not know (a page's own widget, such as a highlighted head) stays
in the scene, so the page shows it when played, and is named as not drawn in an exported deck.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LensError

# Keys every page shares (ui/state.py, ui/present.py), none of which changes what a chart computes but the model.
SHARED = ("model", "prompt", "engine", "present", "example")
NOT_SCENES = ("tour", "runs", "talk")  # pages that are not one view (a tour step is offered as a scene instead)
TALK_KEYS = ("talk", "scene")  # added by the Talk page's player; never part of a scene
# What a page opens with no choice in its URL (the attention page starts on routes where the model has them).
PAGE_DEFAULT = {"attention": "routes", "logit_lens": "logit-lens", "projection": "projection", "patching": "patch",
                "generate": "generate", "neurons": "neurons", "steering": "steer", "anatomy": "anatomy",
                "attribution": "dla", "circuits": "attribute"}


def canonical_view(name: str) -> str:
    """The page's URL path for ``name``: ``logit-lens`` and ``/logit_lens`` both name ``logit_lens``."""
    from ..views import PAGES

    path = str(name).strip().strip("/").replace("-", "_")
    if path not in PAGES or path in NOT_SCENES:
        shown = [p for p in PAGES if p not in NOT_SCENES]
        raise LensError(f"unknown view {str(name)[:60]!r}: a scene shows one of the pages {', '.join(shown)}")
    return path


@dataclass(frozen=True)
class Resolved:
    """What a scene draws: a registry view, its texts and its options (checked, the view's defaults filled in)."""

    view: str  # a view's name in lens.views.VIEWS
    texts: str | list[str]
    params: dict
    model: str | None  # the link's model; None: the default
    unused: tuple[str, ...]  # URL parameters the drawing does not read (the page's own widgets)
    partial: bool = False  # a view whose options links do not carry yet: drawn with its defaults


def _flag(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise LensError(f"{text!r} is not true or false")


def _inverse(table: dict) -> callable:
    back = {v: k for k, v in table.items()}

    def parse(text: str):
        if text in back:
            return back[text]
        if text in table:  # the short name (a link may use either)
            return text
        raise LensError(f"{text!r} is not one of {', '.join(back)}")
    return parse


def _number(kind):
    def parse(text: str):
        try:
            return kind(text.strip())
        except ValueError:
            raise LensError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    return parse


def _measure(text: str) -> str:
    from ..results import EXPLANATIONS
    from ..views.projection import SENSES, measure_title

    titles = {measure_title(k): k for k in (*EXPLANATIONS, SENSES)}
    return _inverse({v: k for k, v in titles.items()})(text)


def _choices() -> dict[tuple[str, str], tuple[str, ...]]:
    """(view, option) -> the values it takes, for the text options with a fixed set, so that a talk file naming
    another is refused when it is loaded, not when the deck is drawn."""
    from ..figures.attention import SUMMARY_METRICS
    from ..figures.logit_lens import METRICS
    from ..figures.projection import COLOR_BY
    from ..options import LENSES

    return {("logit-lens", "metric"): tuple(METRICS), ("logit-lens", "lens"): tuple(LENSES),
            ("heads", "metric"): tuple(SUMMARY_METRICS), ("projection", "color_by"): tuple(COLOR_BY)}


def _one_of(view: str, option: str, values: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in values:
            raise LensError(f"the {view} view's {option} must be one of {', '.join(values)}, not {text[:40]!r}")
        return text
    return parse


def _parsers() -> dict[str, dict[str, tuple[str, callable]]]:
    """view -> option -> (URL key, text -> option value): lens.tour.URL_KEYS read backwards."""
    from ..tour import PROJECTION_METHODS, PATCH_SITE_LABELS, URL_KEYS
    from ..tour import url_flag as spell_flag
    from ..tour import url_measure as spell_measure

    ints = {"stride", "top_k", "position", "layer", "dims", "samples", "seed"}
    floats = {"threshold", "scale"}
    choices = _choices()
    out: dict[str, dict[str, tuple[str, callable]]] = {}
    for view, options in URL_KEYS.items():
        out[view] = {}
        for option, (key, spell) in options.items():
            if option == "rows":  # a range slider's pair of labels: not a value the view takes from a link
                continue
            if spell is spell_flag:
                parse = _flag
            elif spell is spell_measure:
                parse = _measure
            elif getattr(spell, "__self__", None) is PROJECTION_METHODS:
                parse = _inverse(PROJECTION_METHODS)
            elif getattr(spell, "__self__", None) is PATCH_SITE_LABELS:
                parse = _inverse(PATCH_SITE_LABELS)
            elif getattr(spell, "__self__", None) is not None and isinstance(spell.__self__, dict):
                parse = _inverse(spell.__self__)
            else:
                parse = _number(int) if option in ints else _number(float) if option in floats else str
            if (view, option) in choices:
                parse = _one_of(view, option, choices[(view, option)])
            out[view][option] = (key, parse)
    return out


_PARSERS: dict | None = None


def parsers() -> dict:
    global _PARSERS
    if _PARSERS is None:
        _PARSERS = _parsers()
    return _PARSERS


def page_views(page: str) -> list:
    from ..views import VIEWS

    return [v for v in VIEWS.values() if v.path == page]


def choose_view(page: str, query: dict[str, str]):
    """The registry view that ``query`` opens on ``page``: the one whose choice keys the query matches most."""
    from ..views import view_named

    views = page_views(page)
    if not views:
        raise LensError(f"the {page} page has no view a talk can draw")
    matching = [v for v in views if v.query and all(query.get(k) == x for k, x in v.query.items())]
    if matching:
        return max(matching, key=lambda v: len(v.query))
    chosen = [k for v in views for k in v.query if k in query]
    if chosen:
        key = chosen[0]
        options = sorted({v.query[key] for v in views if key in v.query})
        if key != "flow":  # flow=false is the rollout view's own default, not a choice
            raise LensError(f"{key}={query[key]!r} opens no view of the {page} page; it takes "
                            f"{', '.join(options)}")
    return view_named(PAGE_DEFAULT.get(page, views[0].name))


def _texts(view, query: dict[str, str], used: set[str]):
    from ..examples import CORPORA, DEFAULT_PROMPT, PATCH_PAIRS
    from ..views.entry import SUITE, TEXTS, TWO_PROMPTS

    if view.reads == SUITE:
        raise LensError(f"the {view.name} view reads a suite file, which a link does not hold; "
                        "a talk cannot show it yet")
    if view.reads == TWO_PROMPTS:
        first = next(iter(PATCH_PAIRS.values()))
        used.update(("clean", "corrupt"))
        return [query.get("clean") or first[0], query.get("corrupt") or first[1]]
    if view.reads == TEXTS and query.get("source") == "Corpus":
        used.update(("source", "corpus"))
        lines = [t for t in (query.get("corpus") or "\n".join(next(iter(CORPORA.values()))[1])).split("\n")
                 if t.strip()]
        if not lines:
            raise LensError("the corpus is empty")
        return lines
    used.update(("prompt", "source"))
    return query.get("prompt") or DEFAULT_PROMPT


def resolve(scene) -> Resolved:
    """What ``scene`` (a lens.talks.Scene) draws; a URL value the view cannot take is refused in one line."""
    from ..examples import PATCH_PAIRS
    from ..views.entry import TWO_PROMPTS
    from ..views.registry import view_params

    query = dict(scene.params)
    view = choose_view(scene.view, query)
    used = {k for v in page_views(scene.view) for k in v.query} | set(SHARED) | set(TALK_KEYS)
    texts = _texts(view, query, used)
    given = {}
    for option, (key, parse) in parsers().get(view.name, {}).items():
        url_key = "corpus_word" if key == "word" and not isinstance(texts, str) else key
        if url_key in query:
            used.add(url_key)
            try:
                given[option] = parse(query[url_key])
            except LensError as exc:
                raise LensError(f"URL parameter {url_key}: {exc}") from None
    if view.reads == TWO_PROMPTS and "target" in view.params and not given.get("target"):
        first = next(iter(PATCH_PAIRS.values()))  # the patching page's own first pair
        if "clean" not in query and "corrupt" not in query:
            given["target"], given["foil"] = first[2], given.get("foil") or first[3]
        else:
            raise LensError("the two prompts need a target token (patch_target=…)")
    params = view_params(view, given)
    unused = tuple(sorted(k for k in query if k not in used))
    return Resolved(view.name, texts, params, (query.get("model") or "").strip() or None, unused,
                    view.name not in parsers())


def page_link(scene, present: bool = False, **extra) -> str:
    """The dashboard URL (path and query) that opens ``scene`` as its page shows it."""
    from urllib.parse import urlencode

    query = dict(scene.params)
    if present:
        query["present"] = "1"
    query.update({k: str(v) for k, v in extra.items()})
    return f"/{scene.view}" + (f"?{urlencode(query)}" if query else "")


def draw(backend, scene):
    """The scene drawn through the registry (a lens.views.RenderedView) and what it resolved to."""
    from ..views import render_view

    r = resolve(scene)
    return render_view(backend, r.view, r.texts, **r.params), r
