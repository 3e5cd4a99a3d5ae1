"""The guided tour: short stories about the bundled model, each one screen with a live chart.

A step names the views it shows (by their names in the registry, ``lens.views``), the prompt and options, a sentence or
two of story, what to notice, and a ``fact``: a sentence computed from the step's own
results (the layer where " Paris" appears, the head with the highest induction score),
so the story is about the numbers on screen, not about a model someone once ran.
The page (pages/tour.py) and the handout (``python -m lens tour``) both read STEPS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import numpy as np

from .examples import CORPORA

FACTUAL = "The capital of France is"
COUNTING = "one, two, three, four, five, six, seven,"
SUBJECT = "The Eiffel Tower is located in the city of"
COLOSSEUM = "The Colosseum is located in the city of"
BANK_WORD, BANK = CORPORA["bank: river or money"]


@dataclass(frozen=True)
class Shown:
    """One chart of a step: a view of ``texts`` with ``params`` (the view's defaults for the options not
    given); ``step_link`` opens the same chart on the view's page."""

    view: str
    texts: str | tuple[str, ...]
    params: dict = field(default_factory=dict)
    title: str = ""  # the chart's title in the tour (short: two charts share a screen)
    legend: bool = False  # keep its legend beside another chart (where the legend names what the colours are)


@dataclass(frozen=True)
class Step:
    title: str
    story: str
    notice: str
    shows: tuple[Shown, ...]
    fact: Callable[[list], str]  # from the rendered views (lens.views.RenderedView), in order
    try_it: bool = True  # whether a speaker may run it on another prompt (not where the chart ignores the prompt)


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
    """The rollout's share on the first token (what the chart shows), then the raw attention's, named apart."""
    r = views[0].results[0]
    roll = np.asarray(r.rollout, float)[:, 0]
    first = np.asarray(r.attention, float)[:, 0]
    heavy = int((first >= 0.5).sum())
    return (f"Rollout (the chart) traces {roll[-1]:.0%} of the last position after the last layer back to the first "
            f"token, and at least {roll.min():.0%} after every layer. The raw attention of the last position, "
            f"averaged over heads, puts {first.mean():.0%} on it (mean over the layers); in {heavy} of the "
            f"{len(first)} layers, half or more.")


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
    """Within-sense against across-sense similarity of the word (lens.senses), from the second chart."""
    s = views[1].results[0]
    w, a = np.asarray(s.within, float), np.asarray(s.across, float)
    apart = next((i for i in range(len(w)) if (w[i:] > a[i:]).all()), None)
    start = (f"At the embeddings every “{s.word}” is the same vector (cosine {w[0]:.2f}). " if
             np.isclose(w[0], 1, atol=5e-3) and np.isclose(a[0], 1, atol=5e-3) else "")
    if apart is None:
        return start + (f"Two “{s.word}”s of the same sense are not more alike for good than two of different "
                        f"senses: at the last layer {w[-1]:.2f} against {a[-1]:.2f}.")
    gap = int(np.argmax(w - a))
    out = (start + f"From {_layer_name(s.layers[apart])} on, two “{s.word}”s of the same sense are more alike than "
           f"two of different senses; the gap is widest at {_layer_name(s.layers[gap])}: mean cosine {w[gap]:.2f} "
           f"over the {s.pairs_within} same-sense pairs against {a[gap]:.2f} over the {s.pairs_across} others")
    if gap != len(w) - 1:
        out += f" (at the last layer {w[-1]:.2f} against {a[-1]:.2f})"
    return out + "."


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

# The lens steps show every 5th layer: few enough rows that the guesses are written in the cells on a projector too.
STEPS: tuple[Step, ...] = (
    Step("What a logit lens is",
         "Every layer keeps a vector for each token. The logit lens reads that vector with the model's own output "
         "layer, as if the model stopped there: which next word would it say now?",
         "Follow the last column upwards: the colour is the rank of “ Paris” among all 49,152 tokens. For most "
         "of the depth it is lost among thousands; in a small model like this one the answer arrives late, in "
         "the last few layers.",
         (Shown("logit-lens", FACTUAL, {"metric": "target_rank", "target": " Paris", "stride": 5},
                "Rank of “ Paris” at every layer (every 5th layer shown)"),),
         paris_fact),
    Step("Early layers echo the input",
         "At the bottom the vector is little more than the token's own embedding, and this model reads its output "
         "with the same matrix: so the first rows mostly predict the token they sit on.",
         "The bottom row repeats the column's own token (“ three” under “ three”); from the first block on, the "
         "guesses turn into continuations, and near the top into the next number.",
         (Shown("logit-lens", COUNTING, {"metric": "probability", "stride": 5},
                "Top-1 guess and its probability (every 5th layer shown)"),),
         echo_fact),
    Step("Sure, but not yet right",
         "Entropy says how spread out a layer's guess is (0 nats: one certain token; all 49,152 tokens at once "
         "would be 10.8). KL to final says how far the guess is from the model's final answer.",
         "Left, entropy: the middle layers are already fairly sure of something. Right, KL: what they are sure of "
         "is not the final answer, which only forms in the last layers. Read early rows of a logit lens with care.",
         (Shown("logit-lens", SUBJECT, {"metric": "entropy", "stride": 3}, "Entropy (nats)"),
          Shown("logit-lens", SUBJECT, {"metric": "kl", "stride": 3}, "KL to the final answer (nats)")),
         entropy_fact),
    Step("The attention sink",
         "Attention must go somewhere: a head that has nothing useful to read parks its attention on the first "
         "token, whose vector is built to be harmless. Rollout multiplies those attention maps through the layers.",
         "The first column: most of the attention, and so most of the rollout, lands on the first token, whatever "
         "it says. It is a resting place, not a sign that the first word matters.",
         (Shown("rollout", FACTUAL, {}, "Attention rollout into the last position"),),
         sink_fact),
    Step("Previous-token and induction heads",
         "Feed the model a random sequence of tokens twice. A previous-token head looks one step back; an induction "
         "head looks at what followed the last occurrence of the current token, so it can copy the continuation.",
         "Bright cells are heads with a job. An induction head needs a previous-token head in an earlier layer to "
         "work: compare the layers of the strongest of each, above.",
         (Shown("heads", FACTUAL, {"metric": "induction"}, "Induction score of every head"),),
         heads_fact, try_it=False),  # scored on a random repeated sequence: another prompt changes nothing
    Step("Rollout and routes on the same prompt",
         "Two answers to “where did this prediction come from?”. Rollout only multiplies attention weights; routes "
         "measure how much each attention block and MLP actually changed the vector they wrote into.",
         "Rollout (left) is dominated by the sink; the routes (right) skip it and show which words the answer's "
         "information was moved from, and how much the MLPs added on the way.",
         (Shown("rollout", SUBJECT, {}, "Rollout"),
          Shown("routes", SUBJECT, {}, "Routes")),
         rollout_routes_fact),
    Step("One word, two meanings: “bank”",
         "Six sentences use “bank” for a river side (three) or for money (three). Each is run through the model on "
         "its own; every token's vector at every layer is projected onto one picture (left).",
         "Left, the bold paths are the six “bank”s, red by a river, black for money: one point at the embeddings "
         "(the same vector), then they move with their context, close together, because what all tokens share "
         "dominates a flat picture. Right, the number behind it: how alike two “bank”s of the same sense are, "
         "against two of different senses, layer by layer.",
         (Shown("projection", tuple(BANK), {"word": BANK_WORD, "color_by": "layer"}, "Six sentences, PCA",
                legend=True),
          Shown("geometry", tuple(BANK), {"word": BANK_WORD, "metric": "senses"},
                "Same sense or not: cosine of two “bank”s", legend=True)),
         bank_fact),
    Step("Where information about the subject flows",
         "To answer “… located in the city of”, the model must bring what it knows about the subject, the Eiffel "
         "Tower, to the last position. The route graph draws the edges that carried it.",
         "Blue edges that leave the subject's tokens and reach the last column are attention moving the subject's "
         "information; orange diamonds are MLPs adding to it.",
         (Shown("routes", SUBJECT, {"threshold": 0.04}, "Routes to the prediction"),),
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
                "Share of “ Paris” restored by one patched vector"),),
         tracing_fact),
)


# ---------------------------------------------------------------- the step in the URL

def parse_step(raw: str | None, n: int = len(STEPS)) -> tuple[int, str]:
    """The 1-based step that ``?step=raw`` asks for, within 1..n, and a note when it is not exactly that."""
    raw = "1" if raw is None else str(raw).strip()
    try:
        x = float(raw)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        return 1, f"“{raw[:40]}” is not a step number: here is step 1."
    whole = math.ceil(x - 0.5)  # the nearest whole step, halves down (2.5: step 2)
    near = min(max(whole, 1), n)
    if whole != x:
        return near, f"“{raw[:40]}” is not a whole step: here is step {near}."
    if near != whole:
        return near, f"The tour has steps 1 to {n}: here is step {near}, the nearest to {whole}."
    return near, ""


# ---------------------------------------------------------------- links to the dashboard

# Every view's options as its page binds them in the URL: lens.talks.urls (read backwards by a talk's scenes).
from .talks.urls import CLEAN_ONLY, MISSING, PAIR_KEYS, WORD as _WORD, page_default, url_keys  # noqa: E402


class _Table:
    """``URL_KEYS[view][option]``: the Box (URL key, spelling, the page's default) of that option."""

    def __getitem__(self, view: str):
        return url_keys()[view]

    def __contains__(self, view: str) -> bool:
        return view in url_keys()

    def __iter__(self):
        return iter(url_keys())

    def items(self):
        return url_keys().items()


URL_KEYS = _Table()


def chart_params(shown: Shown) -> dict:
    """Every option the chart is drawn with: the step's, and the view's defaults for the others."""
    from .views import view_named

    return {**view_named(shown.view).params, **shown.params}


def link_query(shown: Shown, present: bool = False, model: str | None = None) -> dict[str, str]:
    """The URL parameters that open ``shown``'s chart on its page: the view, the texts, every option (an
    option left at None, "the page's default", is left out), the model when given, and ``present=1`` in
    presenter mode."""
    from .views import view_named
    from .views.entry import TWO_PROMPTS

    view = view_named(shown.view)
    query = dict(view.query)  # what opens the view on its page (?view=Routes)
    if model:
        query["model"] = model
    corpus = not isinstance(shown.texts, str)
    if view.reads == TWO_PROMPTS:
        query["clean"], query["corrupt"] = shown.texts
    elif view.name in CLEAN_ONLY:  # the page's clean prompt (its corrupted one: the page's first pair's)
        query["clean"] = shown.texts
    elif corpus:
        query.update(source="Corpus", corpus="\n".join(shown.texts))
    else:
        query["prompt"] = shown.texts
    params = chart_params(shown)
    for option, value in params.items():
        box = URL_KEYS[shown.view][option]
        if box.key == "-":  # no box on the page: the page computes it
            continue
        if value is None:  # "the page's default": an emptied box where the page would fill in its own
            if page_default(box) is not MISSING or box.key in PAIR_KEYS:
                query[box.key] = ""
            continue
        if box.when is not None:  # a box only one choice above it shows (greedy decoding has no temperature)
            cond, shows, absent = box.when
            if value == (view.params[option] if box.otherwise is MISSING else box.otherwise):
                continue
            if query.get(cond, absent) not in shows:
                if cond in query:  # another choice, already written: this box is not on the page
                    continue
                query[cond] = shows[0]
        query["corpus_word" if box.key == _WORD and corpus else box.key] = box.text(value, params)
    if present:
        query["present"] = "1"
    return query


def step_link(shown: Shown, present: bool = False, model: str | None = None) -> str:
    """The dashboard URL (path and query) that opens ``shown``'s chart with the same settings."""
    from urllib.parse import urlencode

    from .views import view_named

    return f"/{view_named(shown.view).path}?" + urlencode(link_query(shown, present, model))


# ---------------------------------------------------------------- a step on a speaker's own prompt

def editable(step: Step) -> str | None:
    """The step's prompt, when a speaker may swap in another one (every chart of it reads that one prompt)."""
    prompts = {s.texts for s in step.shows}
    if not step.try_it or len(prompts) != 1 or not isinstance(next(iter(prompts)), str):
        return None
    return next(iter(prompts))


def shows_for(backend, step: Step, prompt: str | None = None) -> tuple[Shown, ...]:
    """The step's charts, on ``prompt`` when given: a chart that follows a pinned answer (“ Paris”) follows
    the model's own final answer on that prompt instead, and its title says which."""
    if prompt is None or editable(step) is None:
        return step.shows
    from .options import LensOptions
    from .views import view_named

    answer = None
    out = []
    for s in step.shows:
        params, title = dict(s.params), s.title
        if params.get("target"):
            if answer is None:  # the lens page's own default read of the prompt: cached for the link
                top_k = view_named(s.view).params.get("top_k", 5)
                answer = backend.logit_lens(prompt, LensOptions(top_k=int(top_k))).final_prediction[-1]
            title = title.replace(f"“{params['target']}”", f"“{answer}”")
            params["target"] = answer
        out.append(replace(s, texts=prompt, params=params, title=title))
    return tuple(out)


def notice_for(step: Step, prompt: str | None = None) -> str:
    """"What to notice", saying for which prompt it was written when the step runs on another."""
    own = editable(step)
    if prompt is None or own is None or prompt == own:
        return step.notice
    return f"Written for the step's own prompt “{own}”, not yours: {step.notice}"


class RenderedStep(NamedTuple):
    views: list  # lens.views.RenderedView, one per chart
    fact: str  # "" when a fact written for the step's prompt does not apply to another
    shows: tuple[Shown, ...]  # the charts as drawn (on an edited prompt: that prompt and its answer)


def render_step(backend, step: Step, prompt: str | None = None) -> RenderedStep:
    """The rendered views of ``step`` (on ``prompt`` instead of the step's own, when given) and its
    fact sentence, computed from them."""
    from .views import render_view

    shows = shows_for(backend, step, prompt)
    views = [render_view(backend, s.view, list(s.texts) if isinstance(s.texts, tuple) else s.texts, **s.params)
             for s in shows]
    if shows is step.shows:
        return RenderedStep(views, step.fact(views), shows)
    try:
        return RenderedStep(views, step.fact(views), shows)
    except (ValueError, IndexError, KeyError, StopIteration):
        return RenderedStep(views, "", shows)


def titled(fig, title: str):
    """``fig`` with the tour's short title (when the step gives one)."""
    if title:
        fig.update_layout(title_text=title)
    return fig


def handout(backend, progress=None) -> str:
    """The whole tour as one self-contained HTML page (plotly.js inlined, no request leaves it)."""
    from .export import Section, html_page

    sections = []
    for i, step in enumerate(STEPS):
        if progress:
            progress(i / len(STEPS), f"step {i + 1} of {len(STEPS)}: {step.title}")
        views, fact, shows = render_step(backend, step)
        sections.append(Section(
            f"{i + 1}. {step.title}", paragraphs=(step.story, fact),
            figures=tuple(titled(v.figures[0], s.title) for s, v in zip(shows, views)),
            numbers=[r for v in views for r in v.results], notice=step.notice, prompt=views[0].texts))
    if progress:
        progress(1.0, "done")
    name = backend.info().name
    return html_page(f"A tour of {name}, layer by layer", sections,
                     subtitle=f"LayerLens guided tour · {len(STEPS)} steps · every chart computed from {name}")
