"""Show the work and sampling on the pages, in-process (AppTest): each panel shows the backend's numbers (checked
against independent computations in test_explain.py and test_sampling.py), equal to the view it explains; the
URL holds the choices, and bad link values are named in the page."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lens.engine_backend import local_backend
from lens.explain.options import AttentionWeightOptions
from lens.model.loading import load_model
from lens.model.tokens import visible
from lens.options import HeadOptions, LensOptions
from lens.sampling.options import SampleOptions

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PROMPT = "The capital of France is"


def page(path: str | None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    if path:
        at.switch_page(path)
    at.query_params["prompt"] = PROMPT
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def backend():
    return local_backend(load_model("smollm2-135m"), None)


def text(at) -> str:
    return " ".join(m.value for m in at.markdown) + " " + " ".join(c.value for c in at.caption)


def test_lens_cell_work_is_the_heatmaps_cell(backend):
    lens = backend.logit_lens(PROMPT, LensOptions(top_k=5))
    for layer, pos in [(20, 4), (30, 4), (0, 2)]:
        at = page("pages/logit_lens.py", panel="work", cell_layer=str(layer), cell_pos=str(pos))
        shown = text(at)
        p = float(lens.top_probs[layer, pos, 0])
        assert f"with p = {p:.4g} — the heatmap's cell" in shown, shown[:400]
        assert [t.label for t in at.tabs][:4] == ["1 · Residual vector", "2 · Final norm", "3 · Logits", "4 · Softmax"]
        assert f"= <b>{p:.4g}</b>, the heatmap's probability" in shown
    assert "the model's own output" in text(page("pages/logit_lens.py", panel="work"))  # default: the last row
    at = page("pages/logit_lens.py", panel="work", cell_layer="99", cell_pos="x")
    assert "layer “99” (showing layer 30)" in text(at) and "position “x” (showing position 4)" in text(at)


def test_attention_weight_is_the_patterns_cell(backend):
    pats = backend.head_patterns(PROMPT, HeadOptions(5))
    at = page("pages/attention.py", view="Heads", head_layer="5", head="4", w_query="4", w_key="2")
    w = float(pats.attention[4, 4, 2])
    assert f"query 4 → key 2**: weight {w:.4g} — the pattern's cell" in text(at)
    r = backend.explain_attention(PROMPT, AttentionWeightOptions(5, 4, 4, 2))
    assert r.kv_head == 1 and "reads key/value head 1" in text(at)
    # presenting, a link naming a weight shows its walk-through in the charts' place
    at = page("pages/attention.py", present="1", view="Heads", head_layer="5", head="4", w_query="4", w_key="2")
    assert f"The weight of key 2: <b>{w:.4g}</b>" in text(at)
    assert not [e for e in at.expander if e.label.startswith("Explain one weight")]
    at = page("pages/attention.py", view="Heads", head_layer="5", head="4", w_query="77")
    assert "query 77 is past the prompt's 5 tokens" in text(at)


@pytest.mark.parametrize("path", [None, "pages/generate.py"])
def test_sampling_panel_is_the_backends_sample(backend, path):
    extra = {"tab": "Sampling on the spot"} if path else {}
    at = page(path, s_temp="0.7", s_top_k="5", s_seed="1", **extra)
    r = backend.sample(PROMPT, SampleOptions(temperature=0.7, top_k=5, seed=1))
    shown = text(at)
    assert f"{r.kept} of {r.vocab_size:,} tokens kept" in shown and "cut by top-5" in shown
    assert f"Seed 1 drew u = {r.draw:.4g}" in shown and visible(r.sampled) in shown
    # the temperature slider: a new distribution, from the same kept logits
    at.slider(key="s_temp").set_value(1.5).run()
    r2 = backend.sample(PROMPT, SampleOptions(temperature=1.5, top_k=5, seed=1))
    assert f"{r2.kept_mass * 100:.3g}% of the probability" in text(at)
    at = page(path, s_top_p="7", **extra)
    assert "top-p “7” (showing 1 (off))" in text(at)
