"""The dashboard's pages and views in one registry (``registry.py``), each entry beside its renderer
in a module named as its page (``attention.py`` for pages/attention.py).

``render_view(backend, "routes", prompt, threshold=0.05)`` is what an export, the tour and
``python -m lens export`` use; the pages build the same figures from the same backend calls, with
their own widgets, and take their titles, sections and "What am I looking at?" texts from here.
Every view states in ``about`` what a reader is looking at, in plain sentences (the exported HTML
prints them under the chart).
"""
from .entry import SECTIONS, Drawn, Page, View
from .registry import (PAGES, VIEWS, RenderedView, page_named, query_value, render_view, sections,
                       view_named)

__all__ = ["SECTIONS", "Drawn", "Page", "View", "PAGES", "VIEWS", "RenderedView", "page_named", "query_value",
           "render_view", "sections", "view_named"]
