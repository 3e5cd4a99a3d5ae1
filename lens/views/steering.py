"""The "Steer the model" page (pages/steering.py) and its view: plain and steered continuations side by side, the
target's lens in both runs and the dose-response."""
from __future__ import annotations

from ..steering.options import SteerOptions
from .entry import CAUSE_EFFECT, Drawn, Page, View

PAGE = Page(
    "steering", "Steer the model", ":material/alt_route:",
    "add a direction to the residual stream and watch the model write something else", CAUSE_EFFECT,
    """
**Steering** edits the residual stream entering one block, at every position or some, while the model writes.
The **vector** is, by default, the difference between two texts' residual streams entering that block at each
text's last token (positive − negative; with several pairs, one per line, the mean of the differences: activation
addition, ActAdd, and contrastive activation addition, CAA), or the unembedding row of a token (the direction the
logit lens reads as that token).

- **Add** (default): h + c·v. With the coefficient's unit **raw**, c multiplies the raw difference vector, so c = 0
  is exactly the plain run; with **× mean norm**, c is a fraction of the stream's mean norm at that layer over the
  prompt (its first token left out): the added vector's length is c times that norm.
- **Orthogonal**: the part of h orthogonal to v kept, the part along v multiplied by c (1 changes nothing, 0 removes
  it, −1 reflects it).
- **Cap**: the projection of h on v's direction at most c·‖v‖ (raw) or c × the mean norm.
- **Ablate**: the part of h along v removed (c unused).
- **Vector**: *contrast* (the two texts), *token* (a token's unembedding row), *probe* (the direction of a
  logistic-regression probe of a shipped labelled set, fitted at the layer: see Probes), or *saved*: a vector saved
  by name with **Save vector** (or on the Probes page, or `steer --save-vector NAME`), kept beside the saved runs and
  applied by default at the layer it was read at. A saved vector of another model's width is refused.
- **Positions**: all; after the prompt (its last token, which chooses the first new token, and every new one); or
  the prompt's first tokens ("front", as ActAdd adds them).

Both continuations start from the same seed (greedy by default), so any difference is the edit's.

**Lens difference** (the first tab): the full logit lens, every layer × every token, of the plain and of the steered
run over the *same* text: the prompt followed by the plain continuation (the dotted line is where the prompt
ends). Reading the same tokens, each cell of the two runs has the same context, so their difference is the edit's
alone. Each cell shows **log p(target) steered − plain** (red: steering raised the target there, blue: lowered it;
rows before the steered block are exactly zero), with the steered run's top-1 token written where it differs from the
plain run's. **Both lenses** shows the two runs' own lenses side by side (each cell's top-1 token, coloured by its
probability).

In the **Dose-response** tab (computed when it is opened), the **lens** chart reads log p(target) after each block at the prompt's last token in both runs (they agree before the block
steered); the **dose-response** varies the coefficient and reads log p(target) of the next token, and the table
gives the text at a few coefficients. The target defaults to the positive text's first token that differs from the
negative one (“ love” for love ↔ hate), or a token vector's own token.
""")

PRESETS = {  # name -> (prompt, positive, negative, layer, coef, unit, positions)
    "love ↔ hate": ("I think that you are", "I love talking about love", "I hate talking about hate", 8, 0.8, "norm",
                    "all"),
    "wedding ↔ funeral": ("I think that you are", "I talk about weddings all the time",
                          "I talk about funerals all the time", 8, 0.8, "norm", "all"),
}


def lines(text: str | None) -> tuple[str, ...]:
    """One text per non-empty line (a list of prompts: pairs by line)."""
    return tuple(t for t in (text or "").splitlines() if t.strip())


def default_layer(n_layers: int) -> int:
    """A quarter of the way down, rounded up (8 of SmolLM2's 30): steering works best in the early-middle layers;
    never the embeddings (layer 1) where there is a block after them: there two texts ending in the same token
    give no difference at all."""
    return min(n_layers, max(2, (n_layers + 3) // 4))


def options_from(params: dict, n_layers: int | None = None) -> SteerOptions:
    """The view's parameters as a run's options (the page and the exported code build them the same way); layer
    None: ``default_layer(n_layers)``."""
    from ..errors import LensError

    token = params.get("token") or None
    saved, probe_set = params.get("saved") or None, params.get("probe_set") or None
    if params["layer"] is None and n_layers is None:
        raise LensError("give the layer to steer at")
    layer = default_layer(n_layers) if params["layer"] is None else params["layer"]
    vector = "saved" if saved else "probe" if probe_set else "token" if token else "contrast"
    contrast = vector == "contrast"
    return SteerOptions(
        positive=lines(params["positive"]) if contrast else (), negative=lines(params["negative"]) if contrast else (),
        layer=int(layer), coef=float(params["coef"]), mode=params["mode"], positions=params["positions"],
        unit=params["unit"], vector=vector, token=token if vector == "token" else None,
        saved=saved if vector == "saved" else None, probe_set=probe_set if vector == "probe" else None,
        max_new_tokens=int(params["max_new_tokens"]), temperature=float(params["temperature"]),
        seed=int(params["seed"]), target=params.get("target") or None)


def render_steer(backend, info, prompt, *, positive, negative, token, layer, coef, unit, mode, positions,
                 max_new_tokens, temperature, seed, target, saved=None, probe_set=None) -> Drawn:
    from ..figures.steering import difference_figure, dose_figure, grid_figure, lens_figure, steer_reading

    r = backend.steer(prompt, options_from(dict(
        positive=positive, negative=negative, token=token, saved=saved, probe_set=probe_set, layer=layer, coef=coef,
        unit=unit, mode=mode,
        positions=positions, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, target=target),
        info.n_layers))
    return Drawn([r], [difference_figure(r), grid_figure(r, "plain"), grid_figure(r, "steered"), dose_figure(r),
                       lens_figure(r)], steer_reading(r))


VIEWS = (
    View("steer", "Steer the model", CAUSE_EFFECT, "steering", (
        "The prompt continued plainly and with a steering vector at the residual stream entering one block, from "
        "the same seed. The vector: positive − negative texts' streams at their last token (averaged over pairs), or "
        "a token's unembedding row; added (h + c·v), or the part along it rescaled, capped or removed.",
        "The lens difference: both runs read the same text (the prompt and the plain continuation); each cell is "
        "log p(target) read by the logit lens in the steered run minus in the plain run (rows before the block "
        "steered are zero). The two lens heatmaps give each run's top-1 token per cell. The dose-response reads "
        "log p(target) of the next token as the coefficient varies; the lens chart reads it after each block in both "
        "runs at the prompt's last token."),
        {"positive": "I love talking about love", "negative": "I hate talking about hate", "token": None,
         "saved": None, "probe_set": None,
         "layer": None, "coef": 0.8, "unit": "norm", "mode": "add", "positions": "all", "max_new_tokens": 20,
         "temperature": 0.0, "seed": 0, "target": None},
        render_steer),
)


def preset_options(name: str, n_layers: int):
    """(prompt, SteerOptions) the steering page runs when the preset ``name`` is picked and nothing else changed
    (the dose-response left to its own tab): what the warm start computes, so a speaker's first pick is cached."""
    from dataclasses import replace

    prompt, positive, negative, layer, coef, unit, positions = PRESETS[name]
    params = {**VIEWS[0].params, "positive": positive, "negative": negative, "token": None, "saved": None,
              "probe_set": None, "layer": min(layer, n_layers), "coef": coef, "unit": unit, "mode": "add",
              "positions": positions}
    return prompt, replace(options_from(params, n_layers), dose=False)
