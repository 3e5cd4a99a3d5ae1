"""Loading a model and running it once: registry, loading and conversion, adapters, trace, tokens."""
