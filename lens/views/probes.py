"""The "Probes" page (pages/probes.py) and its view: per-layer logistic-regression probe accuracy of a labelled
prompt set, cross-validated, with the chance level; the probe's direction saved as a steering vector."""
from __future__ import annotations

from .entry import RESEARCH, SUITE, Drawn, Page, View

PAGE = Page(
    "probes", "Probes", ":material/troubleshoot:",
    "at which layer a concept (true vs false, positive vs negative) becomes linearly readable", RESEARCH,
    """
A **probe** asks whether a concept can be read off the residual stream by a straight line. Each prompt of a labelled
set (shipped: 72 true and false plain statements, or 60 positive and negative short reviews; or your own CSV with a
`prompt` and a `label` column holding two values) is run once, and the stream after each block is kept at its
**last token**. At each layer a **logistic-regression** probe (L2-regularised, on standardised features, fitted by
Newton's method: the same answer on every run) learns the label from those vectors.

- **Held-out accuracy**: k-fold cross-validation (5 folds by default, each label dealt out evenly): every prompt is
  scored by a probe that never saw it. The dotted line is the accuracy on the prompts it was fitted on (with more
  dimensions than prompts it is often 100 %: only the held-out line says something).
- **Chance** is what always answering the larger label scores; the **band** is where 95 % of a guesser's accuracies
  fall over this many prompts. The green line marks the first layer above the band: where the concept becomes
  linearly readable.
- **As a steering vector**: the probe's direction at a layer (fitted on every prompt, its length the gap between the
  two labels' mean streams along it) can be saved by name and picked on **Steer the model** (vector: saved), or
  used there directly (vector: probe).

A probe that reads a concept shows the information is there, linearly; not that the model uses it (steering along
the direction is one test of that).
""")


def render_probe(backend, info, texts, *, folds, l2) -> Drawn:
    from ..figures.probes import accuracy_figure, probe_reading
    from ..probes.data import parse_set
    from ..probes.options import ProbeOptions

    r = backend.probe(parse_set(texts, "suite.jsonl"), ProbeOptions(folds=int(folds), l2=float(l2)))
    return Drawn([r], [accuracy_figure(r)], probe_reading(r))


VIEWS = (
    View("probe", "Probes", RESEARCH, "probes", (
        "Per layer, the held-out accuracy of a logistic-regression probe that reads the prompts' labels from the "
        "residual stream at each prompt's last token (k-fold cross-validated), beside the chance level and its 95 % "
        "band.",
        "The first layer above the band is where the concept becomes linearly readable; the probe's direction there "
        "can steer the model."),
        {"folds": 5, "l2": 1.0}, render_probe, reads=SUITE),
)
