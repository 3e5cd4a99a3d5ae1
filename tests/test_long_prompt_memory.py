"""Head-averaged attention computed a block of query rows at a time (``Read(map=head_mean)``; lens/engine/hooks.py
``rows_attention``) gives the eager pass's numbers on every architecture, the bundled model included, and the
rollout built on it is the published recursion; no second [layers, T, T] stack is made.

Blocks are made small here (``ROW_BLOCK_BYTES``), so that short prompts are cut into many blocks and the keys a
block is masked from are left out, as they are for long prompts.
"""
import numpy as np
import pytest
import torch
import transformers as tf

from lens.analysis.rollout import layer_means, mean_attention_stack, rollout
from lens.errors import LensError
from lens.engine import hooks
from lens.engine.base import Read, head_mean, head_mean_lower
from lens.engine.hooks import HookEngine
from lens.engine.trace import CaptureSpec, capture
from lens.model.adapters import adapt
from lens.model.registry import TINY_ARCHS
from lens.model.tiny import tiny_config, tiny_tokenizer

PROMPT = "a block of rows at a time, the same numbers"


@pytest.fixture
def small_blocks(monkeypatch):
    """``set_rows(rows, heads, tokens)`` makes blocks of ``rows`` query rows; ``calls`` gets (module, query rows,
    keys) for every call of the model's eager function by the block-wise path."""
    calls = []
    own = hooks._own_eager

    def counting(module):
        eager = own(module)

        def spy(mod, query, key, *args, **kwargs):
            calls.append((mod, query.shape[2], key.shape[2]))
            return eager(mod, query, key, *args, **kwargs)
        return spy if eager is not None else None

    monkeypatch.setattr(hooks, "_own_eager", counting)

    def set_rows(rows: int, heads: int, tokens: int):
        monkeypatch.setattr(hooks, "ROW_BLOCK_BYTES", 4 * heads * tokens * rows)
    return calls, set_rows


def _reference(engine: HookEngine, ids, L: int):
    """The plain way: every head's pattern under eager attention, averaged afterwards; and the pass's logits."""
    out = engine.run(ids, read={f"attn_pattern.{l}": None for l in range(1, L + 1)}, logits="all")
    return [out.reads[f"attn_pattern.{l}"][0].double().mean(0) for l in range(1, L + 1)], out.logits


def _check(model, tok, small_blocks, ids=None, atol=1e-6):
    calls, set_rows = small_blocks
    adapter = adapt(model)
    engine = HookEngine(model, adapter)
    ids = ids if ids is not None else tok(PROMPT)["input_ids"]
    L, T = adapter.n_layers, len(ids)
    ref, ref_logits = _reference(engine, ids, L)
    assert not calls  # the plain pass is eager, whole
    set_rows(3, adapter.n_heads, T)
    before = model.config._attn_implementation
    out = engine.run(ids, read={f"attn_pattern.{l}": Read(map=head_mean) for l in range(1, L + 1)}, logits="all")
    assert model.config._attn_implementation == before  # restored
    assert {c[0] for c in calls} == set(adapter.attn) and all(c[1] <= 3 for c in calls)  # each attention, in blocks
    assert len(calls) == L * -(-T // 3)
    if adapter.is_causal:  # the keys past a block's last row were left out
        assert [c[2] for c in calls[:-(-T // 3)]] == [min(T, r + 3) for r in range(0, T, 3)]
    for l in range(L):
        got = out.reads[f"attn_pattern.{l + 1}"][0]
        assert got.shape == (T, T)
        np.testing.assert_allclose(got.double().numpy(), ref[l].numpy(), atol=atol)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-4, rtol=1e-4)
    if adapter.is_causal:  # as lower triangles: each row's keys up to its own position, row after row
        calls.clear()
        out = engine.run(ids, read={f"attn_pattern.{l}": Read(map=head_mean_lower) for l in range(1, L + 1)},
                         logits="all")
        assert len(calls) == L * -(-T // 3)  # by row blocks too
        below = np.tril(np.ones((T, T), dtype=bool))
        for l in range(L):
            got = out.reads[f"attn_pattern.{l + 1}"][0]
            assert got.shape == (T * (T + 1) // 2,)
            np.testing.assert_allclose(got.double().numpy(), ref[l].numpy()[below], atol=atol)
        torch.testing.assert_close(out.logits, ref_logits, atol=1e-4, rtol=1e-4)
    return ref


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_head_mean_by_row_blocks_is_the_eager_mean(arch, tiny, small_blocks):
    model, tok, _ = tiny(arch)
    ref = _check(model, tok, small_blocks)
    assert np.allclose(np.triu(ref[0].numpy(), 1), 0)  # causal: the left-out keys had weight 0


@pytest.mark.parametrize("arch", ["mistral", "gemma2", "gemma3_text"])
def test_sliding_window_models(arch, small_blocks):
    cfg = tiny_config(arch)
    cfg.sliding_window = 4
    if getattr(cfg, "layer_types", None):  # every layer local, so that each one's window shows
        cfg.layer_types = ["sliding_attention"] * cfg.num_hidden_layers
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    ref = _check(model, tiny_tokenizer(), small_blocks)
    T = ref[0].shape[0]
    far = np.tril(np.ones((T, T)), -4).astype(bool)  # keys 4 or more positions back: outside the window
    assert all(np.allclose(r.numpy()[far], 0) for r in ref)
    assert all(r.numpy()[~far & np.tri(T, dtype=bool)].min() > 0 for r in ref)


def test_encoder(small_blocks):
    from lens.model.loading import load_model

    enc = load_model("minilm-l6")
    ids = enc.tokenizer("attention goes both ways in an encoder")["input_ids"]
    calls, set_rows = small_blocks
    engine = HookEngine(enc.model, enc.adapter)
    L, T = enc.adapter.n_layers, len(ids)
    ref, _ = _reference(engine, ids, L)
    set_rows(3, enc.adapter.n_heads, T)
    out = engine.run(ids, read={f"attn_pattern.{l}": Read(map=head_mean) for l in range(1, L + 1)}, logits="none")
    assert len(calls) == L * -(-T // 3) and all(c[2] == T for c in calls)  # no key left out
    for l in range(L):
        np.testing.assert_allclose(out.reads[f"attn_pattern.{l + 1}"][0].double().numpy(), ref[l].numpy(), atol=1e-6)
    assert ref[0].numpy()[0, -1] > 0  # bidirectional: no key was left out


def test_capture_keeps_one_stack_and_rollout_uses_it(tiny, small_blocks):
    model, tok, adapter = tiny("qwen2")
    ids = tok(PROMPT)["input_ids"]
    T, L = len(ids), adapter.n_layers
    small_blocks[1](2, adapter.n_heads, T)
    tr = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
    hm = layer_means(tr)
    # What the pass wrote is what rollout reads (no copy), a causal model's as lower triangles: half the floats.
    assert hm is tr.head_means and hm.lower and hm.data.shape == (L, T * (T + 1) // 2)
    whole = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=False, attentions=True))
    A = mean_attention_stack(whole.attentions, L)  # whole patterns, averaged afterwards
    torch.testing.assert_close(hm.full(), A)
    r, ref = rollout(hm, tr.tokens), rollout(A, tr.tokens)
    np.testing.assert_allclose(r.rollout, ref.rollout, atol=1e-6)
    np.testing.assert_allclose(r.attention, ref.attention, atol=1e-7)


def test_a_pattern_that_looks_ahead_is_not_kept_as_a_triangle(small_blocks, monkeypatch):
    """An encoder's weights above the diagonal are not silently dropped when lower triangles are asked for."""
    from lens.model.loading import load_model

    enc = load_model("minilm-l6")
    ids = enc.tokenizer("attention goes both ways")["input_ids"]
    engine = HookEngine(enc.model, enc.adapter)
    small_blocks[1](3, enc.adapter.n_heads, len(ids))
    with pytest.raises(LensError, match="above the diagonal"):
        engine.run(ids, read={"attn_pattern.1": Read(map=head_mean_lower)}, logits="none")
    with monkeypatch.context() as m, pytest.raises(LensError, match="above the diagonal"):
        m.setattr(hooks, "_rows_ready", lambda *a: False)  # whole patterns, averaged as they are read
        engine.run(ids, read={"attn_pattern.1": Read(map=head_mean_lower)}, logits="none")
    # The capture keeps an encoder's maps whole.
    tr = capture(engine, ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
    assert not tr.head_means.lower and tr.head_means.shape == (enc.adapter.n_layers, len(ids), len(ids))


def test_bundled_moderate_length(bundled, small_blocks):
    """SmolLM2 (GQA, rotary) at 300 tokens, in blocks of 64 rows: the head means and the rollout equal those of
    the model's own eager pass (``output_attentions``), and the rollout is the published recursion."""
    from bench.prompts import prompt_ids
    from tests.test_rollout import recursion

    ids = prompt_ids(bundled.tokenizer, 300)
    model, adapter = bundled.model, bundled.adapter
    calls, set_rows = small_blocks
    set_rows(64, adapter.n_heads, len(ids))
    tr = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
    assert len(calls) == adapter.n_layers * 5  # 300 rows: 4 blocks of 64, one of 44
    A = layer_means(tr).full()
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation(before)
    ref = np.stack([a[0].double().mean(0).numpy() for a in out.attentions])
    np.testing.assert_allclose(A.double().numpy(), ref, atol=2e-6)
    r = rollout(A, [str(i) for i in ids])
    np.testing.assert_allclose(r.rollout, recursion(ref)[:, -1, :], atol=1e-5)
    np.testing.assert_allclose(r.attention, ref[:, -1, :], atol=2e-6)


def test_lower_triangles_of_a_batch(tiny, small_blocks):
    """Two prompts in one run: each one's lower triangles are its own eager head means."""
    model, tok, adapter = tiny("llama")
    a, b = tok("one prompt of some length")["input_ids"], tok("another prompt, as long")["input_ids"]
    T = min(len(a), len(b))
    ids = [a[:T], b[:T]]
    engine = HookEngine(model, adapter)
    whole = engine.run(ids, read={"attn_pattern.2": None}, logits="none").reads["attn_pattern.2"]  # [2, H, T, T]
    small_blocks[1](2, adapter.n_heads, T)
    got = engine.run(ids, read={"attn_pattern.2": Read(map=head_mean_lower)}, logits="none").reads["attn_pattern.2"]
    below = np.tril(np.ones((T, T), dtype=bool))
    assert got.shape == (2, T * (T + 1) // 2)
    for k in range(2):
        np.testing.assert_allclose(got[k].double().numpy(), whole[k].double().mean(0).numpy()[below], atol=1e-6)
