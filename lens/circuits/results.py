"""Typed results of attribution and circuits: numpy arrays, lists and numbers (no torch), cached and printed
as JSON like every result of lens/results.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AttributionResult:
    """Attribution patching (AtP) of the grid ``patch`` computes at ``site``: the same rows, columns and
    normalisation. ``estimate[row][column]`` is ``(a_clean − a_corrupt) · ∂m/∂a`` on the corrupted run, over
    ``m(clean) − m(corrupt)``. Verified: ``actual`` is the real patching grid (``patch``'s ``patch``), with
    the Pearson ``correlation`` of the two over every cell and the cells where they differ most."""

    model: str
    site: str  # resid | attn | mlp | head
    tokens: list[str]  # the clean prompt's
    corrupt_tokens: list[str]
    layers: list[str]  # resid: emb, 1..L; else 1..L
    columns: list[str]  # positions "0".."T-1", or "head 0".."head H-1"
    target: str
    foil: str | None
    metric_name: str  # "logit difference" | "log-probability"
    metric_clean: float
    metric_corrupt: float
    qk_fix: bool
    estimate: np.ndarray  # [rows, columns] float32, normalised like the patching grid
    estimate_raw: np.ndarray  # [rows, columns] float64, the estimated change of the metric
    verified: bool = False
    actual: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [rows, columns] when verified
    correlation: float = float("nan")  # Pearson r of estimate and actual over every cell (verified)
    disagreements: list[dict] = field(default_factory=list)  # {layer, column, estimate, actual}, largest gap first
    # GradDrop: ``estimate`` is a size (mean |AtP| over passes that each drop one block's gradient), and the
    # correlation and disagreements compare it with |actual|.
    grad_drop: bool = False


@dataclass
class CircuitResult:
    """Edge attribution patching: every edge from a node's write (the embedding, a head, an MLP) to a reader's
    input (a layer's attention, all its heads reading one input; an MLP; the logits), scored on the corrupted
    run as ``(a_clean − a_corrupt) · ∂m/∂(reader's input)``; the circuit of the ``edges`` largest |scores|,
    pruned to what joins the input to the logits; and the faithfulness ``(m(circuit) − m(corrupt)) /
    (m(clean) − m(corrupt))`` of the top-n edges for each n of ``curve_edges``, every edge left out carrying
    the corrupted run's value."""

    model: str
    tokens: list[str]
    corrupt_tokens: list[str]
    target: str
    foil: str | None
    metric_name: str
    metric_clean: float
    metric_corrupt: float
    writers: list[str]  # "emb", "a1.h0" (block 1, head 0), …, "m1" (block 1's MLP), … in the order computed
    readers: list[str]  # "a1" (block 1's attention input), "m1", …, "logits"
    edge_from: np.ndarray  # [E] int: writer index, every edge ranked by |score| (largest first)
    edge_to: np.ndarray  # [E] int: reader index
    edge_score: np.ndarray  # [E] float64: the estimated change of the metric were the edge alone clean
    edges: int  # the n asked for (at most E)
    kept: list[list]  # the circuit after pruning: [writer, reader, score] (indices), ranked
    metric_circuit: float  # m of the circuit of the top ``edges`` edges
    faithfulness: float
    curve_edges: np.ndarray  # [K] int, ascending, the last one E
    curve_metric: np.ndarray  # [K] float64
    curve_faithfulness: np.ndarray  # [K] float64
    edges_80: int | None  # the fewest edges of the curve recovering at least 80 % (None: none does)
