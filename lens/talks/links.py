"""From a page's URL query to the registry's view, texts and options that draw it, and back again.

A scene keeps a page and its URL query (what a copied link holds). To draw it without the page (a deck, the Talk
page's player), the query is read as the page reads it: which view its choice keys open (``?view=Heads``,
``?tab=…``), which texts (the sidebar's ``prompt``; ``clean`` and ``corrupt``; ``source=Corpus`` with ``corpus``),
and every option the page binds to the URL (lens.talks.urls, the table the tour's links are written with, read
backwards here), with the page's own defaults where the link leaves a box out (Streamlit drops a box at its
default from the URL). A URL parameter this table does not know (a page's own widget, such as a highlighted head) stays
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
    """What a scene draws: a registry view, its texts and its options (checked, the page's defaults filled in)."""

    view: str  # a view's name in lens.views.VIEWS
    texts: str | list[str]
    params: dict
    model: str | None  # the link's model; None: the default
    unused: tuple[str, ...]  # URL parameters the drawing does not read (the page's own widgets)
    figures: tuple[int, ...] = (0,)  # which of the rendered view's charts the page's tab shows


def page_views(page: str) -> list:
    from ..views import VIEWS

    return [v for v in VIEWS.values() if v.path == page]


def choose(page: str, query: dict[str, str]) -> tuple:
    """The registry view that ``query`` opens on ``page`` and which of its charts (figure indices, or None: the
    first), as the page's choice key (a tab, a panel, ?view=) reads it; a tab with no chart a talk can draw is
    refused in one line."""
    from ..views import PAGES, view_named
    from .urls import OPENED_BY, choices, url_keys

    views = page_views(page)
    if not views:
        raise LensError(f"the {page} page has no view a talk can draw")
    table = choices().get(page)
    matching = [v for v in views if v.query and all(query.get(k) == x for k, x in v.query.items())]
    if table is not None:
        # A view the link opens by another key than the page's tabs (the anatomy page's ?source=suite).
        other = [v for v in matching if set(v.query) - {table[0]}]
        if other:
            return max(other, key=lambda v: len(v.query)), None
        key, opens = table
        value = query.get(key)
        if value is None or value == "":
            opened = next(iter(opens.values()))
        else:
            opened = opens.get(value)
        what = "panels" if key == "panel" else "tabs"
        names = list(dict.fromkeys(o.label for k, o in opens.items() if k))
        if opened is None:
            raise LensError(f"{key}={value[:40]!r} is not one of the {PAGES[page].title} page's {what}: "
                            f"{', '.join(names)}")
        if opened.view is None:
            drawn = list(dict.fromkeys(o.label for k, o in opens.items() if k and o.view))
            raise LensError(f"the {PAGES[page].title} page's “{opened.label}” {what[:-1]} {opened.why}: a talk "
                            f"draws its {', '.join(drawn)} {what}")
        name = opened.view
        for url_key, (instead, other) in OPENED_BY.items():
            if name == instead and query.get(url_key):
                box = url_keys()[other]
                try:  # a neuron the page would not take leaves the list on screen (the page says so)
                    for b in box.values():
                        b.read(query[url_key])
                    name = other
                except LensError:
                    pass
        return view_named(name), opened.figures
    if matching:
        return max(matching, key=lambda v: len(v.query)), None
    chosen = [k for v in views for k in v.query if k in query]
    if chosen:
        key = chosen[0]
        options = sorted({v.query[key] for v in views if key in v.query})
        if key not in ("flow", "geometry") or query[key] not in ("false", ""):  # their off state is the default
            raise LensError(f"{key}={query[key]!r} opens no view of the {page} page; it takes "
                            f"{', '.join(options)}")
    return view_named(PAGE_DEFAULT.get(page, views[0].name)), None


def choose_view(page: str, query: dict[str, str]):
    return choose(page, query)[0]


# The pair each page's four experiment boxes start at (ui/experiment.py pair_boxes): the circuits page starts at
# the indirect-object pair, whose answer a small circuit finds.
PAIR_START = {"circuits": "Indirect object: who gets the drink"}


def _pair(page: str, query: dict[str, str]) -> dict[str, str | None]:
    """The experiment's four boxes as the page fills them: each from the link, else from the page's first pair."""
    from ..examples import PATCH_PAIRS
    from .urls import PAIR_KEYS

    start = PATCH_PAIRS.get(PAIR_START.get(page, ""), next(iter(PATCH_PAIRS.values())))
    return {k: query[k] if k in query else start[i] for i, k in enumerate(PAIR_KEYS)}


def _texts(page: str, view, query: dict[str, str], used: set[str]):
    from ..examples import CORPORA, DEFAULT_PROMPT, TRANSLATIONS
    from ..views.entry import SUITE, TEXTS, TWO_PROMPTS

    if view.reads == SUITE:
        raise LensError(f"the {view.name} view reads a suite file, which a link does not hold; "
                        "a talk cannot show it yet")
    from .urls import CLEAN_ONLY, PAIR_KEYS

    if view.reads == TWO_PROMPTS or view.name in CLEAN_ONLY:  # noise tracing reads the pair's clean prompt
        used.update(PAIR_KEYS)
        pair = _pair(page, query)
        return pair["clean"] if view.name == "noise-trace" else [pair["clean"], pair["corrupt"]]
    if view.reads == TEXTS and query.get("source") == "Corpus":
        used.update(("source", "corpus"))
        lines = [t for t in (query.get("corpus") or "\n".join(next(iter(CORPORA.values()))[1])).split("\n")
                 if t.strip()]
        if not lines:
            raise LensError("the corpus is empty")
        return lines
    used.update(("prompt", "source"))
    if view.name == "language" and query.get("lang_example", "(your prompt)") != "(your prompt)":
        used.add("lang_example")
        if query["lang_example"] not in TRANSLATIONS:
            raise LensError(f"lang_example={query['lang_example'][:40]!r} is not one of the translation examples: "
                            f"{', '.join(TRANSLATIONS)}")
        return TRANSLATIONS[query["lang_example"]][0]
    return query.get("prompt") or DEFAULT_PROMPT


def _options(view, query: dict[str, str], texts, used: set[str]) -> dict:
    """Each option of ``view`` as the page reads the link (lens.talks.urls): the box's value, the page's own
    default where the link lacks it, the view's default where the page shows no box for it."""
    from .urls import NO_BOX, WORD, page_default, url_keys, MISSING

    given = {}
    boxes = url_keys().get(view.name, {})
    for option, box in boxes.items():
        if box.key == NO_BOX:
            continue
        if box.when is not None:
            cond, shows, absent = box.when
            if cond in query:
                used.add(cond)
            if query.get(cond, absent) not in shows:
                if box.otherwise is not MISSING:
                    given[option] = box.otherwise
                used.add(box.key)  # the page draws no box for it: nothing to read
                continue
        key = "corpus_word" if box.key == WORD and not isinstance(texts, str) else box.key
        if key in query:
            used.add(key)
            try:
                given[option] = box.read(query[key])
            except LensError as exc:
                raise LensError(f"URL parameter {key}: {exc}") from None
        elif page_default(box) is not MISSING:
            given[option] = page_default(box)
    return given


def resolve(scene) -> Resolved:
    """What ``scene`` (a lens.talks.Scene) draws; a URL value the view cannot take is refused in one line."""
    from ..views.entry import TWO_PROMPTS
    from ..views.registry import view_params
    from .urls import CLEAN_ONLY

    query = dict(scene.params)
    view, figures = choose(scene.view, query)
    used = {k for v in page_views(scene.view) for k in v.query} | set(SHARED) | set(TALK_KEYS)
    from .urls import choices, url_keys

    # The boxes of the page's other views (the anatomy page's amateur layer beside the skip chart): on the page
    # whichever tab is open, and nothing this chart draws.
    used |= {b.key for v in page_views(scene.view) if v.name != view.name for b in url_keys().get(v.name, {}).values()}
    if scene.view in choices():
        used.add(choices()[scene.view][0])
    texts = _texts(scene.view, view, query, used)
    read = dict(query)
    if view.reads == TWO_PROMPTS or view.name in CLEAN_ONLY:  # the boxes the link leaves out: the page's pair
        read.update({k: v for k, v in _pair(scene.view, query).items() if k not in query and v is not None})
    given = _options(view, read, texts, used)
    if (view.reads == TWO_PROMPTS or view.name in CLEAN_ONLY) and "target" in view.params:
        if not given.get("target"):
            raise LensError("the two prompts need a target token (patch_target=…)")
    params = view_params(view, given)
    unused = tuple(sorted(k for k in query if k not in used))
    return Resolved(view.name, texts, params, (query.get("model") or "").strip() or None, unused,
                    figures or (0,))


def _pair_of(scene) -> tuple[str, str]:
    pair = _pair(scene.view, dict(scene.params))
    return pair["clean"], pair["corrupt"]


def page_params(backend, scene, r: Resolved) -> dict:
    """``r``'s options with what the page computes from the prompt and the model where the link holds nothing:
    the tokens the corrupted prompt changes (noise tracing's default), the last 48 positions of a long prompt
    (early exit), the layers attention flow can solve."""
    params = dict(r.params)
    if r.view == "noise-trace" and "noise_on" not in scene.params:
        clean, corrupt = (backend.tokenize(t) for t in _pair_of(scene))
        differs = [p for p in range(min(len(clean), len(corrupt))) if clean[p] != corrupt[p]]
        params["subject"] = tuple(differs) or (1,)
    elif r.view == "early-exit":
        n = len(backend.tokenize(r.texts))
        params["positions"] = [n - 48, n] if n > 48 else None
    elif r.view == "flow":
        from ..analysis.flow_plan import plan_flow

        info, n = backend.info(), len(backend.tokenize(r.texts))
        position = n - 1 if params["position"] is None else int(params["position"])
        params["layers"] = plan_flow(info.n_layers, n, position, info.is_causal).layers
    return params


def page_link(scene, present: bool = False, **extra) -> str:
    """The dashboard URL (path and query) that opens ``scene`` as its page shows it (a multi-choice box's values,
    kept one per line in the scene, as the repeated key the page reads)."""
    from urllib.parse import urlencode

    from .urls import MULTI

    query = dict(scene.params)
    if present:
        query["present"] = "1"
    query.update({k: str(v) for k, v in extra.items()})
    pairs = [(k, part) for k, v in query.items() for part in (v.split("\n") if k in MULTI else [v])]
    return f"/{scene.view}" + (f"?{urlencode(pairs)}" if pairs else "")


def draw(backend, scene):
    """The scene drawn through the registry (a lens.views.RenderedView) and what it resolved to."""
    from ..views import render_view

    r = resolve(scene)
    return render_view(backend, r.view, r.texts, **page_params(backend, scene, r)), r
