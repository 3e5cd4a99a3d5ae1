"""The home and logit-lens pages, run in-process with Streamlit's AppTest on the bundled model."""
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.model.loading import load_model
from lens.model.tokens import visible
from shown import as_shown

FRANCE = "The capital of France is"
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def reference():
    """Independent numbers: the model's own forward pass, norm + unembedding by hand, full softmax."""
    lm = load_model("smollm2-135m")

    def probs(prompt: str) -> np.ndarray:
        ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            out = lm.model(ids, output_hidden_states=True)
            hs = out.hidden_states  # HF: the last entry is already through the final norm
            rows = [lm.model.lm_head(lm.model.model.norm(h[0])) for h in hs[:-1]] + [out.logits[0]]
        return torch.stack(rows).double().softmax(-1).numpy()  # [L+1, T, V]

    return lm, probs


def app(prompt: str | None, page: str | None = None, **params) -> AppTest:
    """The app as a first visit to ``page`` (default: home) with these URL query parameters."""
    at = AppTest.from_file(APP, default_timeout=300)
    if page:
        at.switch_page(page)
    if prompt is not None:
        at.query_params["prompt"] = prompt
    for k, v in params.items():
        at.query_params[k] = v
    return at


def figure(at: AppTest, index: int = 0) -> dict:
    return charts(at)[index]


def test_home_shows_model_tokens_and_next_token_prediction(reference):
    lm, probs = reference
    at = app(FRANCE).run()
    assert not at.exception
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == str(lm.n_layers)
    assert metrics["Context"] == f"{lm.context_length:,}"  # the model's own context, not the page's cap
    assert metrics["Vocabulary"] == f"{lm.model.config.vocab_size:,}"
    tokens = [as_shown(lm.tokenizer, i) for i in lm.tokenizer(FRANCE)["input_ids"]]
    chips = " ".join(f"<bdi><code>{escape(visible(t), quote=False)}</code></bdi>" for t in tokens)
    assert any(chips in m.value for m in at.markdown)  # every token, in order, each in its own direction

    bar = figure(at)["data"][0]
    p_last = probs(FRANCE)[-1, -1]
    top = np.argsort(-p_last)[:10]
    labels = [y.strip() for y in bar["y"]][::-1]  # drawn bottom-up
    assert labels[0] == "1. " + visible(" Paris")
    assert labels == [f"{n + 1}. {visible(as_shown(lm.tokenizer, int(i)))}" for n, i in enumerate(top)]
    np.testing.assert_allclose(array(bar["x"])[::-1], p_last[top], atol=2e-4)


def test_logit_lens_page_heatmap_matches_independent_lens(reference):
    lm, probs = reference
    at = app(FRANCE).run()
    at.switch_page("pages/logit_lens.py").run()
    assert not at.exception and not at.error
    heat = figure(at)["data"][0]
    p = probs(FRANCE)  # [L+1, T, V]
    z = array(heat["z"])
    assert z.shape == (lm.n_layers + 1, p.shape[1])
    np.testing.assert_allclose(z, p.max(-1), atol=2e-4)
    # The cell text is each row's top-1 token; the last row's last cell is " Paris".
    top1 = p.argmax(-1)
    for r in (0, lm.n_layers // 2, lm.n_layers):
        for c in range(p.shape[1]):
            shown = visible(as_shown(lm.tokenizer, int(top1[r, c])))
            assert heat["text"][r][c].rstrip("…") == shown[: len(heat["text"][r][c].rstrip("…"))]
    assert heat["text"][-1][-1] == visible(" Paris")
    assert any("Paris" in c.value for c in at.caption)


def test_logit_lens_page_entropy_and_target_rank(reference):
    lm, probs = reference
    at = app(FRANCE, page="pages/logit_lens.py", metric="entropy").run()
    p = probs(FRANCE)
    ent = -(p * np.log(np.clip(p, 1e-300, None))).sum(-1)
    np.testing.assert_allclose(array(figure(at)["data"][0]["z"]), ent, atol=2e-3)

    at.selectbox(key="metric").set_value("target_rank")  # in the URL: metric=target+rank
    at.text_input(key="target").set_value(" London").run()
    assert not at.exception and not at.error
    london = lm.tokenizer(" London", add_special_tokens=False)["input_ids"][0]
    rank = 1 + (p > p[..., london:london + 1]).sum(-1)
    np.testing.assert_allclose(array(figure(at)["data"][0]["z"]), np.log10(rank), atol=1e-6)


def test_layer_stride_keeps_final_layer(reference):
    lm, _ = reference
    at = app(FRANCE, page="pages/logit_lens.py", stride="7").run()
    y = figure(at)["data"][0]["y"]
    assert y[0] == "emb" and y[-1] == f"L{lm.n_layers}"
    assert y[1] == "L7" and len(y) == len(range(0, lm.n_layers + 1, 7)) + (lm.n_layers % 7 != 0)


@pytest.mark.parametrize("prompt", ["naïve café 🙂 – שלום  e\u0301\u200b\n\tend", "x"])
def test_odd_unicode_and_single_token_prompts_work(prompt):
    at = app(prompt).run()
    at.switch_page("pages/logit_lens.py").run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 1


def test_empty_prompt_asks_for_one():
    at = app(None)
    at.run()
    at.text_area(key="prompt").set_value("").run()
    assert not at.exception
    assert any("Type a prompt" in i.value for i in at.info)
    at.switch_page("pages/logit_lens.py").run()
    assert not at.exception
    assert any("Type a prompt" in i.value for i in at.info)


def test_too_long_prompt_is_a_message_not_a_traceback():
    at = app("word " * 3000).run()
    assert not at.exception
    assert any("tokens long" in e.value and "at most" in e.value for e in at.error)
    # The app stays usable: a normal prompt works in the same session.
    at.text_area(key="prompt").set_value(FRANCE).run()
    assert not at.error and len(at.get("plotly_chart")) == 1


def test_unknown_model_is_a_message_and_app_recovers():
    at = app(FRANCE, model="no-such-model-xyz").run()
    assert not at.exception
    assert any("unknown model" in e.value for e in at.error)
    at.selectbox(key="model").set_value("smollm2-135m").run()
    assert not at.error and not at.exception


def test_multi_token_target_is_explained(reference):
    at = app(FRANCE, page="pages/logit_lens.py", target=" Parisianisms").run()
    assert not at.exception and not at.error
    assert any("tokens; tracking its first token" in c.value for c in at.caption)


def test_encoder_has_no_lens_but_says_so():
    at = app("The cat sat on the mat.", model="minilm-l6").run()
    assert not at.exception
    assert any("encoder" in i.value for i in at.info)
    at.switch_page("pages/logit_lens.py").run()
    assert not at.exception
    assert any("does not apply" in w.value for w in at.warning)


def test_long_prompt_decodes_only_the_window_shown(reference, monkeypatch):
    """A long prompt shows its last 48 positions first, decoded alone; moving the window decodes the new
    positions from the same forward pass. The numbers are the independent lens's at those positions."""
    import lens.engine_backend as local_backend

    lm, probs = reference
    prompt = "one two three four five six seven eight nine ten " * 12
    T = len(lm.tokenizer(prompt)["input_ids"])
    assert T > 100
    passes = []
    real = local_backend.capture
    monkeypatch.setattr(local_backend, "capture", lambda *a, **k: passes.append(1) or real(*a, **k))
    at = app(prompt, page="pages/logit_lens.py").run()
    assert not at.exception and not at.error
    p = probs(prompt)
    heat = figure(at)["data"][0]
    z = array(heat["z"])
    assert z.shape == (lm.n_layers + 1, 48)
    np.testing.assert_allclose(z, p[:, T - 48:].max(-1), atol=2e-4)
    assert any(f"positions {T - 48}–{T - 1} shown" in c.value for c in at.caption)

    at.slider(key="window").set_value((0, 29)).run()
    assert not at.exception and not at.error
    z = array(figure(at)["data"][0]["z"])
    assert z.shape == (lm.n_layers + 1, 30)
    np.testing.assert_allclose(z, p[:, :30].max(-1), atol=2e-4)
    assert any("at position 29" in c.value for c in at.caption)
    assert len(passes) == 1, "moving the window ran the model again"


@pytest.mark.parametrize("page, key, value, want", [
    ("pages/logit_lens.py", "metric", "kl", "kl"),
    ("pages/logit_lens.py", "metric", "target_rank", "target_rank"),
    ("pages/logit_lens.py", "metric", "KL to final", "kl"),  # the label, as Streamlit writes it into the URL
    ("pages/attention.py", "position", "2", "2"),
])
def test_links_naming_an_option_open_it(page, key, value, want):
    """Links written by hand or by the tour name options by their value (?metric=kl, ?position=2)."""
    at = app(FRANCE, page, **{key: value}).run()
    assert not at.exception
    assert at.selectbox(key=key).value == want


def test_link_values_a_box_cannot_take_are_named_with_what_is_shown_instead():
    """``?metric=bogus&stride=0&top_k=99`` used to be dropped without a word: the page now names each one and
    what it shows instead, and still draws the lens with the defaults."""
    at = app(FRANCE, "pages/logit_lens.py", metric="bogus", stride="0", top_k="99").run()
    assert not at.exception
    note = " ".join(c.value for c in at.caption)
    assert "Not used from the link" in note, note
    for said in ("colour “bogus” (showing top-1 probability)", "top-k “99” (showing top-5)",
                 "layer stride “0” (showing a stride of 1)"):
        assert said in note, (said, note)
    assert figure(at)["data"][0]["type"] == "heatmap"
    # A link whose values all apply gets no such line.
    at = app(FRANCE, "pages/logit_lens.py", metric="kl", stride="3").run()
    assert "Not used from the link" not in " ".join(c.value for c in at.caption)


# ---------------------------------------------------------------- Save run and code under every chart
TINY = "tiny-llama"
CODE = {"Python script (prints the numbers)", "Jupyter notebook"}


@pytest.fixture()
def saving(tmp_path, monkeypatch):
    """Runs saved in a file of the test's own; the tiny model offered in the sidebar's box; a fresh backend
    of the test's own (a view drawn again from the saved options shares nothing with the page's)."""
    from lens.engine_backend import local_backend
    from saved_views import offer_in_model_box

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    offer_in_model_box(monkeypatch, TINY)
    return local_backend(load_model(TINY), None)


def keyed(at: AppTest) -> dict[str, dict]:
    import json

    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def test_generate_saves_both_charts_with_the_decoding_shown(saving):
    from saved_views import check_saved

    at = app("the cat", "pages/generate.py", model=TINY, new_tokens="5", decoding="Sampled", seed="3",
             temperature="0.7", gen_metric="kl", gen_stride="1", gen_skip_first="false").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert CODE <= {b.proto.label for b in at.get("download_button")}
    shown = keyed(at)
    run = check_saved(at, "generation", shown["generation"], saving, "generate")
    assert {k: run.params[k] for k in ("max_new_tokens", "temperature", "seed", "metric", "stride", "chart")} == {
        "max_new_tokens": 5, "temperature": 0.7, "seed": 3, "metric": "kl", "stride": 1, "chart": "lens"}
    run = check_saved(at, "generation-attention", shown["generation-attention"], saving, "generate")
    assert (run.params["chart"], run.params["skip_first"]) == ("attention", False)


@pytest.mark.parametrize("panel, key, view, params", [
    ("compare", "lens-compare", "lens-comparison", {}),
    ("exit", "lens-exit", "early-exit", {"lens": "logit"}),
    ("language", "lens-language", "language", {"track": "t,a", "lens": "logit"}),
])
def test_lens_panels_save_their_view_as_shown(saving, panel, key, view, params):
    from saved_views import check_saved

    at = app("the cat sat on the mat", "pages/logit_lens.py", model=TINY, panel=panel, track="t,a").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = check_saved(at, key, keyed(at)[key], saving, view)
    assert {k: run.params[k] for k in params} == params


def test_early_exit_past_48_tokens_saves_its_window(saving):
    """The page draws the last 48 positions of a long prompt; Save run and code keep that window: the view drawn
    again from the saved options gives the same bars (positions 2–49 of 50)."""
    from saved_views import check_saved

    text = "the cat sat on the mat and the dog sat on the rug"  # 50 characters: 50 tokens of the tiny model
    at = app(text, "pages/logit_lens.py", model=TINY, panel="exit").run()
    assert not at.exception and not at.error
    shown = keyed(at)["lens-exit"]
    assert len(shown["data"][0]["x"]) == 48
    assert any("x-py-lens-exit" in b.proto.id for b in at.get("download_button"))
    run = check_saved(at, "lens-exit", shown, saving, "early-exit")
    assert run.params["positions"] == [len(text) - 48, len(text)] and run.params["lens"] == "logit"
