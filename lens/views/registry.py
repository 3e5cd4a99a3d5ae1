"""Every page and every view of the dashboard, by name, and ``render_view``, which draws a view.

The entries live with their renderers in one module per page (``logit_lens.py``,
``generate.py``, ``projection.py``, ``attention.py``, ``patching.py``, named as the files in
pages/); this module lists them. A new view is one ``View`` entry in its page's module: the
export, ``python -m lens export`` and the tour then know it by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..backend import Backend
from ..errors import LensError
from . import attention, attribution, circuits, generate, logit_lens, patching, projection, suites
from . import weights as weight_views
from . import steering as steering_views
from . import probes as probe_views
from . import anatomy as anatomy_views
from . import talks as talk_views
from .entry import LEARN, PROMPT, RESEARCH, SECTIONS, SUITE, TWO_PROMPTS, Page, View

TOUR = Page("tour", "Guided tour", ":material/tour:", "nine short stories about what the layers do, one screen each",
            LEARN)  # its stories are lens/tour.py's steps

RUNS = Page("runs", "Saved runs", ":material/bookmarks:", "the views you saved, opened again without recomputing, "
            "two side by side", RESEARCH, """
A **saved run** is one view as you saw it: the exact prompt and its token ids, the model (and its fingerprint),
the options, the numbers behind the chart, and your note. Save one with **Save run** under a chart, or with
`--save NAME` on any command (`python -m lens logit-lens --prompt … --save NAME`).

- Opening a run draws it again from the saved numbers: nothing is recomputed, and the model need not be loaded.
- Pick two runs to put them side by side; where their heatmaps have the same rows and columns (the same view
  for two prompts of one length, or for two models), the difference is drawn cell by cell.
- Runs are kept in one SQLite file outside the cache (the caption names it; `LAYERLENS_RUNS` moves it).
  Clearing the cache never touches them.""")

# The order of the home page's list, and of the pages within a sidebar section.
PAGES: dict[str, Page] = {p.path: p for p in (
    TOUR, talk_views.PAGE, logit_lens.PAGE, projection.PAGE, attention.PAGE, generate.PAGE, patching.PAGE,
    attribution.PAGE, weight_views.PAGE, steering_views.PAGE, circuits.PAGE, suites.PAGE, anatomy_views.PAGE, RUNS)}
VIEWS: dict[str, View] = {v.name: v for module in (logit_lens, generate, attention, projection, patching,
                                                   attribution, circuits, suites, weight_views,
                                                   steering_views, anatomy_views)
                          for v in module.VIEWS}
# Probes (lens/probes/): a Research page, listed before Saved runs.
PAGES = {**{k: p for k, p in PAGES.items() if k != RUNS.path}, probe_views.PAGE.path: probe_views.PAGE, RUNS.path: RUNS}
VIEWS.update({v.name: v for v in probe_views.VIEWS})


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


def view_named(name: str) -> View:
    if name not in VIEWS:
        raise LensError(f"unknown view {name!r}; choose from {', '.join(VIEWS)}")
    return VIEWS[name]


def page_named(path: str) -> Page:
    return PAGES[path]


def sections() -> dict[str, list[Page]]:
    """The pages by sidebar section, sections in SECTIONS' order."""
    return {s: [p for p in PAGES.values() if p.section == s] for s in SECTIONS
            if any(p.section == s for p in PAGES.values())}


def query_value(name: str, key: str) -> str:
    """The value of URL parameter ``key`` that opens view ``name`` on its page (a page's choice of view)."""
    return view_named(name).query[key]


def view_params(view: View, given: dict) -> dict:
    unknown = sorted(set(given) - set(view.params))
    if unknown:
        raise LensError(f"the {view.name} view has no option {', '.join(unknown)}; it takes "
                        f"{', '.join(view.params) or 'none'}")
    return {**view.params, **{k: v for k, v in given.items() if v is not None}}


def render_view(backend: Backend, name: str, texts: str | Sequence[str], **given) -> RenderedView:
    """The result and figures of view ``name`` for ``texts`` (a prompt; a corpus for the projections;
    the clean and the corrupted prompt for patching)."""
    view = view_named(name)
    p = view_params(view, given)
    info = backend.info()
    corpus = not isinstance(texts, str)
    if corpus and view.reads == PROMPT:
        raise LensError(f"the {name} view takes one prompt, not a list of texts")
    if view.reads == SUITE and corpus:
        raise LensError(f"the {name} view takes a suite as JSONL text (Suite.to_jsonl()), not a list")
    if view.reads == TWO_PROMPTS and (not corpus or len(texts) != 2):
        raise LensError(f"the {name} view takes two prompts: the clean one and the corrupted one")
    texts = list(texts) if corpus else texts
    drawn = view.render(backend, info, texts, **p)
    return RenderedView(view, info.name, texts, p, drawn.results, drawn.figures, drawn.caption)
