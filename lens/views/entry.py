"""What one registry entry holds: a dashboard page (``Page``) or a view of it (``View``).

A page is a file ``pages/<path>.py`` served at ``/<path>``; a view is one chart (or set of
charts) that an export, the tour and ``python -m lens export`` draw by name, and that the page
shows with its own widgets. Both carry their explanation: the page its "What am I looking at?"
text (markdown, in its expander), the view its paragraphs (plain text, printed under an
exported chart).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple
from urllib.parse import parse_qs

# The sidebar's sections, in the order they are listed.
LEARN = "Learn"
READ_LAYERS = "Read the layers"
GEOMETRY = "Geometry"
ATTENTION = "Attention"
CAUSE_EFFECT = "Cause & effect"
RESEARCH = "Research"
SECTIONS = (LEARN, READ_LAYERS, GEOMETRY, ATTENTION, CAUSE_EFFECT, RESEARCH)

# What a view reads: one prompt, one prompt or a list of texts (a corpus), two prompts, or a suite (its JSONL).
PROMPT, TEXTS, TWO_PROMPTS, SUITE = "prompt", "prompt or texts", "two prompts", "suite"


class Drawn(NamedTuple):
    """What a view's renderer returns."""

    results: list  # the typed results behind the figures
    figures: list  # plotly figures, the main one first
    caption: str  # one line on what this particular chart shows


@dataclass(frozen=True)
class Page:
    path: str  # its URL path, and its file under pages/
    title: str
    icon: str
    summary: str  # what it shows, one line (the home page's list)
    section: str
    explainer: str = ""  # "What am I looking at?", markdown, for all the views it shows

    @property
    def file(self) -> str:
        return f"pages/{self.path}.py"


@dataclass(frozen=True)
class View:
    name: str
    title: str
    section: str
    page: str  # the dashboard page that shows it, as a URL path with its query ("attention?view=Heads")
    about: tuple[str, ...]  # "what am I looking at", one paragraph per entry
    params: dict  # the options it takes, with their defaults
    # (backend, info, texts, **params) -> Drawn; params arrive checked and with their defaults filled in
    render: Callable[..., Drawn] = field(repr=False, compare=False)
    reads: str = PROMPT

    @property
    def path(self) -> str:
        return self.page.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The page's URL parameters that open this view (``{"view": "Rollout & flow"}``)."""
        return {k: v[0] for k, v in parse_qs(self.page.partition("?")[2]).items()}
