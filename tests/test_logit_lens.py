"""The chunked logit lens against a plain float64 computation, for every tiny architecture."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lens.analysis.logit_lens as ll
from lens.errors import LensError
from lens.analysis.logit_lens import logit_lens, resolve_target
from lens.options import LensOptions
from lens.model.tiny import TINY_ARCHS
from lens.engine.hooks import HookEngine
from lens.engine.trace import CaptureSpec, capture
from shown import as_shown

ATOL = 2e-5  # float32 chunked statistics against float64


def check_against_reference(res, trace, tok, ref, k, cols=slice(None), topk_matches=None):
    R, T = trace.n_layers + 1, trace.n_tokens
    P = len(range(T)[cols])
    assert res.top_ids.shape == (R, P, k) and res.top_probs.shape == (R, P, k)
    assert res.entropy.shape == (R, P) and res.kl_to_final.shape == (R, P)
    assert res.target_rank.shape == (R, P) and res.target_prob.shape == (R, P)
    assert res.next_token_loss.shape == (R, P) and res.target_ids.shape == (P,)
    topk_matches(res.top_ids, res.top_probs, ref, atol=ATOL, cols=cols)
    np.testing.assert_allclose(res.entropy, ref["entropy"][:, cols], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.kl_to_final, ref["kl"][:, cols], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(res.target_ids, ref["target_ids"][cols])
    assert np.all(ref["rank_lo"][:, cols] <= res.target_rank)
    assert np.all(res.target_rank <= ref["rank_hi"][:, cols])
    np.testing.assert_allclose(res.target_prob, ref["target_prob"][:, cols], atol=ATOL, rtol=0)
    np.testing.assert_allclose(res.next_token_loss, ref["next_loss"][:, cols], atol=1e-4, rtol=1e-5)
    assert res.top_tokens == [[[as_shown(tok, int(i)) for i in cell] for cell in row] for row in res.top_ids]
    assert res.target_tokens == [as_shown(tok, int(i)) for i in res.target_ids]


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_lens_matches_reference_default_target(arch, tiny_trace, reference, topk_matches):
    trace, tok = tiny_trace(arch)
    res = logit_lens(trace, tok, LensOptions(top_k=3))
    ref = reference(trace.adapter, trace.residual, trace.token_ids, 3)
    check_against_reference(res, trace, tok, ref, 3, topk_matches=topk_matches)
    R, T = trace.n_layers + 1, trace.n_tokens
    assert res.layers == ["emb", "1", "2", "3"] and res.n_layers == 3
    assert res.positions == list(range(T))
    assert res.tokens == trace.tokens and res.token_ids == trace.token_ids
    # Default target: the final layer's own top-1, which has rank 1 there.
    np.testing.assert_array_equal(res.target_ids, res.top_ids[-1, :, 0])
    np.testing.assert_array_equal(res.target_rank[-1], np.ones(T))
    np.testing.assert_allclose(res.target_prob[-1], res.top_probs[-1, :, 0], atol=1e-6)
    # The final row is the model itself: KL 0 and the same top-1 as the model's output.
    assert np.all(np.abs(res.kl_to_final[-1]) < 1e-5)
    assert res.final_prediction == [as_shown(tok, i) for i in trace.output_top1.tolist()]
    np.testing.assert_array_equal(res.top_ids[-1, :, 0], trace.output_top1.numpy())
    # Next-token loss: NaN only at the last position.
    assert np.all(np.isnan(res.next_token_loss[:, -1]))
    assert np.all(np.isfinite(res.next_token_loss[:, :-1]))
    assert np.all((res.kl_to_final >= 0) & (res.entropy >= 0))
    assert np.all(res.entropy <= np.log(trace.adapter.unembed.weight.shape[0]) + 1e-4)
    # Far from uniform somewhere (uniform is 1/258), so the tests do not only see flat rows.
    assert res.top_probs[..., 0].max() > 0.1


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_lens_matches_reference_user_target(arch, tiny_trace, reference, topk_matches):
    trace, tok = tiny_trace(arch)
    target_id = tok("e", add_special_tokens=False)["input_ids"]
    assert len(target_id) == 1
    res = logit_lens(trace, tok, LensOptions(top_k=3, target="e"))
    ref = reference(trace.adapter, trace.residual, trace.token_ids, 3, target_id=target_id[0])
    check_against_reference(res, trace, tok, ref, 3, topk_matches=topk_matches)
    assert set(res.target_tokens) == {"e"}
    assert res.target_note == ""
    assert res.options == {"top_k": 3, "target": "e", "positions": None, "lens": "logit"}
    # Rank 1 exactly where "e" is the row's top-1.
    np.testing.assert_array_equal(res.target_rank == 1, res.top_ids[..., 0] == target_id[0])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2", "opt"])
def test_positions_window_equals_slice_of_full(arch, tiny_trace, reference, topk_matches):
    trace, tok = tiny_trace(arch)
    T = trace.n_tokens
    full = logit_lens(trace, tok, LensOptions(top_k=4))
    for start, stop in [(3, 9), (0, 1), (T - 1, T), (5, T)]:
        win = logit_lens(trace, tok, LensOptions(top_k=4, positions=(start, stop)))
        sl = slice(start, stop)
        assert win.positions == list(range(start, stop))
        np.testing.assert_array_equal(win.top_ids, full.top_ids[:, sl])
        np.testing.assert_allclose(win.top_probs, full.top_probs[:, sl], atol=1e-6)
        np.testing.assert_allclose(win.entropy, full.entropy[:, sl], atol=1e-5)
        np.testing.assert_allclose(win.kl_to_final, full.kl_to_final[:, sl], atol=1e-5)
        np.testing.assert_array_equal(win.target_ids, full.target_ids[sl])
        np.testing.assert_array_equal(win.target_rank, full.target_rank[:, sl])
        np.testing.assert_allclose(win.target_prob, full.target_prob[:, sl], atol=1e-6)
        np.testing.assert_allclose(win.next_token_loss, full.next_token_loss[:, sl], atol=1e-5)
        assert win.final_prediction == full.final_prediction[sl]
        assert win.top_tokens == [row[sl] for row in full.top_tokens]
        # Tokens are the whole prompt's, whatever the window.
        assert win.tokens == full.tokens
        # A window ending before the prompt's end still knows the next token of its last column.
        assert np.isnan(win.next_token_loss[:, -1]).all() == (stop == T)
        ref = reference(trace.adapter, trace.residual, trace.token_ids, 4)
        check_against_reference(win, trace, tok, ref, 4, cols=sl, topk_matches=topk_matches)


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 12, 20, 10_000])
@pytest.mark.parametrize("window", [None, (2, 11)])
def test_chunking_does_not_change_results(rows_per_chunk, window, tiny_trace, monkeypatch):
    trace, tok = tiny_trace("llama")
    opts = LensOptions(top_k=5, target="e", positions=window)
    base = logit_lens(trace, tok, opts)
    seen = []
    monkeypatch.setattr(ll, "ROWS_PER_CHUNK", rows_per_chunk)
    res = logit_lens(trace, tok, opts, progress=lambda f, msg: seen.append(f))
    np.testing.assert_array_equal(res.top_ids, base.top_ids)
    for name in ("top_probs", "entropy", "kl_to_final", "target_prob", "next_token_loss"):
        np.testing.assert_allclose(getattr(res, name), getattr(base, name), atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(res.target_rank, base.target_rank)
    assert res.top_tokens == base.top_tokens
    with_alternatives = logit_lens(trace, tok, LensOptions(top_k=5, target="e", positions=window, alternatives=3))
    monkeypatch.setattr(ll, "ROWS_PER_CHUNK", 10_000)
    one_chunk = logit_lens(trace, tok, LensOptions(top_k=5, target="e", positions=window, alternatives=3))
    np.testing.assert_array_equal(with_alternatives.alternative_rank, one_chunk.alternative_rank)
    np.testing.assert_allclose(with_alternatives.alternative_prob, one_chunk.alternative_prob, atol=1e-6)
    monkeypatch.setattr(ll, "ROWS_PER_CHUNK", rows_per_chunk)
    # Progress is reported once per chunk, increasing, ending at 1.
    R = trace.n_layers + 1
    P = len(res.positions)
    step = max(1, rows_per_chunk // R)
    assert len(seen) == -(-P // step)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize("window", [None, (2, 9)])
def test_alternatives_are_the_final_top_n_followed_at_every_cell(arch, window, tiny_trace, reference):
    """Each alternative target's rank and probability at every cell against the plain computation with that token
    as the target; the alternatives are the final layer's top-n at the window's last position."""
    trace, tok = tiny_trace(arch)
    res = logit_lens(trace, tok, LensOptions(top_k=3, positions=window, alternatives=4))
    cols = slice(*window) if window else slice(None)
    last = (window[1] if window else trace.n_tokens) - 1
    ref = reference(trace.adapter, trace.residual, trace.token_ids, 4)
    assert res.alternative_ids.shape == (4,) and res.alternative_rank.shape == (4, *res.target_rank.shape)
    # The final layer's top-4 there: their probabilities are the reference's top-4 (ids may swap in a near tie).
    np.testing.assert_allclose(ref["p"][-1, last, res.alternative_ids], ref["top_p"][-1, last], atol=ATOL)
    assert res.alternative_tokens == [as_shown(tok, int(i)) for i in res.alternative_ids]
    for j, token_id in enumerate(res.alternative_ids):
        one = reference(trace.adapter, trace.residual, trace.token_ids, 1, target_id=int(token_id))
        assert np.all(one["rank_lo"][:, cols] <= res.alternative_rank[j])
        assert np.all(res.alternative_rank[j] <= one["rank_hi"][:, cols])
        np.testing.assert_allclose(res.alternative_prob[j], one["target_prob"][:, cols], atol=ATOL, rtol=0)
    # Without alternatives, none; the rest of the result is the same either way.
    plain = logit_lens(trace, tok, LensOptions(top_k=3, positions=window))
    assert plain.alternative_ids.shape == (0,) and plain.alternative_rank.shape[0] == 0
    assert "alternatives" not in plain.options and res.options["alternatives"] == 4
    np.testing.assert_array_equal(plain.top_ids, res.top_ids)
    np.testing.assert_array_equal(plain.target_rank, res.target_rank)


def test_retarget_gives_what_the_lens_gives_with_that_target(tiny_trace, reference):
    from lens.analysis.retarget import retarget

    trace, tok = tiny_trace("llama")
    res = logit_lens(trace, tok, LensOptions(top_k=3, alternatives=6))
    compared = 0
    for j, token in enumerate(res.alternative_tokens):
        moved = retarget(res, token)
        np.testing.assert_array_equal(moved.target_ids, np.full(trace.n_tokens, res.alternative_ids[j]))
        if tok(token, add_special_tokens=False)["input_ids"] != [int(res.alternative_ids[j])]:
            continue  # a byte token ("<0xE2>"): typed, its text is other tokens (its rows are checked above)
        compared += 1
        direct = logit_lens(trace, tok, LensOptions(top_k=3, target=token))  # through the tokenizer
        np.testing.assert_array_equal(moved.target_ids, direct.target_ids)
        assert moved.target_tokens == direct.target_tokens and moved.target_note == ""
        np.testing.assert_array_equal(moved.target_rank, direct.target_rank)
        np.testing.assert_allclose(moved.target_prob, direct.target_prob, atol=1e-6)
        np.testing.assert_array_equal(moved.top_ids, res.top_ids)
        assert moved.options["target"] == token
    assert compared >= 2
    assert retarget(res, "not one of them") is None
    assert retarget(logit_lens(trace, tok, LensOptions(top_k=3)), res.alternative_tokens[0]) is None


def test_alternatives_out_of_range_are_refused():
    for n in (-1, 21, 2.5):
        with pytest.raises(LensError, match="alternative targets"):
            LensOptions(alternatives=n).check()


def test_single_token_prompt(tiny, reference, topk_matches):
    model, tok, adapter = tiny("llama")
    trace = capture(HookEngine(model, adapter), tok("x")["input_ids"], CaptureSpec())
    res = logit_lens(trace, tok, LensOptions(top_k=2))
    ref = reference(adapter, trace.residual, trace.token_ids, 2)
    check_against_reference(res, trace, tok, ref, 2, topk_matches=topk_matches)
    assert np.isnan(res.next_token_loss).all()


def test_multi_token_target_sets_note(tiny_trace, reference):
    trace, tok = tiny_trace("llama")
    res = logit_lens(trace, tok, LensOptions(top_k=3, target="hello"))
    first = tok("hello", add_special_tokens=False)["input_ids"][0]
    assert res.target_note and "hello" in res.target_note and "5 tokens" in res.target_note
    np.testing.assert_array_equal(res.target_ids, np.full(trace.n_tokens, first))
    ref = reference(trace.adapter, trace.residual, trace.token_ids, 3, target_id=first)
    np.testing.assert_allclose(res.target_prob, ref["target_prob"], atol=ATOL)
    assert resolve_target(tok, None) == (None, "")
    assert resolve_target(tok, "") == (None, "")
    assert resolve_target(tok, "e") == (tok("e", add_special_tokens=False)["input_ids"][0], "")


@pytest.mark.parametrize("opts", [
    LensOptions(top_k=0), LensOptions(top_k=-1), LensOptions(top_k=101),
    LensOptions(positions=(5, 3)), LensOptions(positions=(4, 4)), LensOptions(positions=(-1, 2)),
    LensOptions(positions=(0, 10_000)),
], ids=repr)
def test_bad_options_raise_lens_error(opts, tiny_trace):
    trace, tok = tiny_trace("llama")
    with pytest.raises(LensError):
        logit_lens(trace, tok, opts)


def test_positions_just_past_the_end_raise(tiny_trace):
    trace, tok = tiny_trace("llama")
    T = trace.n_tokens
    with pytest.raises(LensError, match=str(T)):
        logit_lens(trace, tok, LensOptions(positions=(0, T + 1)))
    logit_lens(trace, tok, LensOptions(positions=(0, T)))  # the whole prompt is fine


def test_trace_without_residual_raises(tiny):
    model, tok, adapter = tiny("llama")
    trace = capture(HookEngine(model, adapter), tok("abc")["input_ids"], CaptureSpec(residual=False))
    with pytest.raises(LensError):
        logit_lens(trace, tok)


def test_gemma2_softcap_is_in_the_lens(tiny, tiny_trace):
    model, tok, adapter = tiny("gemma2")
    assert adapter.softcap == pytest.approx(30.0)
    trace, _ = tiny_trace("gemma2")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([trace.token_ids]), use_cache=False).logits[0].double()
        uncapped = (adapter.normed(trace.residual[-1]) @ adapter.unembed.weight.T).double()
    # The cap matters for these logits: without it the lens would be visibly off.
    assert (uncapped - out).abs().max() > 1e-2
    logp = torch.log_softmax(out, -1)
    p = logp.exp()
    ent_model = -(p * logp).sum(-1).numpy()
    lp_un = torch.log_softmax(uncapped, -1)
    ent_uncapped = -(lp_un.exp() * lp_un).sum(-1).numpy()
    assert np.abs(ent_model - ent_uncapped).max() > 1e-3

    res = logit_lens(trace, tok, LensOptions(top_k=5))
    top_p, top_i = p.topk(5, -1)
    np.testing.assert_array_equal(res.top_ids[-1], top_i.numpy())
    np.testing.assert_allclose(res.top_probs[-1], top_p.numpy(), atol=1e-5)
    np.testing.assert_allclose(res.entropy[-1], ent_model, atol=1e-4)
    # The final-row next-token loss equals the model's own cross-entropy.
    ids = torch.tensor(trace.token_ids)
    nll = -logp[torch.arange(len(ids) - 1), ids[1:]].numpy()
    np.testing.assert_allclose(res.next_token_loss[-1, :-1], nll, atol=1e-4)
