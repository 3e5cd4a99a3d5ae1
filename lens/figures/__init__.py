"""Plotly figure builders: a typed result in, a plotly Figure out. No model maths here."""
