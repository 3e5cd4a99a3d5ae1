"""Reproducible benchmarks of LayerLens on the bundled model: ``python -m bench`` (``make bench``).

``steps.py`` lists what is measured (one entry per analysis), ``worker.py`` runs one
step at one prompt length in a fresh process (so its peak memory is its own),
``browser.py`` times the dashboard in headless Chromium, ``__main__.py`` runs it all,
prints the table and writes JSON under ``bench/results/``.
"""
