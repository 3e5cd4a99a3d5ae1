"""The logit lens page (pages/logit_lens.py) and its views: the lens, lenses compared, early exit,
the language of each layer."""
from __future__ import annotations

from ..options import LanguageOptions
from ..errors import LensError
from ..model.tokens import SYMBOLS
from ..options import LensOptions
from .entry import READ_LAYERS, Drawn, Page, View

PAGE = Page(
    "logit_lens", "Logit lens", ":material/layers:", "what every layer would predict at every position", READ_LAYERS,
    """
Each layer of the model keeps a vector for every token of the prompt (the *residual stream*).
The **logit lens** reads that vector early: it applies the model's final norm and output matrix to it,
as if the layer were the last one, and asks *"what next token would you predict now?"*

- **Rows** are layers: `emb` is the token embedding, `L1`…`Ln` the stream after each block (the top row is the model's real output).
- **Columns** are positions in your prompt; a cell predicts the token that comes *after* its column's token.
- **The word in a cell** is that layer's top-1 guess; hover for the top-k with probabilities.
- **Colour** is the metric you pick: confidence (top-1 probability), entropy (how spread out the guess is),
  KL divergence to the final layer (how far from the final answer), or the rank / probability of a target token.

Typical picture: early layers echo the input token, middle layers are unsure, and late layers settle on the answer.

**Lens**: the logit lens reads every layer with the *last* layer's read-out, which suits late layers only.
The **linear shortcut** (Din et al. 2023) first maps each layer's vector to the last layer's with a linear map
fitted by least squares on a corpus; the **tuned lens** (Belrose et al. 2023) trains such maps to match the final
distribution. With them, early rows that look like noise often already point at the answer.
An **orange line** under a cell (switch on *Exits*) is the layer from which that column's top-1 is the model's
final answer for good (its *saturation* layer).

Token symbols: """ + " · ".join(f"`{s.split(' ', 1)[0]}` {s.split(' ', 1)[1]}" for s in SYMBOLS) + ".")


# The final answer's top tokens at the last position that the lens page offers as targets (the browser switches
# to them at once; each costs about 4 % of a new prompt's lens: its rank at every cell is counted over the
# vocabulary).
LIVE_ALTERNATIVES = 5


def lens_with_alternatives(backend, prompt: str, options: LensOptions, progress=None):
    """The lens as the lens page shows it: ``base``, the default target's, following the final top
    LIVE_ALTERNATIVES as targets too (one computation serves every target offered), and ``result``, the lens with
    ``options.target`` (taken from ``base`` where the target is one of those, else computed). Every view of the
    lens (the page, the tour, exports) asks for the same, so each warms the others' cache."""
    from dataclasses import replace

    from ..analysis.retarget import retarget

    base = backend.logit_lens(prompt, replace(options, target=None, alternatives=LIVE_ALTERNATIVES), progress)
    if not options.target:
        return base, base
    return base, retarget(base, options.target) or backend.logit_lens(prompt, options, progress)


def lens_ahead(backend, prompt: str, options: LensOptions, window: int) -> None:
    """What the lens page will ask for ``prompt`` with these options (its computation started while the prompt is
    typed: ui/lookahead.py): ``lens_with_alternatives`` of the whole prompt; nothing for one longer than ``window``
    tokens, whose stretch of positions the page chooses when it runs."""
    from dataclasses import replace

    if len(backend.tokenize(prompt)) <= window:
        lens_with_alternatives(backend, prompt, replace(options, positions=None))


def render_logit_lens(backend, info, prompt, *, metric, target, stride, top_k, lens, exits) -> Drawn:
    from ..figures.logit_lens import METRICS, logit_lens_figure
    from ..model.tokens import visible

    if metric not in METRICS:
        raise LensError(f"unknown colour metric {metric!r}; choose from {', '.join(METRICS)}")
    _, r = lens_with_alternatives(backend, prompt, LensOptions(top_k=int(top_k), target=target, lens=lens))
    return Drawn([r], [logit_lens_figure(r, metric=metric, stride=int(stride), show_exit=bool(exits))],
                 f"{info.name} predicts “{visible(r.final_prediction[-1])}” after the last token.")


def render_lens_comparison(backend, info, prompt) -> Drawn:
    from ..figures.lens_comparison import lens_comparison_figure

    c = backend.lens_comparison(prompt)
    return Drawn([c], [lens_comparison_figure(c)], f"{', '.join(c.lenses)} lenses of {info.name} on {len(c.tokens)} tokens.")


def position_window(positions) -> tuple[int, int] | None:
    """A [start, stop) window of positions as given (a pair of whole numbers, e.g. from a saved run's JSON);
    None: every position. Its range is checked against the prompt by the lens."""
    if positions is None:
        return None
    try:
        if isinstance(positions, str) or any(isinstance(x, (bool, float)) for x in positions):
            raise TypeError
        start, stop = (int(x) for x in positions)
    except (TypeError, ValueError):
        raise LensError(f"positions is a window [start, stop) of two whole numbers, not {positions!r}") from None
    return start, stop


def render_early_exit(backend, info, prompt, *, lens, positions) -> Drawn:
    """``positions``: the [start, stop) window of positions read (the page's last 48 of a long prompt);
    None: every position."""
    from ..figures.early_exit import early_exit_figure

    window = position_window(positions)
    r = backend.logit_lens(prompt, LensOptions(top_k=1, lens=lens, positions=window))
    done = sum(e is not None and e < len(r.layers) - 1 for e in r.exit_layer)
    which = "" if window is None else f" (positions {r.positions[0]}–{r.positions[-1]})"
    return Drawn([r], [early_exit_figure(r)],
                 f"{done} of {len(r.exit_layer)} positions{which} have their final answer before the last layer.")


def render_language(backend, info, prompt, *, position, track, lens) -> Drawn:
    from ..figures.language import language_figure

    words = tuple(w for w in (track.split(",") if track else []) if w)
    at = None if position is None else int(position)
    m = backend.latent_language(prompt, LanguageOptions(position=at, words=words, lens=lens))
    return Drawn([m], [language_figure(m)], f"Probability per script at position {m.position}, {m.lens} lens.")


VIEWS = (
    View("logit-lens", "Logit lens", READ_LAYERS, "logit_lens", (
        "Each layer keeps a vector for every token of the prompt (the residual stream). The logit lens reads it "
        "early: it applies the model's final norm and output matrix to it, as if that layer were the last, and asks "
        "which next token it would predict.",
        "Rows are layers (emb: the token embeddings; the top row is the model's real output). Columns are positions; "
        "a cell predicts the token after its column's token, and shows that layer's top-1 guess. Colour: the chosen "
        "measure (confidence, entropy, KL divergence to the final layer, or a target token's rank or probability).",
        "Token symbols: ␣ a space, ↵ a new line, ⇥ a tab, <0xE2> one byte of a character split over several tokens.",
        "With the linear-shortcut or tuned lens, each layer's vector first goes through a map fitted to turn it into "
        "the last layer's vector (Din et al. 2023; Belrose et al. 2023): early layers that look like noise to the "
        "logit lens often already hold the answer in another basis. An orange line under a cell marks the layer "
        "from which the column's top-1 is the model's final answer for good."),
        {"metric": "probability", "target": None, "stride": 1, "top_k": 5, "lens": "logit", "exits": False},
        render_logit_lens),
    View("lens-comparison", "Lenses compared", READ_LAYERS, "logit_lens?panel=compare", (
        "The same prompt read by each lens the model has: the plain logit lens and the fitted ones (linear shortcut, "
        "tuned). Left: per layer, the mean over positions of the KL divergence from the model's final distribution "
        "to the layer's reading (lower is closer). Right: the share of positions whose top-1 is already the model's "
        "own prediction.",
        "A fitted lens that sits far below the logit lens in the early and middle layers shows that those layers "
        "hold the answer in a basis the unembedding cannot read directly."),
        {}, render_lens_comparison),
    View("early-exit", "Early exit", READ_LAYERS, "logit_lens?panel=exit", (
        "For each position, the saturation layer (Geva et al. 2022): the first layer from which the lens's top-1 "
        "is the model's final prediction and stays so to the last layer. A model that stopped computing there "
        "would write the same token (the idea behind early-exit models such as LayerSkip).",
        "Right: the share of positions that could stop at or before each layer."),
        {"lens": "logit", "positions": None}, render_early_exit),
    View("language", "Language of each layer", READ_LAYERS, "logit_lens?panel=language", (
        "At one position, how each layer's reading spreads its probability over scripts (every vocabulary token "
        "counted by the script of its letters) and over tracked words read by their first token. In translation "
        "prompts, middle layers of multilingual models often favour the English word before the last layers "
        "switch to the target language (Wendler et al. 2024).",),
        {"position": None, "track": None, "lens": "logit"}, render_language),
)
