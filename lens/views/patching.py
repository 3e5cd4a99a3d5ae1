"""The "Compare & patch" page (pages/patching.py) and its view: the activation-patching grid."""
from __future__ import annotations

from ..errors import LensError
from ..options import PatchOptions
from .entry import CAUSE_EFFECT, TWO_PROMPTS, Drawn, Page, View

PAGE = Page(
    "patching", "Compare & patch", ":material/compare_arrows:",
    "which activations of one prompt restore its answer in another (causal tracing)", CAUSE_EFFECT,
    """
Two prompts that differ in a few tokens: a **clean** one the model answers with the *target* (" Paris"), and a
**corrupted** one where it answers the *foil* (" Rome"). The model runs on the corrupted prompt again and again, each
time with **one** activation taken from the clean run, and we measure how far that single patch moves the answer back:
the metric is `logit(target) − logit(foil)` at the last position, and each cell shows
`(metric after the patch − corrupted) / (clean − corrupted)`: **0** (white) changes nothing, **1** (blue) restores the
clean answer fully, red pushes the other way.

- **Residual stream**: rows as in the logit lens (`emb` is the input of layer 1, `Ln` the output of layer n), columns are
  positions. Where the answer is *computed* shows up as a band: typically the subject's tokens in the middle layers,
  then the last token in the late layers, once the information has moved there.
- **Attention / MLP**: what one block's attention or MLP writes at one position. **Heads**: one head of one layer,
  patched at every position.

Causal tracing (Meng et al. 2022, ROME) and activation patching (Heimersheim & Nanda 2024) are the methods behind it.
The two prompts must have the same number of tokens: position by position, one vector replaces another.
""")


def render_patch(backend, info, prompts, *, target, foil, site) -> Drawn:
    """``prompts``: the clean prompt, then the corrupted one."""
    from ..figures.patching import patch_figure, reading

    if not target:
        raise LensError("the patch view needs a target token (e.g. ' Paris')")
    r = backend.patch(prompts[0], prompts[1], PatchOptions(target=target, foil=foil, site=site))
    return Drawn([r], [patch_figure(r)], reading(r))


def render_noise(backend, info, prompt, *, target, subject, foil, site, samples, seed, scale) -> Drawn:
    """``subject``: the noised positions, as "1,2,3" (a link's text) or a list."""
    from ..figures.patching import noise_figure, noise_reading
    from ..options import NoiseOptions

    positions = subject if not isinstance(subject, str) else tuple(
        int(p) for p in subject.split(",") if p.strip())
    r = backend.noise_trace(prompt, NoiseOptions(target=target or None, subject=tuple(positions), foil=foil, site=site,
                                                  samples=samples, seed=seed, scale=scale))
    return Drawn([r], [noise_figure(r)], noise_reading(r))


VIEWS = (
    View("patch", "Activation patching", CAUSE_EFFECT, "patching", (
        "Two prompts that differ in a few tokens: a clean one the model answers with the target, a corrupted one it "
        "answers with the foil. The corrupted prompt is run again with one activation taken from the clean run, "
        "cell by cell; a cell shows how much of the answer that single patch restores: (m(patched) − m(corrupt)) / "
        "(m(clean) − m(corrupt)), m the target's logit minus the foil's at the last position.",
        "0 (white): the patch changes nothing; 1 (blue): it restores the clean answer; red pushes the other way. "
        "Rows: emb (the input of layer 1) then each layer's output, as in the logit lens; columns: positions."),
        {"target": None, "foil": None, "site": "resid"}, render_patch, reads=TWO_PROMPTS),
    View("noise-trace", "Causal tracing with noise", CAUSE_EFFECT, "patching?tab=Noise+on+the+subject", (
        "One prompt, no second one: Gaussian noise (3 × the standard deviation of the prompt's embeddings) is "
        "added to the embeddings of the marked tokens (✱, typically the subject), which takes the model's answer "
        "away; then one activation of the clean run is put back, cell by cell, and the answer measured again, "
        "averaged over several noise samples (seeded). A cell shows how much of the gap it closes: "
        "(m(restored) − m(noised)) / (m(clean) − m(noised)).",
        "This is ROME's causal tracing (Meng et al. 2022): the bright cells at the subject's last token in the "
        "middle layers are where the model looks up what it knows of the subject; those at the last token, late, "
        "are where the answer is carried to the output."),
        {"target": None, "subject": (1,), "foil": None, "site": "resid", "samples": 5, "seed": 0, "scale": 3.0},
        render_noise),
)
