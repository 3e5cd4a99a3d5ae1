"""The guided tour: short stories about the bundled model, each one screen with a live chart.

A step names the views it shows (by their names in the registry, ``lens.views``), the prompt and options, a sentence or
two of story, what to notice, and a ``fact``: a sentence computed from the step's own
results (the layer where " Paris" appears, the head with the highest induction score),
so the story is about the numbers on screen, not about a model someone once ran.
The page (pages/tour.py) and the handout (``python -m lens tour``) both read STEPS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlencode

import numpy as np

from .examples import CORPORA

FACTUAL = "The capital of France is"
COUNTING = "one, two, three, four, five, six, seven,"
SUBJECT = "The Eiffel Tower is located in the city of"
COLOSSEUM = "The Colosseum is located in the city of"
BANK_WORD, BANK = CORPORA["bank: river or money"]


@dataclass(frozen=True)
class Shown:
    """One chart of a step: a view of ``texts`` with ``params``; ``query`` opens it in the dashboard."""

    view: str
    texts: str | tuple[str, ...]
    params: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)  # the page's own URL parameters for the same settings
    title: str = ""  # the chart's title in the tour (short: two charts share a screen)


@dataclass(frozen=True)
class Step:
    title: str
    story: str
    notice: str
    shows: tuple[Shown, ...]
    fact: Callable[[list], str]  # from the rendered views (lens.views.RenderedView), in order


# ---------------------------------------------------------------- facts, from the results on screen

def _layer_name(label: str) -> str:
    return "the embeddings" if label == "emb" else f"layer {label}"


def paris_fact(views) -> str:
    r = views[0].results[0]
    last = len(r.positions) - 1
    target = r.target_tokens[last]
    tops = [r.top_tokens[row][last][0] for row in range(len(r.layers))]
    if tops[-1] != target:
        return f"The model's final answer here is “{tops[-1].strip()}”."
    ranks = np.asarray(r.target_rank[:, last])
    first = next(i for i, t in enumerate(tops) if t == target)
    top10 = next(i for i in range(len(ranks)) if (ranks[i:] <= 10).all())
    p = float(r.target_prob[-1, last])
    return (f"“{target.strip()}” ranks {ranks[len(ranks) // 2]:,} at {_layer_name(r.layers[len(ranks) // 2])}, "
            f"enters the top 10 for good at {_layer_name(r.layers[top10])} and is the top guess first at "
            f"{_layer_name(r.layers[first])}; the final layer gives it probability {p:.2f}.")


def echo_fact(views) -> str:
    r = views[0].results[0]
    n = len(r.positions)

    def echoes(row: int) -> int:
        return sum(r.top_tokens[row][c][0] == r.tokens[r.positions[c]] for c in range(n))

    early = echoes(0)
    later = [row for row in range(1, len(r.layers)) if echoes(row) <= n // 4]
    where = f" By {_layer_name(r.layers[later[0]])} at most a quarter still do." if later else ""
    return f"At the embeddings, {early} of the {n} positions predict their own input token again.{where}"


def entropy_fact(views) -> str:
    r = views[0].results[0]
    ent = np.asarray(r.entropy, float).mean(axis=1)
    kl = np.asarray(r.kl_to_final, float).mean(axis=1)
    mid = slice(1, max(2, len(ent) * 2 // 3))
    near = next(i for i in range(len(kl)) if (kl[i:] < 5).all())
    return (f"Averaged over the positions, blocks 1–{mid.stop - 1} have an entropy of {ent[mid].mean():.1f} nats "
            f"(fairly sure), yet a KL of {kl[mid].mean():.1f} nats to the final answer; the KL stays under 5 nats "
            f"only from {_layer_name(r.layers[near])} on.")


def sink_fact(views) -> str:
    r = views[0].results[0]
    first = np.asarray(r.attention, float)[:, 0]
    heavy = int((first >= 0.5).sum())
    return (f"Averaged over the heads, the last position puts {first.mean():.0%} of its attention on the first token; "
            f"in {heavy} of the {len(first)} layers, half or more.")


def heads_fact(views) -> str:
    s = views[0].results[0]
    parts = []
    for name, m in (("induction", s.induction), ("previous-token", s.prev_token)):
        m = np.asarray(m, float)
        layer, head = np.unravel_index(int(np.argmax(m)), m.shape)
        parts.append(f"the strongest {name} head is head {head} of layer {layer + 1} (score {m[layer, head]:.2f})")
    return "On a repeated random sequence, " + "; ".join(parts) + "."


def rollout_routes_fact(views) -> str:
    roll, graph = views[0].results[0], views[1].results[0]
    last_row = np.asarray(roll.rollout, float)[-1]
    top = int(np.argmax(last_row))
    into = _attention_sources(graph)
    best = max(into, key=into.get) if into else None
    routes = (f"the routes' strongest attention edge into the prediction comes from “{graph.tokens[best].strip()}” "
              f"(position {best})" if best is not None else "the routes draw no attention edge above the threshold")
    return (f"Rollout gives most weight to “{roll.tokens[top].strip() or roll.tokens[top]}” (position {top}, "
            f"{last_row[top]:.0%}); {routes}.")


def _attention_sources(g) -> dict[int, float]:
    """Importance of the attention edges that enter the predicted position from other positions."""
    from .results import KINDS

    att = KINDS.index("attention")
    out: dict[int, float] = {}
    for e in range(len(g.edge_layer)):
        if g.edge_kind[e] == att and g.edge_dst[e] == g.position and g.edge_src[e] != g.position:
            out[int(g.edge_src[e])] = out.get(int(g.edge_src[e]), 0.0) + float(g.edge_importance[e])
    return out


def bank_fact(views) -> str:
    g = views[1].results[0]
    s = np.asarray(g.self_similarity, float)
    if s.size == 0:
        return "The word occurs too rarely to measure its self-similarity."
    raw = np.asarray(g.self_similarity_raw, float)
    low = int(np.nanargmin(raw[1:])) + 1
    return (f"Mean cosine between the {g.word_count} “{BANK_WORD}”s: {raw[0]:.2f} at the embeddings, "
            f"{raw[low]:.2f} at its lowest ({_layer_name(g.layers[low])}), {raw[-1]:.2f} at the last layer; less "
            f"the baseline of any two tokens, {s[0]:.2f} → {s[low]:.2f}.")


def subject_fact(views) -> str:
    g = views[0].results[0]
    into = _attention_sources(g)
    if not into:
        return "No attention edge above the threshold enters the prediction."
    ranked = sorted(into.items(), key=lambda kv: -kv[1])[:2]
    names = " and ".join(f"“{g.tokens[p].strip()}” (position {p})" for p, _ in ranked)
    return f"Apart from the residual stream, most of what reaches the prediction “{g.prediction.strip()}” comes from {names}."


def tracing_fact(views) -> str:
    """Where patching restores the answer: the subject's tokens, then the last position."""
    r = views[0].results[0]
    z = r.patch
    differ = [p for p in range(len(r.tokens)) if r.tokens[p] != r.corrupt_tokens[p]]
    best = max(differ, key=lambda p: float(z[:, p].max()))
    rows = np.nonzero(z[:, best] >= 0.5)[0]
    late = np.nonzero(z[:, -1] >= 0.5)[0]
    span = (f"from {_layer_name(r.layers[rows[0]])} to {_layer_name(r.layers[rows[-1]])}" if len(rows)
            else "nowhere above half")
    return (f"Patching the subject's token “{r.tokens[best].strip()}” restores more than half of the answer {span}; "
            f"at the last position it takes from {_layer_name(r.layers[late[0]])} on. The logit difference goes from "
            f"{r.metric_corrupt:.1f} (corrupted) to {r.metric_clean:.1f} (clean).")


# ---------------------------------------------------------------- the steps

STEPS: tuple[Step, ...] = (
    Step("What a logit lens is",
         "Every layer keeps a vector for each token. The logit lens reads that vector with the model's own output "
         "layer, as if the model stopped there: which next word would it say now?",
         "Follow the last column upwards: the colour is the rank of “ Paris” among all 49,152 tokens. For most "
         "of the depth it is lost among thousands; in a small model like this one the answer arrives late, in "
         "the last few layers.",
         (Shown("logit-lens", FACTUAL, {"metric": "target_rank", "target": " Paris", "stride": 3},
                {"prompt": FACTUAL, "metric": "target_rank", "target": " Paris"},
                "Rank of “ Paris” at every layer (every 3rd layer shown)"),),
         paris_fact),
    Step("Early layers echo the input",
         "At the bottom the vector is little more than the token's own embedding, and this model reads its output "
         "with the same matrix: so the first rows mostly predict the token they sit on.",
         "The bottom row repeats the column's own token (“ three” under “ three”); from the first block on, the "
         "guesses turn into continuations, and near the top into the next number.",
         (Shown("logit-lens", COUNTING, {"metric": "probability", "stride": 3}, {"prompt": COUNTING},
                "Top-1 guess and its probability (every 3rd layer shown)"),),
         echo_fact),
    Step("Sure, but not yet right",
         "Entropy says how spread out a layer's guess is (0 nats: one certain token; all 49,152 tokens at once "
         "would be 10.8). KL to final says how far the guess is from the model's final answer.",
         "Left, entropy: the middle layers are already fairly sure of something. Right, KL: what they are sure of "
         "is not the final answer, which only forms in the last layers. Read early rows of a logit lens with care.",
         (Shown("logit-lens", SUBJECT, {"metric": "entropy", "stride": 3}, {"prompt": SUBJECT, "metric": "entropy"},
                "Entropy (nats)"),
          Shown("logit-lens", SUBJECT, {"metric": "kl", "stride": 3}, {"prompt": SUBJECT, "metric": "kl"},
                "KL to the final answer (nats)")),
         entropy_fact),
    Step("The attention sink",
         "Attention must go somewhere: a head that has nothing useful to read parks its attention on the first "
         "token, whose vector is built to be harmless. Rollout multiplies those attention maps through the layers.",
         "The first column: most of the attention, and so most of the rollout, lands on the first token, whatever "
         "it says. It is a resting place, not a sign that the first word matters.",
         (Shown("rollout", FACTUAL, {}, {"prompt": FACTUAL}, "Attention rollout into the last position"),),
         sink_fact),
    Step("Previous-token and induction heads",
         "Feed the model a random sequence of tokens twice. A previous-token head looks one step back; an induction "
         "head looks at what followed the last occurrence of the current token, so it can copy the continuation.",
         "Bright cells are heads with a job. An induction head needs a previous-token head in an earlier layer to "
         "work: compare the layers of the strongest of each, above.",
         (Shown("heads", FACTUAL, {"metric": "induction"}, {"prompt": FACTUAL, "head_metric": "induction"},
                "Induction score of every head"),),
         heads_fact),
    Step("Rollout and routes on the same prompt",
         "Two answers to “where did this prediction come from?”. Rollout only multiplies attention weights; routes "
         "measure how much each attention block and MLP actually changed the vector they wrote into.",
         "Rollout (left) is dominated by the sink; the routes (right) skip it and show which words the answer's "
         "information was moved from, and how much the MLPs added on the way.",
         (Shown("rollout", SUBJECT, {}, {"prompt": SUBJECT}, "Rollout"),
          Shown("routes", SUBJECT, {}, {"prompt": SUBJECT}, "Routes")),
         rollout_routes_fact),
    Step("One word, two meanings: “bank”",
         "Six sentences use “bank” for a river side or for money. Each is run through the model on its own, and "
         "every token's vector at every layer is projected onto one picture.",
         "The bold paths are the six “bank”s, one colour per sentence (the full view names them): they start "
         "together at the embeddings and drift apart as context is mixed in; the self-similarity (right, solid; "
         "dotted: before the baseline is taken off) puts a number on it, layer by layer.",
         (Shown("projection", tuple(BANK), {"word": BANK_WORD},
                {"source": "Corpus", "corpus_word": BANK_WORD, "corpus": "\n".join(BANK)}, "Six sentences, PCA"),
          Shown("geometry", tuple(BANK), {"word": BANK_WORD, "metric": "self_similarity"},
                {"source": "Corpus", "corpus_word": BANK_WORD, "corpus": "\n".join(BANK)},
                "Self-similarity of “bank”")),
         bank_fact),
    Step("Where information about the subject flows",
         "To answer “… located in the city of”, the model must bring what it knows about the subject, the Eiffel "
         "Tower, to the last position. The route graph draws the edges that carried it.",
         "Blue edges that leave the subject's tokens and reach the last column are attention moving the subject's "
         "information; orange diamonds are MLPs adding to it.",
         (Shown("routes", SUBJECT, {"threshold": 0.04}, {"prompt": SUBJECT, "threshold": "0.04"},
                "Routes to the prediction"),),
         subject_fact),
    Step("Where the answer is computed",
         "The logit lens shows where the answer can be read; patching shows where it is made. Run the prompt about "
         "the Colosseum, but put in one vector from the run about the Eiffel Tower, and see whether “ Paris” comes "
         "back: each cell is one such run.",
         "A blue band over the subject's tokens from the embeddings through the middle layers: that is where the "
         "tower is looked up. "
         "Higher up the band moves to the last position, after attention has carried the answer there, long before "
         "the lens can read it.",
         (Shown("patch", (SUBJECT, COLOSSEUM), {"target": " Paris", "foil": " Rome"},
                {"clean": SUBJECT, "corrupt": COLOSSEUM, "patch_target": " Paris", "foil": " Rome"},
                "Share of “ Paris” restored by one patched vector"),),
         tracing_fact),
)


def step_link(shown: Shown) -> str:
    """The dashboard URL (path and query) that opens this chart's view with the same settings."""
    from .views import view_named

    view = view_named(shown.view)
    fixed = urlencode(view.query)  # what opens the view on its page (?view=Routes), then the step's settings
    return f"/{view.path}?" + "&".join(q for q in (fixed, urlencode(shown.query)) if q)


def titled(fig, title: str):
    """``fig`` with the tour's short title (when the step gives one)."""
    if title:
        fig.update_layout(title_text=title)
    return fig


def editable(step: Step) -> str | None:
    """The step's prompt, when a speaker may swap in another one (every chart of it reads one prompt)."""
    prompts = {s.texts for s in step.shows}
    return next(iter(prompts)) if len(prompts) == 1 and isinstance(next(iter(prompts)), str) else None


def render_step(backend, step: Step, prompt: str | None = None) -> tuple[list, str]:
    """The rendered views of ``step`` (on ``prompt`` instead of the step's own, when given) and its
    fact sentence. A fact written for the step's prompt may not apply to another: then it is ""."""
    from .views import render_view

    views = [render_view(backend, s.view, prompt if prompt is not None else
                         (list(s.texts) if isinstance(s.texts, tuple) else s.texts), **s.params)
             for s in step.shows]
    if prompt is None:
        return views, step.fact(views)
    try:
        return views, step.fact(views)
    except (ValueError, IndexError, KeyError, StopIteration):
        return views, ""


def handout(backend, progress=None) -> str:
    """The whole tour as one self-contained HTML page (plotly.js inlined, no request leaves it)."""
    from .export import Section, html_page

    sections = []
    for i, step in enumerate(STEPS):
        if progress:
            progress(i / len(STEPS), f"step {i + 1} of {len(STEPS)}: {step.title}")
        views, fact = render_step(backend, step)
        sections.append(Section(
            f"{i + 1}. {step.title}", paragraphs=(step.story, fact),
            figures=tuple(titled(v.figures[0], s.title) for s, v in zip(step.shows, views)),
            numbers=[r for v in views for r in v.results], notice=step.notice, prompt=views[0].texts))
    if progress:
        progress(1.0, "done")
    name = backend.info().name
    return html_page(f"A tour of {name}, layer by layer", sections,
                     subtitle=f"LayerLens guided tour · {len(STEPS)} steps · every chart computed from {name}")
