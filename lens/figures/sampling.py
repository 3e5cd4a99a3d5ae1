"""Sampling on the spot as a page shows it: one HTML table of the walk-through (cut tokens struck through, with
the running sum top-p reads) and one line saying what was drawn. Numbers only; the maths is lens/sampling/."""
from __future__ import annotations

from ..sampling.results import SampleResult
from .explain import num, table, tok


def sampling_table(r: SampleResult, rows: int | None = None) -> str:
    shown = r.rows[:rows] if rows else r.rows
    top = max((x["prob"] for x in shown), default=1.0) or 1.0
    after_k = bool(r.top_k)  # top-p reads the distribution renormalised after top-k: shown when they differ
    head = ["#", "token", "logit", f"logit / {num(r.temperature, 3)}", "p at T"] + (
        [f"after top-{r.top_k}"] if after_k else []) + ["cumulative", "kept p", "", ""]
    cells, struck, marked = [], [], []
    for n, x in enumerate(shown):
        if n and x["rank"] > shown[n - 1]["rank"] + 1:  # ranks left out between two rows
            cells.append(["…"] + [""] * (len(head) - 1))
            struck.append(False)
            marked.append(False)
        why = {"top-k": f"cut by top-{r.top_k}", "top-p": f"cut by top-p {num(r.top_p, 3)}"}.get(x["cut"], "")
        if x["id"] == r.sampled_id:
            why = "sampled" if not why else why
        cells.append([str(x["rank"]), tok(x["token"]), num(x["logit"]), num(x["scaled"]), num(x["prob_t"])]
                     + ([num(x["prob_k"])] if after_k else [])
                     + [num(x["cumulative"]), num(x["prob"]) if x["cut"] is None else "0", bar(x["prob"] / top), why])
        struck.append(x["cut"] is not None)
        marked.append(x["id"] == r.sampled_id)
    return table(head, cells, struck=struck, marked=marked)


def sampling_summary(r: SampleResult) -> str:
    steps = [f"temperature {num(r.temperature, 3)}"]
    steps.append(f"top-k {r.top_k} cut {r.cut_by_top_k:,} tokens" if r.top_k else "top-k off")
    steps.append(f"top-p {num(r.top_p, 3)} cut {r.cut_by_top_p:,} more" if r.top_p < 1 else "top-p off")
    return (" → ".join(steps) + f": {r.kept:,} of {r.vocab_size:,} tokens kept, holding {num(100 * r.kept_mass, 3)}% "
            f"of the probability at this temperature, renormalised to 100%. Seed {r.seed} drew u = {num(r.draw)}: "
            f"the running sum of the kept probabilities first passes it at {tok(r.sampled)} "
            f"(rank {r.sampled_rank}, p = {num(r.sampled_prob)}).")


def bar(fraction: float, width: int = 110) -> str:
    """A bar of the kept probability, drawn in the table itself (its length relative to the most likely)."""
    px = max(0, round(fraction * width))
    return (f'<div style="width:{width}px"><div style="width:{px}px; height:0.8em; background:#2f6db5; '
            'border-radius:2px"></div></div>')
