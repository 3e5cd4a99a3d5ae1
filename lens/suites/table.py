"""A suite's numbers as tables: one row per prompt (what the Suites page lists, to sort, filter and open), one
row per prompt and lens row (the CSV of ``python -m lens suite --csv``), one row per pair and cell for
patching; and the single-prompt view that shows one prompt of a suite."""
from __future__ import annotations

import math

import numpy as np

from .results import SuiteLensResult, SuitePatchResult

# Which single-prompt colouring shows a suite measure (lens/figures/logit_lens.py METRICS).
LENS_PAGE_METRIC = {"target_prob": "target_prob", "target_logprob": "target_prob", "target_rank": "target_rank",
                    "kl_to_final": "kl", "logit_diff": "target_prob"}


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def prompt_rows(result: SuiteLensResult, row: int = -1, by: str | None = None, text: str = "",
                wrong_only: bool = False) -> list[dict]:
    """One dict per prompt: where it came from, its labels, its target and the model's answer, where the
    answer settles, and the target's numbers at lens row ``row`` (default the output). ``by``: grouped by that
    label column (its values in the order they first appear, prompts in suite order within each); ``text``:
    only the prompts whose prompt, target, answer or a label holds it (any case); ``wrong_only``: only the
    prompts whose final answer is not their target."""
    layer = result.layers[row]
    at = "output" if row in (-1, len(result.layers) - 1) else ("emb" if layer == "emb" else f"L{layer}")
    order = list(range(len(result.prompts)))
    if by:
        values = result.labels[by]
        rank = {v: k for k, v in enumerate(dict.fromkeys(values))}
        order.sort(key=lambda i: rank[values[i]])
    needle = text.casefold().strip()
    out = []
    for i in order:
        prompt = result.prompts[i]
        if wrong_only and (result.correct[i] or not result.target_given[i]):
            continue
        if needle and not any(needle in s.casefold() for s in (
                prompt, result.targets[i], result.final_prediction[i], *(v[i] for v in result.labels.values()))):
            continue
        ex = result.exit_layer[i]
        labels = {c: v[i] for c, v in result.labels.items()}
        if by:  # the grouping column first
            labels = {by: labels.pop(by), **labels}
        entry = {"#": i, "prompt": prompt, **labels,
                 "target": result.targets[i] if result.target_given[i] else f"({result.targets[i]})",
                 "answer": result.final_prediction[i], "right": bool(result.correct[i]),
                 "exit layer": None if ex is None else ("emb" if ex == 0 else f"L{result.layers[ex]}"),
                 f"p(target) at {at}": _num(result.target_prob[i, row]),
                 f"rank at {at}": int(result.target_rank[i, row]),
                 f"KL at {at}": _num(result.kl_to_final[i, row])}
        if any(f is not None for f in result.foils):
            entry[f"logit diff at {at}"] = _num(result.logit_diff[i, row])
        entry["where"] = result.where[i]
        out.append(entry)
    return out


def lens_csv(result: SuiteLensResult) -> tuple[list[str], list[list]]:
    """The header and rows of the per-prompt, per-lens-row CSV (NaN as an empty cell)."""
    cols = list(result.labels)
    header = ["index", "where", "prompt", "target", "foil", "position", *cols, "final_prediction", "correct",
              "exit_layer", "layer", "target_prob", "target_logprob", "target_rank", "kl_to_final",
              "logit_diff", "top1", "top1_prob"]
    rows = []
    for i, prompt in enumerate(result.prompts):
        ex = result.exit_layer[i]
        for r, layer in enumerate(result.layers):
            rows.append([i, result.where[i], prompt, result.targets[i], result.foils[i] or "",
                         result.positions[i], *[result.labels[c][i] for c in cols], result.final_prediction[i],
                         int(result.correct[i]), "" if ex is None else result.layers[ex], layer,
                         csv_number(result.target_prob[i, r]), csv_number(result.target_logprob[i, r]),
                         int(result.target_rank[i, r]), csv_number(result.kl_to_final[i, r]),
                         csv_number(result.logit_diff[i, r]), result.top1_tokens[i][r],
                         csv_number(result.top1_prob[i, r])])
    return header, rows


def pairs_csv(result: SuitePatchResult) -> tuple[list[str], list[list]]:
    """The header and rows of the per-pair, per-cell patching CSV (cells a pair does not have are left out)."""
    header = ["pair", "where", "clean", "corrupt", "target", "foil", "layer", "column", "patch"]
    grids = np.asarray(result.grids, np.float64)
    rows = [[p, result.where[p], result.clean[p], result.corrupt[p], result.targets[p], result.foils[p] or "",
             layer, col, csv_number(grids[p, r, c])]
            for p in range(len(result.clean)) for r, layer in enumerate(result.layers)
            for c, col in enumerate(result.columns) if not math.isnan(grids[p, r, c])]
    return header, rows


def csv_number(x) -> str:
    """A CSV cell: NaN as an empty cell, else the float's shortest exact text."""
    x = float(x)
    return "" if math.isnan(x) else repr(x)


def csv_text(header: list[str], rows: list[list]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(header)
    w.writerows(rows)
    return buffer.getvalue()


def single_prompt_query(result: SuiteLensResult, i: int, measure: str = "target_prob") -> dict[str, str]:
    """The lens page's URL parameters that show prompt ``i`` of the suite alone: the prompt, its target (when
    the suite gave one), the suite's lens and the colouring closest to ``measure``."""
    query = {"prompt": result.prompts[i], "lens": result.lens, "metric": LENS_PAGE_METRIC.get(measure, "target_prob")}
    if result.target_given[i]:
        query["target"] = result.targets[i]
    return query


def suite_json(result: SuiteLensResult, overall, groups=None) -> dict:
    """``python -m lens suite --json`` for a lens suite: ``per_prompt`` (every row's numbers, emb first),
    ``aggregate`` (every prompt: ``overall[0]``) and, when grouped, ``groups`` (one aggregate per value)."""
    from ..serialize import plain, to_json_dict

    per_prompt = []
    for i, prompt in enumerate(result.prompts):
        entry = {"prompt": prompt, "where": result.where[i], "position": result.positions[i],
                 "target": result.targets[i], "target_given": result.target_given[i], "foil": result.foils[i],
                 "final_prediction": result.final_prediction[i], "correct": bool(result.correct[i]),
                 "exit_layer": result.exit_layer[i], "labels": {c: v[i] for c, v in result.labels.items()},
                 "target_prob": result.target_prob[i], "target_rank": result.target_rank[i],
                 "target_logprob": result.target_logprob[i], "kl_to_final": result.kl_to_final[i],
                 "top1": result.top1_tokens[i], "top1_prob": result.top1_prob[i]}
        if result.foils[i] is not None:
            entry["logit_diff"] = result.logit_diff[i]
        per_prompt.append(plain(entry))
    out = {"model": result.model, "lens": result.lens, "suite": result.suite, "layers": result.layers,
           "per_prompt": per_prompt, "aggregate": to_json_dict(overall[0])}
    if groups is not None:
        out["groups"] = [to_json_dict(g) for g in groups]
    return out
