"""The typed result of a probe run: small dataclasses of numpy arrays, lists and numbers (no torch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ProbeResult:
    """Per lens row (``layers``: "emb", "1".."L", the stream after each block, read at each prompt's last token)
    the cross-validated accuracy of a logistic-regression probe, the chance level and its band, and each row's
    probe direction (fitted on every prompt) in the stream's own coordinates."""

    model: str
    set_name: str
    classes: list[str]  # [label 0, label 1]: the probe reads label 1
    counts: list[int]  # prompts of each class
    n: int
    folds: int
    l2: float
    layers: list[str]
    accuracy: np.ndarray  # [R] cross-validated (every prompt held out once)
    fold_accuracy: np.ndarray  # [R, folds]
    train_accuracy: np.ndarray  # [R] the probe fitted on every prompt, on those prompts
    chance: float  # the larger class's share: what always answering it scores
    band: list[float]  # [low, high]: 95 % of a chance guesser's accuracies over n prompts (normal approximation)
    best_layer: str  # the row of the highest accuracy (the first of equals)
    readable_layer: str | None  # the first row whose held-out accuracy is above the band
    directions: np.ndarray  # [R, d] each row's probe direction, scaled to the gap between the classes' means


def probe_json(r: ProbeResult) -> dict:
    """What ``python -m lens probe --json`` prints (and the exported script prints): no directions."""
    from ..serialize import plain

    return plain({
        "model": r.model, "set": r.set_name, "classes": r.classes, "counts": r.counts, "n": r.n, "folds": r.folds,
        "l2": r.l2, "layers": r.layers, "accuracy": np.asarray(r.accuracy),
        "fold_accuracy": np.asarray(r.fold_accuracy), "train_accuracy": np.asarray(r.train_accuracy),
        "chance": r.chance, "band": r.band, "best_layer": r.best_layer,
        "best_accuracy": float(np.asarray(r.accuracy)[r.layers.index(r.best_layer)]),
        "readable_layer": r.readable_layer,
        "direction_norms": np.linalg.norm(np.asarray(r.directions), axis=-1)})
