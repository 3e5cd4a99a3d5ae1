"""Analyses: plain functions from a Trace (and options) to a typed result (lens/results.py)."""
