"""The "Watch it generate" page (pages/generate.py) and its view."""
from __future__ import annotations

from ..errors import LensError
from ..options import GenerateOptions, LensOptions
from .entry import READ_LAYERS, Drawn, Page, View

PAGE = Page(
    "generate", "Watch it generate", ":material/play_circle:",
    "the model writes on, and the logit lens follows every new token", READ_LAYERS,
    """
The model continues your prompt one token at a time, each time taking the token it finds most likely
(**greedy**) or drawing one at random in proportion to its probabilities (**sampled**, with a seed so that
the same seed gives the same text). Press **▶ Play**: the logit lens grows one column per new token, and
the boxed column is the position whose prediction became the newest token. Read a column from the bottom
up to see at which layer the model settled on the word it wrote. The table lists, for each new token,
the probability it had and the first layer from which the lens's top guess was that token to the end.
""")


def render_generate(backend, info, prompt, *, max_new_tokens, temperature, seed, metric, stride) -> Drawn:
    from ..figures.generation import generation_figure
    from ..figures.logit_lens import METRICS

    if metric not in METRICS or metric.startswith("target"):
        raise LensError(f"unknown colour metric {metric!r}; choose probability, entropy or kl")
    options = GenerateOptions(int(max_new_tokens), float(temperature), int(seed))
    gen = backend.generate(prompt, options)
    lens = backend.generation_lens(prompt, options, LensOptions(top_k=1))
    return Drawn([gen, lens], [generation_figure(gen, lens, metric=metric, stride=int(stride))],
                 f"{len(gen.token_ids) - gen.n_prompt} new tokens: “{gen.text}”")


VIEWS = (
    View("generate", "Watch it generate", READ_LAYERS, "generate", (
        "The model continues the prompt one token at a time (greedy: its top-1 each time; sampled: drawn from "
        "its probabilities with a fixed seed). Press Play: the logit lens grows one column per new token, and the "
        "boxed column is the position whose prediction became the newest token.",
        "Read a column from the bottom up to see at which layer the model settled on the word it wrote."),
        {"max_new_tokens": 20, "temperature": 0.0, "seed": 0, "metric": "probability", "stride": 2},
        render_generate),
)
