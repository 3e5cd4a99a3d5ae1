"""The typed results of a suite: small dataclasses of numpy arrays, lists and numbers (no torch), moved to and
from the cache and JSON field by field by lens/serialize.py. Rows follow ``layers`` (row 0: the embeddings)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SuiteLensResult:
    """The lens of every prompt of a suite at one position each: per prompt (first axis) and lens row."""

    model: str
    lens: str  # logit | linear | tuned | jacobian
    suite: str  # the suite's name
    layers: list[str]  # [R] "emb", "1", …, "L"
    prompts: list[str]  # [N]
    where: list[str]  # [N] where each prompt came from ("capitals.jsonl line 3")
    n_tokens: list[int]  # [N]
    positions: list[int]  # [N] the position read (0-based): the last unless the item named one
    target_ids: np.ndarray  # [N] int64
    targets: list[str]  # [N] the target token, decoded
    target_given: list[bool]  # [N] False: no target was given, the model's own answer is followed
    foils: list[str | None]  # [N]
    labels: dict[str, list[str]]  # label column -> [N] values ("" where an item has none)
    target_prob: np.ndarray  # [N, R]
    target_logprob: np.ndarray  # [N, R] nats
    target_rank: np.ndarray  # [N, R] int64, 1 = top
    kl_to_final: np.ndarray  # [N, R] nats, KL(p_final ‖ p_row)
    logit_diff: np.ndarray  # [N, R] logit(target) − logit(foil); NaN where the item has no foil
    top1_ids: np.ndarray  # [N, R] int64
    top1_tokens: list[list[str]]  # [N][R]
    top1_prob: np.ndarray  # [N, R]
    exit_layer: list[int | None]  # [N] the saturation row (as LogitLensResult.exit_layer)
    final_prediction: list[str]  # [N] the model's own top-1, decoded
    options: dict = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray:
        """[N] bool: the model's own answer is the target."""
        return np.asarray(self.top1_ids)[:, -1] == np.asarray(self.target_ids)


@dataclass
class SuiteAggregate:
    """One group of a suite's prompts (all of them, or those with one value of a label column), per lens row:
    mean, median and a seeded percentile-bootstrap 95 % interval of the mean of each measure."""

    layers: list[str]  # [R]
    by: str | None  # the label column grouped by (None: every prompt)
    group: str  # its value ("all" when not grouped)
    n: int  # prompts in the group
    target_prob_mean: np.ndarray  # [R]
    target_prob_median: np.ndarray  # [R]
    target_prob_ci95: np.ndarray  # [R, 2] (lo, hi)
    target_logprob_mean: np.ndarray
    target_logprob_median: np.ndarray
    target_logprob_ci95: np.ndarray
    target_rank_mean: np.ndarray
    target_rank_median: np.ndarray
    target_rank_ci95: np.ndarray
    kl_to_final_mean: np.ndarray
    kl_to_final_median: np.ndarray
    kl_to_final_ci95: np.ndarray
    logit_diff_n: int  # prompts of the group with a foil; the logit_diff_* are NaN when 0
    logit_diff_mean: np.ndarray
    logit_diff_median: np.ndarray
    logit_diff_ci95: np.ndarray
    exit_counts: np.ndarray  # [R + 1] int64: prompts whose saturation row is r; the last: never saturated
    n_targets: int  # prompts with a target given (the others follow the model's own answer)
    n_correct: int  # of those, the prompts whose final answer is the target
    accuracy: float  # n_correct / n_targets (NaN when no target was given)
    resamples: int
    seed: int


@dataclass
class SuitePatchResult:
    """Activation patching over a suite's pairs: each pair's normalised grid, right-aligned (positions counted
    from the end, since pairs may differ in length), and their mean with the number of pairs in each cell."""

    model: str
    site: str  # resid | attn | mlp | head
    suite: str
    layers: list[str]  # [R] as Backend.patch's rows
    columns: list[str]  # [C] "-C" … "-1" (the last position), or "head h"
    column_tokens: list[str]  # [C] the clean token every pair has at that column ("" where they differ)
    clean: list[str]  # [P] the pairs kept
    corrupt: list[str]  # [P]
    where: list[str]  # [P]
    targets: list[str]  # [P]
    foils: list[str | None]  # [P]
    labels: dict[str, list[str]]  # label column -> [P]
    metric_name: str  # "logit difference" (every pair has a foil) or "log-probability"
    metric_clean: np.ndarray  # [P]
    metric_corrupt: np.ndarray  # [P]
    grids: np.ndarray  # [P, R, C] each pair's (m(patched) − m(corrupt)) / (m(clean) − m(corrupt)); NaN: no such cell
    mean: np.ndarray  # [R, C] over the pairs that have the cell; NaN where none has
    count: np.ndarray  # [R, C] int64: pairs averaged in each cell
    left_out: list[dict] = field(default_factory=list)  # {"where", "clean", "corrupt", "reason"} per pair left out
    options: dict = field(default_factory=dict)
