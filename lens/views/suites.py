"""The "Prompt suites" page (pages/suites.py) and its views: the lens over many prompts, aggregated per layer
with bootstrap intervals, and activation patching averaged over clean/corrupt pairs.

A suite view reads a suite as JSONL text (``Suite.to_jsonl()``: one item a line, its target, foil, position and
labels), so that a saved run and exported code hold every prompt exactly."""
from __future__ import annotations

from ..errors import LensError
from .entry import RESEARCH, SUITE, Drawn, Page, View

PAGE = Page(
    "suites", "Prompt suites", ":material/stacks:",
    "one finding over many prompts: per layer, the answer's probability with its 95 % interval", RESEARCH, """
One prompt shows one case. A **suite** is many prompts, each with the answer to follow (its *target*, e.g.
" Paris"), so that a finding can be checked over all of them.

- **Over the layers**: for every prompt, the lens at its last position (or the one the suite names), row by row;
  the line is the mean over the prompts, the band its **95 % bootstrap interval** (1,000 resamples of the prompts,
  seeded), and the grey lines are the prompts themselves: an outlier stands out. *Facet by* draws one line per
  value of a label column (a continent, a language).
- **Where answers settle**: the *exit layer* of each prompt, the first layer from which the lens's top-1 is the
  model's final answer for good.
- **Each prompt**: a table to sort and filter; pick a row to open that prompt in the logit lens.
- **Patching over pairs**: activation patching (as on *Compare & patch*) of every clean/corrupted pair, averaged
  cell by cell; positions are counted from the end, since pairs may differ in length.

Suites come from the shipped examples, a file (JSONL or CSV with a `prompt` column and optional `target`,
`foil`, `position`, `clean`/`corrupt`; other columns become labels; or `.txt`, one prompt a line), a pasted list, or
a template with slots (`The capital of {country} is`) and a table of fillers. `python -m lens suite` computes the
same numbers.""")


def _suite(text: str, name: str):
    from ..suites.suite import parse_jsonl

    if not isinstance(text, str) or not text.strip():
        raise LensError("a suite view takes the suite as JSONL text (one item a line)")
    return parse_jsonl(text, name)


def suite_prompts(text: str) -> list[str]:
    """Every prompt a suite's JSONL holds (a pair's clean and corrupted prompts both), for saving token ids."""
    out = []
    for item in _suite(text, "suite").items:
        out += [item.clean, item.corrupt] if item.is_pair else [item.prompt]
    return out


def render_suite(backend, info, text, *, suite, lens, measure, statistic, by) -> Drawn:
    from ..figures.suites import MEASURES, exit_figure, suite_lines_figure
    from ..suites.aggregate import aggregate
    from ..suites.options import SuiteOptions

    if measure not in MEASURES:
        raise LensError(f"unknown measure {measure!r}; choose from {', '.join(MEASURES)}")
    if statistic not in ("mean", "median"):
        raise LensError(f"the line shows the mean or the median, not {statistic!r}")
    result = backend.lens_suite(_suite(text, suite), SuiteOptions(lens=lens))
    groups = aggregate(result, by or None)
    overall = groups if not by else aggregate(result, None)
    a = overall[0]
    right = (f"the final answer is the target for {a.n_correct} of {a.n_targets}" if a.n_targets
             else "no targets given: each prompt follows the model's own answer")
    return Drawn([result, *groups], [suite_lines_figure(groups, measure, result, statistic), exit_figure(groups)],
                 f"{a.n} prompts of {result.suite}, {result.lens} lens; {right}.")


def render_pair_suite(backend, info, text, *, suite, site) -> Drawn:
    from ..figures.suites import pair_grid_figure
    from ..suites.options import PairSuiteOptions

    r = backend.patch_suite(_suite(text, suite), PairSuiteOptions(site=site))
    gone = f"; {len(r.left_out)} left out" if r.left_out else ""
    return Drawn([r], [pair_grid_figure(r)], f"{len(r.clean)} pairs of {r.suite}{gone}.")


VIEWS = (
    View("suite", "The lens over a suite of prompts", RESEARCH, "suites", (
        "Every prompt of the suite through the lens at its last position (or the position the suite names): per "
        "layer, the target's probability (or another measure) for each prompt (grey) and their mean with its 95 % "
        "percentile-bootstrap interval (1,000 resamples of the prompts, seeded) as a band.",
        "Below: how many prompts settle their final answer at each layer (the first layer from which the lens's "
        "top-1 is the model's answer for good)."),
        {"suite": "suite", "lens": "logit", "measure": "target_logprob", "statistic": "mean", "by": None},
        render_suite, reads=SUITE),
    View("pair-suite", "Activation patching over a suite of pairs", RESEARCH, "suites?tab=Patching+over+pairs", (
        "Every clean/corrupted pair of the suite patched as in the activation-patching view, each cell (m(patched) "
        "− m(corrupt)) / (m(clean) − m(corrupt)), and the mean over the pairs that have the cell; positions are "
        "counted from the end (-1 the last), since pairs may differ in length.",),
        {"suite": "suite", "site": "resid"}, render_pair_suite, reads=SUITE),
)
