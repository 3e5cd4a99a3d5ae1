"""Prompt suites: one finding checked over many prompts instead of one.

- ``suite.py``: a ``Suite`` of items (prompt, target, foil, clean/corrupt pairs, label columns) read from
  JSONL, CSV, a pasted list or a template with slots; the counterfactual pair builder; the shipped examples
  (``examples/*.jsonl``). No torch: the pages import it.
- ``options.py``: what a suite request may ask (the lens, the patching site).
- ``batch.py``: the lens at one position per prompt, many prompts per forward pass (equal-length groups,
  no padding), through the engine's named sites.
- ``aggregate.py``: means, medians and seeded bootstrap intervals per lens row, facets by a label column,
  the patching grid averaged over pairs (pure numpy).
- ``results.py``: the typed results (small dataclasses, ``lens/serialize.py`` moves them).

The backend's ``lens_suite`` and ``patch_suite`` (lens/engine_backend.py) run them.
"""
