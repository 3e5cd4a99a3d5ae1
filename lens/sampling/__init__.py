"""Sampling on the spot: temperature, top-k and top-p applied to a prompt's cached next-token logits (numpy only,
no model run), with every step's numbers, and a sample drawn with a shown seed."""
