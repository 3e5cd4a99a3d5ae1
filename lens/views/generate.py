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


CHARTS = ("lens", "attention")  # the page's two charts: the lens token by token, where each new token looked


def render_generate(backend, info, prompt, *, max_new_tokens, temperature, seed, metric, stride, chart,
                    skip_first) -> Drawn:
    """``chart`` "lens": the logit lens of the text as it grows (``metric``, ``stride``); "attention": where the
    position that chose each new token looked (``skip_first`` leaves the first token's column out)."""
    from ..figures.generation import generation_attention_figure, generation_figure
    from ..figures.logit_lens import METRICS

    if chart not in CHARTS:
        raise LensError(f"unknown generate chart {chart!r}; choose {' or '.join(CHARTS)}")
    if metric not in METRICS or metric.startswith("target"):
        raise LensError(f"unknown colour metric {metric!r}; choose probability, entropy or kl")
    options = GenerateOptions(int(max_new_tokens), float(temperature), int(seed))
    gen = backend.generate(prompt, options)
    if chart == "attention":
        looked = backend.generation_attention(prompt, options)
        return Drawn([gen, looked], [generation_attention_figure(looked, skip_first=bool(skip_first))],
                     f"Where each of the {len(gen.token_ids) - gen.n_prompt} new tokens looked: “{gen.text}”")
    lens = backend.generation_lens(prompt, options, LensOptions(top_k=1))
    return Drawn([gen, lens], [generation_figure(gen, lens, metric=metric, stride=int(stride))],
                 f"{len(gen.token_ids) - gen.n_prompt} new tokens: “{gen.text}”")


VIEWS = (
    View("generate", "Watch it generate", READ_LAYERS, "generate", (
        "The model continues the prompt one token at a time (greedy: its top-1 each time; sampled: drawn from "
        "its probabilities with a fixed seed). Press Play: the logit lens grows one column per new token, and the "
        "boxed column is the position whose prediction became the newest token.",
        "Read a column from the bottom up to see at which layer the model settled on the word it wrote."),
        {"max_new_tokens": 20, "temperature": 0.0, "seed": 0, "metric": "probability", "stride": 2, "chart": "lens",
         "skip_first": True},
        render_generate),
)
