"""Who writes the answer: direct logit attribution (dla.py), the sub-layer lens (sublayer.py) and attention
knockout (knockout.py), each a plain function from an engine's reads to a typed result (results.py), with its
options (options.py)."""
