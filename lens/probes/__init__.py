"""Probes: per-layer logistic-regression probes of a labelled prompt set, cross-validated (lens/probes/probe.py)."""
