"""The guided tour on the bundled model: every step renders real charts, its computed fact agrees
with an independent computation from the model itself, its links carry every setting of its charts,
a speaker's own prompt is followed honestly, and the step in the URL is read with a note when it is odd."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch

from command import lens_command
from lens.engine_backend import local_backend
from lens.model.tokens import word_key
from lens.tour import (BANK, BANK_WORD, FACTUAL, STEPS, URL_KEYS, chart_params, editable, link_query, notice_for,
                       parse_step, render_step, shows_for, step_link)
from lens.views import page_named, view_named
from test_geometry import hidden

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smol(bundled):
    return local_backend(bundled, None)


@pytest.fixture(scope="module")
def rendered(smol):
    return [render_step(smol, step) for step in STEPS]


def test_at_least_eight_steps_each_with_charts_and_a_fact(rendered):
    assert len(STEPS) >= 8
    for step, (views, fact, shows) in zip(STEPS, rendered):
        assert shows == step.shows
        assert len(views) == len(step.shows) and all(v.figures for v in views), step.title
        assert fact.endswith(".") and len(fact) > 30, (step.title, fact)
        assert step.story and step.notice


def test_paris_fact_matches_the_models_own_output(bundled, rendered):
    """Step 1 says at which layer " Paris" becomes the top guess and its final probability: the final
    layer's numbers are checked against a plain forward pass."""
    fact = rendered[0][1]
    tok = bundled.tokenizer
    ids = tok(FACTUAL, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = bundled.model(ids).logits[0, -1].double()
    probs = torch.softmax(logits, -1)
    paris = tok(" Paris", add_special_tokens=False)["input_ids"][0]
    assert int(probs.argmax()) == paris
    assert f"probability {float(probs[paris]):.2f}" in fact
    assert re.search(r"top guess first at layer \d+", fact)


def test_sink_fact_states_the_rollouts_share_and_the_raw_attention_apart(bundled, rendered):
    """Step 4: the rollout on the chart (heads averaged, residual added, rows renormalised, multiplied through
    the layers) recomputed in numpy from the model's own attention weights, and the raw attention beside it."""
    fact = rendered[3][1]
    tok = bundled.tokenizer
    ids = tok(FACTUAL, return_tensors="pt")["input_ids"]
    model = bundled.model
    old = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            att = model(ids, output_attentions=True).attentions
    finally:
        model.set_attn_implementation(old)
    A = [a[0].double().mean(0).numpy() for a in att]  # [T, T] per layer, heads averaged
    T = A[0].shape[0]
    R = np.eye(T)
    share = []
    for a in A:
        hat = (a + np.eye(T)) / (a + np.eye(T)).sum(-1, keepdims=True)
        R = hat @ R
        share.append(R[-1, 0])
    assert f"Rollout (the chart) traces {share[-1]:.0%} of the last position after the last layer" in fact
    assert f"at least {min(share):.0%} after every layer" in fact
    first = np.array([a[-1, 0] for a in A])
    assert f"averaged over heads, puts {first.mean():.0%} on it" in fact
    assert f"in {int((first >= 0.5).sum())} of the {len(first)} layers" in fact


def test_heads_fact_names_the_top_scoring_heads(rendered):
    views, fact, _ = rendered[4]
    s = views[0].results[0]
    layer, head = np.unravel_index(int(np.argmax(s.induction)), s.induction.shape)
    assert f"induction head is head {head} of layer {layer + 1} (score {s.induction[layer, head]:.2f})" in fact


def test_echo_fact_counts_the_embeddings_row(bundled, rendered):
    """Step 2: how many positions' embeddings row predicts the input token itself, recounted from
    the embedding matrix, the final norm and the unembedding."""
    views, fact, _ = rendered[1]
    r = views[0].results[0]
    m = bundled.model
    ids = torch.tensor(r.token_ids)
    with torch.no_grad():
        h = m.get_input_embeddings()(ids)
        top = (m.model.norm(h) @ m.lm_head.weight.T).argmax(-1)
    assert f"{int((top == ids).sum())} of the {len(ids)} positions" in fact


def test_every_link_names_every_option_of_its_chart():
    """For each chart of each step, its link holds the view, the texts and every option the chart is drawn with
    (the step's params and the view's defaults), spelled as its page's URL-bound box reads it; and the page
    binds each of those URL keys."""
    for step in STEPS:
        for shown in step.shows:
            view = view_named(shown.view)
            assert set(view.params) <= set(URL_KEYS[shown.view]), (shown.view, set(view.params) - set(URL_KEYS[shown.view]))
            url = urlparse(step_link(shown, present=True, model="smollm2-135m"))
            assert url.path.strip("/") == view.path
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            assert query.pop("present") == "1" and query.pop("model") == "smollm2-135m"
            for key, value in view.query.items():  # what opens the view on its page
                assert query.pop(key) == value
            if view.reads == "two prompts":
                assert [query.pop("clean"), query.pop("corrupt")] == list(shown.texts)
            elif isinstance(shown.texts, tuple):
                assert query.pop("source") == "Corpus" and query.pop("corpus").split("\n") == list(shown.texts)
            else:
                assert query.pop("prompt") == shown.texts
            params = chart_params(shown)
            source = (ROOT / page_named(view.path).file).read_text()
            if view.reads == "two prompts":  # the experiment's boxes are the shared ones of ui/experiment.py
                source += (ROOT / "ui" / "experiment.py").read_text()
            for option, value in params.items():
                box = URL_KEYS[shown.view][option]
                if value is None or box.key == "-":  # the page's own default ("the last position"), no box
                    continue
                key = "corpus_word" if box.key == "word" and isinstance(shown.texts, tuple) else box.key
                assert query.pop(key) == box.text(value, params), (step.title, option)
                assert f'key="{key}"' in source, (view.path, key)  # the page has a box for it
            assert query == {}, (step.title, query)  # nothing else travels
    # The options the steps pin travel too, whatever the page's default (presenter mode's stride is 2).
    q = link_query(STEPS[0].shows[0])
    assert (q["metric"], q["target"], q["stride"]) == ("target_rank", " Paris", "5")
    assert link_query(STEPS[4].shows[0])["head_metric"] == "induction"
    assert "present" not in q and "model" not in q


def test_a_speakers_prompt_is_followed_everywhere(bundled, smol):
    """Step 1 on another prompt: the chart follows the model's own answer there (its title says which), the
    fact is computed on it, the link carries prompt and answer, and "what to notice" says it was written
    for the step's own prompt."""
    prompt = "The capital of Italy is"
    step = STEPS[0]
    tok = bundled.tokenizer
    with torch.no_grad():
        logits = bundled.model(tok(prompt, return_tensors="pt")["input_ids"]).logits[0, -1].double()
    probs = torch.softmax(logits, -1)
    answer = tok.decode([int(probs.argmax())])
    assert answer == " Rome"
    views, fact, shows = render_step(smol, step, prompt)
    assert shows[0].texts == prompt and shows[0].params["target"] == answer
    assert shows[0].title.startswith("Rank of “ Rome”")
    assert views[0].results[0].target_tokens[-1] == answer
    assert fact.startswith("“Rome” ranks") and f"probability {float(probs[int(probs.argmax())]):.2f}" in fact
    q = link_query(shows[0])
    assert (q["prompt"], q["target"], q["metric"], q["stride"]) == (prompt, answer, "target_rank", "5")
    assert notice_for(step, prompt).startswith(f"Written for the step's own prompt “{FACTUAL}”")
    assert notice_for(step) == notice_for(step, FACTUAL) == step.notice
    # The heads step scores a random repeated sequence: no prompt of the speaker's would change it.
    heads = next(s for s in STEPS if s.shows[0].view == "heads")
    assert editable(heads) is None and shows_for(smol, heads, prompt) == heads.shows
    assert editable(step) == FACTUAL and editable(next(s for s in STEPS if s.shows[0].view == "patch")) is None


def test_the_bank_step_measures_the_senses_against_numpy(bundled, rendered):
    """Step 7's fact: the mean cosine between “bank”s of the same sense and of different senses, recomputed
    from the model's hidden states, and the layer from which the first stays above the second."""
    i = next(k for k, s in enumerate(STEPS) if s.shows[0].view == "projection")
    views, fact, shows = rendered[i]
    tok = bundled.tokenizer
    senses = ["river", "money", "money", "river", "money", "river"]
    V = []
    for text in BANK:
        pieces = [tok.decode([t]) for t in tok(text)["input_ids"]]
        k = next(k for k, p in enumerate(pieces) if k > 0 and word_key(p) == BANK_WORD)
        V.append(hidden(bundled, text)[:, k])
    U = np.stack(V, 1) / np.linalg.norm(np.stack(V, 1), axis=-1, keepdims=True)
    pairs = [(a, b) for a in range(6) for b in range(a + 1, 6)]
    within = np.mean([(U[:, a] * U[:, b]).sum(-1) for a, b in pairs if senses[a] == senses[b]], axis=0)
    across = np.mean([(U[:, a] * U[:, b]).sum(-1) for a, b in pairs if senses[a] != senses[b]], axis=0)
    apart = next(r for r in range(len(within)) if (within[r:] > across[r:]).all())
    gap = int(np.argmax(within - across))
    layers = views[1].results[0].layers
    name = lambda r: "the embeddings" if layers[r] == "emb" else f"layer {layers[r]}"  # noqa: E731
    assert fact.startswith("At the embeddings every “bank” is the same vector (cosine 1.00).")
    assert f"From {name(apart)} on, two “bank”s of the same sense are more alike" in fact
    assert f"widest at {name(gap)}: mean cosine {within[gap]:.2f} over the 6 same-sense pairs against " \
           f"{across[gap]:.2f} over the 9 others" in fact
    # The projection names the senses: one colour and one legend entry per sense.
    bold = [t for t in views[0].figures[0].data if t.mode == "lines+markers"]
    assert len(bold) == 6 and sorted(t.name for t in bold if t.showlegend) == [
        "“bank”, money: sentences 2, 3, 5", "“bank”, river: sentences 1, 4, 6"]
    assert len({t.line.color for t in bold}) == 2
    assert not views[0].figures[0].layout.annotations  # no note inside the chart to collide with its axis


@pytest.mark.parametrize("raw, step, note", [
    ("3", 3, ""), (None, 1, ""), (" 2 ", 2, ""),
    ("2.5", 2, "“2.5” is not a whole step: here is step 2."),
    ("2.6", 3, "“2.6” is not a whole step: here is step 3."),
    ("3.0", 3, ""),
    ("99", 9, "The tour has steps 1 to 9: here is step 9, the nearest to 99."),
    ("0", 1, "The tour has steps 1 to 9: here is step 1, the nearest to 0."),
    ("-4.5", 1, "“-4.5” is not a whole step: here is step 1."),
    ("two", 1, "“two” is not a step number: here is step 1."),
    ("inf", 1, "“inf” is not a step number: here is step 1."),
    ("nan", 1, "“nan” is not a step number: here is step 1."),
])
def test_the_step_in_the_url(raw, step, note):
    assert parse_step(raw, 9) == (step, note)


def test_the_handout_is_the_whole_tour_in_one_offline_file(tmp_path):
    out = tmp_path / "tour.html"
    run = lens_command("tour", "--out", str(out))
    assert run.returncode == 0, run.stderr
    html = out.read_text(encoding="utf-8")
    for i, step in enumerate(STEPS, start=1):
        assert f"<h2>{i}. " in html and "What to notice." in html
    assert html.count("Plotly.newPlot") == sum(len(s.shows) for s in STEPS)
    assert html.count('<script type="application/json"') == len(STEPS)
    assert "<script src" not in html and "<link" not in html
    bad = lens_command("tour", "--out", str(tmp_path / "tour.txt"))
    assert bad.returncode == 2 and "HTML file" in bad.stderr


def test_tracing_fact_matches_the_models_own_logits_and_the_grid(bundled, rendered):
    """The causal-tracing step: its logit differences come from plain forward passes of both prompts, and the
    layers it names are where its grid (checked cell by cell in test_patching.py) crosses one half."""
    from lens.tour import COLOSSEUM, SUBJECT

    i = next(k for k, s in enumerate(STEPS) if s.shows[0].view == "patch")
    views, fact, _ = rendered[i]
    tok = bundled.tokenizer
    paris, rome = (tok(t, add_special_tokens=False)["input_ids"][0] for t in (" Paris", " Rome"))
    for text in (SUBJECT, COLOSSEUM):
        with torch.no_grad():
            z = bundled.model(tok(text, return_tensors="pt")["input_ids"]).logits[0, -1].double()
        assert f"{float(z[paris] - z[rome]):.1f}" in fact
    r = views[0].results[0]
    assert re.search(r"subject's token “(.+?)”", fact).group(1) == r.tokens[2].strip()  # "iffel": the strongest
    rows = np.nonzero(r.patch[:, 2] >= 0.5)[0]
    name = {"emb": "the embeddings"}
    first, last = (name.get(r.layers[k], f"layer {r.layers[k]}") for k in (rows[0], rows[-1]))
    assert f"from {first} to {last}" in fact
    late = np.nonzero(r.patch[:, -1] >= 0.5)[0]
    assert f"last position it takes from layer {r.layers[late[0]]} on" in fact
