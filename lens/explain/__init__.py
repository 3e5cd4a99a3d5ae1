"""Show the work behind one number: a logit-lens cell, one attention weight, one MLP neuron at one position.

Each explanation reads the activations it starts from through the engine's named sites and then redoes, step by
step and in plain numpy (float64), what the model computes from there, so that every intermediate number can be
shown; the end of each walk-through equals the number the view it explains shows (the tests hold them to it).
"""
