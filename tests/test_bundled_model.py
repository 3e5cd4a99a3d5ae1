"""The real bundled model (SmolLM2-135M): the lens against the model's own outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens.analysis.logit_lens import logit_lens
from lens.options import LensOptions
from lens.engine.hooks import HookEngine
from lens.engine.trace import CaptureSpec, capture
from shown import as_shown

FRANCE = "The capital of France is"
LONGER = "When Mary and John went to the store, John gave a drink to Mary because she was thirsty"


@pytest.fixture(scope="module")
def france(bundled):
    tok = bundled.tokenizer
    ids = tok(FRANCE)["input_ids"]
    trace = capture(HookEngine(bundled.model, bundled.adapter), ids, CaptureSpec(sublayers=True),
                    model_name=bundled.name, tokens=[as_shown(tok, i) for i in ids])
    with torch.no_grad():
        logits = bundled.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].double()
    return trace, logits, logit_lens(trace, tok, LensOptions(top_k=5))


def test_bundled_model_shape(bundled):
    assert bundled.adapter.model_type == "llama"
    assert bundled.n_layers == 30
    assert bundled.adapter.has_lm_head


def test_final_row_is_the_models_own_distribution(france):
    trace, logits, res = france
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    top_p, top_i = p.topk(5, -1)
    np.testing.assert_array_equal(res.top_ids[-1], top_i.numpy())
    np.testing.assert_allclose(res.top_probs[-1], top_p.numpy(), atol=1e-4)
    np.testing.assert_allclose(res.entropy[-1], (-(p * logp).sum(-1)).numpy(), atol=1e-4)
    assert np.all(np.abs(res.kl_to_final[-1]) < 1e-4)
    ids = trace.token_ids
    nll = [-logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
    np.testing.assert_allclose(res.next_token_loss[-1, :-1], nll, rtol=1e-4, atol=1e-4)


def test_capital_of_france_is_paris(france, bundled):
    _, logits, res = france
    assert res.final_prediction[-1] == " Paris"
    assert res.top_tokens[-1][-1][0] == " Paris"
    assert bundled.tokenizer.decode([int(logits[-1].argmax())]) == " Paris"
    # The answer is not in the embeddings: the early rows do not predict it at the last position.
    assert res.top_tokens[0][-1][0] != " Paris"
    assert res.target_rank[-1, -1] == 1 and res.target_tokens[-1] == " Paris"


def test_decomposition_on_the_real_model(france):
    trace, _, _ = france
    r = trace.residual
    for l in range(trace.n_layers):
        recon = r[l] + trace.attn_out[l] + trace.mlp_out[l]
        scale = r[l + 1].abs().max().item()
        assert (recon - r[l + 1]).abs().max().item() <= 1e-3 * max(scale, 1.0), l


def test_full_lens_against_float64_reference(bundled, reference, topk_matches):
    tok = bundled.tokenizer
    ids = tok(LONGER)["input_ids"]
    assert 15 <= len(ids) <= 25
    trace = capture(HookEngine(bundled.model, bundled.adapter), ids, CaptureSpec())
    res = logit_lens(trace, tok, LensOptions(top_k=5, target=" Mary"))
    mary = tok(" Mary", add_special_tokens=False)["input_ids"]
    assert len(mary) == 1
    ref = reference(bundled.adapter, trace.residual, ids, 5, target_id=mary[0])
    topk_matches(res.top_ids, res.top_probs, ref, atol=1e-4)
    np.testing.assert_allclose(res.entropy, ref["entropy"], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(res.kl_to_final, ref["kl"], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(res.target_prob, ref["target_prob"], atol=1e-4)
    assert np.all(ref["rank_lo"] <= res.target_rank) and np.all(res.target_rank <= ref["rank_hi"])
    finite = ~np.isnan(ref["next_loss"])
    np.testing.assert_allclose(res.next_token_loss[finite], ref["next_loss"][finite], atol=5e-4, rtol=1e-4)
    assert np.isnan(res.next_token_loss[:, -1]).all()
    assert np.all(np.abs(res.kl_to_final[-1]) < 1e-4)


def test_cli_json_on_bundled_model(bundled, run_cli, tmp_path):
    # Results go to a fresh cache; run_cli links the converted model from the real cache.
    proc = run_cli(["logit-lens", "--model", "smollm2-135m", "--prompt", FRANCE, "--json", "--top-k", "3"],
                   tmp_path)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    data = json.loads(proc.stdout)
    assert data["model"] == "smollm2-135m" and data["n_layers"] == 30
    assert data["final_prediction"][-1] == " Paris"
    assert data["top_tokens"][-1][-1][0] == " Paris"
    assert data["tokens"] == [as_shown(bundled.tokenizer, i) for i in bundled.tokenizer(FRANCE)["input_ids"]]
    assert np.array(data["top_probs"]).shape == (31, len(data["tokens"]), 3)
    assert list((tmp_path / "results").glob("*.safetensors")), "the result was not cached"
