"""The guided tour on the bundled model: every step renders real charts, its computed fact agrees
with an independent computation from the model itself, and its links open views that exist."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch

from lens.engine_backend import local_backend
from lens.tour import FACTUAL, STEPS, render_step, step_link


@pytest.fixture(scope="module")
def smol(bundled):
    return local_backend(bundled, None)


@pytest.fixture(scope="module")
def rendered(smol):
    return [render_step(smol, step) for step in STEPS]


def test_at_least_eight_steps_each_with_charts_and_a_fact(rendered):
    assert len(STEPS) >= 8
    for step, (views, fact) in zip(STEPS, rendered):
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


def test_sink_fact_matches_eager_attention(bundled, rendered):
    """Step 4's share of attention on the first token, from the model's own attention weights."""
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
    first = np.array([float(a[0, :, -1, 0].double().mean()) for a in att])
    assert f"puts {first.mean():.0%} of its attention on the first token" in fact
    assert f"in {int((first >= 0.5).sum())} of the {len(first)} layers" in fact


def test_heads_fact_names_the_top_scoring_heads(rendered):
    views, fact = rendered[4]
    s = views[0].results[0]
    layer, head = np.unravel_index(int(np.argmax(s.induction)), s.induction.shape)
    assert f"induction head is head {head} of layer {layer + 1} (score {s.induction[layer, head]:.2f})" in fact


def test_echo_fact_counts_the_embeddings_row(bundled, rendered):
    """Step 2: how many positions' embeddings row predicts the input token itself, recounted from
    the embedding matrix, the final norm and the unembedding."""
    views, fact = rendered[1]
    r = views[0].results[0]
    m = bundled.model
    ids = torch.tensor(r.token_ids)
    with torch.no_grad():
        h = m.get_input_embeddings()(ids)
        top = (m.model.norm(h) @ m.lm_head.weight.T).argmax(-1)
    assert f"{int((top == ids).sum())} of the {len(ids)} positions" in fact


def test_links_open_existing_pages_with_their_settings():
    pages = {"logit_lens", "projection", "attention", "patching"}
    for step in STEPS:
        for shown in step.shows:
            url = urlparse(step_link(shown))
            assert url.path.strip("/") in pages
            query = parse_qs(url.query)
            for key, value in shown.query.items():
                assert query[key] == [value]


def test_the_handout_is_the_whole_tour_in_one_offline_file(run_cli, tmp_path):
    out = tmp_path / "tour.html"
    (tmp_path / "cache").mkdir()
    run = run_cli(["tour", "--out", str(out)], tmp_path / "cache", timeout=600)
    assert run.returncode == 0, run.stderr.decode()
    html = out.read_text(encoding="utf-8")
    for i, step in enumerate(STEPS, start=1):
        assert f"<h2>{i}. " in html and "What to notice." in html
    assert html.count("Plotly.newPlot") == sum(len(s.shows) for s in STEPS)
    assert html.count('<script type="application/json"') == len(STEPS)
    assert "<script src" not in html and "<link" not in html
    bad = run_cli(["tour", "--out", str(tmp_path / "tour.txt")], tmp_path / "cache")
    assert bad.returncode == 2 and b"HTML file" in bad.stderr


def test_tracing_fact_matches_the_models_own_logits_and_the_grid(bundled, rendered):
    """The causal-tracing step: its logit differences come from plain forward passes of both prompts, and the
    layers it names are where its grid (checked cell by cell in test_patching.py) crosses one half."""
    from lens.tour import COLOSSEUM, SUBJECT

    i = next(k for k, s in enumerate(STEPS) if s.shows[0].view == "patch")
    views, fact = rendered[i]
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
