"""Adapters and capture: every tiny architecture against the model's own outputs."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from lens.model.adapters import SPECS, adapt, supported_types
from lens.errors import LensError, UnsupportedArchitecture
from lens.model.tiny import TINY_ARCHS, tiny_model
from lens.engine.hooks import HookEngine
from lens.engine.trace import CaptureSpec, capture

PROMPT = "The quick brown fox, 42 times!"
ATOL = 1e-4


@pytest.fixture(scope="module")
def captured(tiny):
    """arch -> (model outputs with hidden states and attentions, full trace, ids)."""
    done = {}

    def get(arch):
        if arch not in done:
            model, tok, adapter = tiny(arch)
            ids = tok(PROMPT)["input_ids"]
            with torch.no_grad():
                out = model(input_ids=torch.tensor([ids]), output_hidden_states=True,
                            output_attentions=True, use_cache=False)
            trace = capture(HookEngine(model, adapter), ids, CaptureSpec(sublayers=True, attentions=True))
            done[arch] = (out, trace, ids)
        return done[arch]

    return get


def test_every_tiny_arch_has_a_spec():
    assert set(TINY_ARCHS) <= set(SPECS)
    assert supported_types() == sorted(SPECS)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_adapt_finds_all_modules(arch, tiny):
    model, _, adapter = tiny(arch)
    cfg = model.config
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer")
    assert adapter.model_type == arch
    assert adapter.n_layers == n == 3
    assert adapter.has_lm_head
    assert adapter.unembed is model.get_output_embeddings()
    for lst in (adapter.attn, adapter.mlp, adapter.attn_write, adapter.mlp_write, adapter.attn_norm):
        assert len(lst) == n
    for i, block in enumerate(adapter.blocks):
        mods = set(block.modules())
        assert adapter.attn[i] in mods and adapter.mlp[i] in mods
        assert adapter.attn_write[i] in mods and adapter.mlp_write[i] in mods
    if arch == "gemma2":
        assert adapter.softcap == pytest.approx(30.0)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_residual_shape_and_embedding_row(arch, tiny, captured):
    model, _, adapter = tiny(arch)
    out, trace, ids = captured(arch)
    L, T = adapter.n_layers, len(ids)
    d = out.hidden_states[0].shape[-1]
    assert trace.residual.shape == (L + 1, T, d)
    assert trace.n_layers == L and trace.n_tokens == T
    assert trace.layer_labels == ["emb"] + [str(i) for i in range(1, L + 1)]
    torch.testing.assert_close(trace.residual[0], out.hidden_states[0][0].float(), atol=ATOL, rtol=0)
    # Between the blocks the residual is HF's hidden state (the last one HF reports after the final norm).
    for l in range(1, L):
        torch.testing.assert_close(trace.residual[l], out.hidden_states[l][0].float(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_readout_of_last_row_is_the_models_logits(arch, tiny, captured):
    _, _, adapter = tiny(arch)
    out, trace, _ = captured(arch)
    logits = adapter.readout(trace.residual[-1])
    torch.testing.assert_close(logits, out.logits[0].float(), atol=ATOL, rtol=0)
    assert torch.equal(trace.output_top1, out.logits[0].argmax(-1))


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_sublayer_writes_add_up_to_the_next_residual(arch, tiny, captured):
    _, _, adapter = tiny(arch)
    _, trace, ids = captured(arch)
    L, T, d = adapter.n_layers, len(ids), trace.residual.shape[-1]
    assert trace.attn_out.shape == (L, T, d) and trace.mlp_out.shape == (L, T, d)
    for l in range(L):
        torch.testing.assert_close(trace.residual[l] + trace.attn_out[l] + trace.mlp_out[l],
                                   trace.residual[l + 1], atol=ATOL, rtol=0)
        # The writes are not trivially zero: each sub-block changes the stream.
        assert trace.attn_out[l].abs().max() > 1e-3 and trace.mlp_out[l].abs().max() > 1e-3


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_captured_attention_is_the_models_attention(arch, tiny, captured):
    model, _, adapter = tiny(arch)
    out, trace, ids = captured(arch)
    T = len(ids)
    H = model.config.num_attention_heads if hasattr(model.config, "num_attention_heads") else model.config.n_head
    assert sorted(trace.attentions) == list(range(adapter.n_layers))
    for l, pattern in trace.attentions.items():
        assert pattern.shape == (H, T, T)
        torch.testing.assert_close(pattern, out.attentions[l][0].float(), atol=1e-5, rtol=0)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(H, T), atol=1e-5, rtol=0)
        assert (pattern >= 0).all()
        # Causal: nothing attends to the future.
        assert pattern.triu(diagonal=1).abs().max() < 1e-6


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_capture_only_what_is_asked(arch, tiny):
    model, tok, adapter = tiny(arch)
    ids = tok(PROMPT)["input_ids"]

    def hooks():
        return {id(m): (len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()}

    before = hooks()
    only1 = capture(HookEngine(model, adapter), ids, CaptureSpec(attentions=(1,)))
    assert list(only1.attentions) == [1]
    assert only1.attn_out is None and only1.mlp_out is None
    assert only1.residual is not None
    full = capture(HookEngine(model, adapter), ids, CaptureSpec(attentions=True))
    torch.testing.assert_close(only1.attentions[1], full.attentions[1], atol=0, rtol=0)
    none = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=False))
    assert none.residual is None and none.attentions == {} and none.attn_out is None
    # Hooks are removed afterwards: no module keeps a hook from a capture.
    assert hooks() == before


def test_capture_spec_attention_layers():
    assert CaptureSpec().attention_layers(3) == ()
    assert CaptureSpec(attentions=True).attention_layers(3) == (0, 1, 2)
    assert CaptureSpec(attentions=(2, 0, 2)).attention_layers(3) == (0, 2)


def test_unknown_model_type_is_rejected():
    model, _ = tiny_model("llama")
    model.config.model_type = "mystery"
    with pytest.raises(UnsupportedArchitecture, match="mystery"):
        adapt(model)


def test_plain_module_with_config_is_rejected():
    module = nn.Linear(4, 4)
    module.config = types.SimpleNamespace(model_type="mystery")
    with pytest.raises(UnsupportedArchitecture) as info:
        adapt(module)
    assert "mystery" in str(info.value)
    assert isinstance(info.value, LensError)  # the CLI and pages show it as a message
    with pytest.raises(UnsupportedArchitecture):
        adapt(nn.Linear(4, 4))  # no config at all


@pytest.mark.parametrize("how", ["del", "none"])
def test_missing_final_norm_is_named(how):
    model, _ = tiny_model("llama")
    if how == "del":
        del model.model.norm
    else:
        model.model.norm = None
    with pytest.raises(UnsupportedArchitecture, match=r"model\.norm"):
        adapt(model)


def test_missing_block_child_is_named():
    model, _ = tiny_model("llama")
    del model.model.layers[1].mlp
    with pytest.raises(UnsupportedArchitecture) as info:
        adapt(model)
    assert "block 1" in str(info.value) and "mlp" in str(info.value)


def test_missing_layers_is_named():
    model, _ = tiny_model("gpt2")
    del model.transformer.h
    with pytest.raises(UnsupportedArchitecture, match=r"transformer\.h"):
        adapt(model)


def test_missing_unembedding_is_named():
    model, _ = tiny_model("llama")
    del model.lm_head
    with pytest.raises(UnsupportedArchitecture, match="lm_head"):
        adapt(model)


def test_hooks_are_removed_when_the_forward_fails():
    model, tok = tiny_model("llama")
    adapter = adapt(model)

    def hooks():
        return {id(m): (len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()}

    before = hooks()
    with pytest.raises(Exception):
        capture(HookEngine(model, adapter), [10_000], CaptureSpec(sublayers=True, attentions=True))  # id out of range
    assert hooks() == before
    # The model still works and a later capture is unaffected.
    ids = tok("ok")["input_ids"]
    trace = capture(HookEngine(model, adapter), ids, CaptureSpec())
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    torch.testing.assert_close(adapter.readout(trace.residual[-1]), logits, atol=ATOL, rtol=0)


def test_post_ln_opt_without_final_norm_reads_out_like_the_model():
    """OPT-350m style: no final norm, a down-projection before the unembedding."""
    import transformers as tf

    cfg = tf.OPTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, ffn_dim=64, vocab_size=258,
                       max_position_embeddings=64, word_embed_proj_dim=16, do_layer_norm_before=False)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    adapter = adapt(model)
    assert adapter.final_norm is None and adapter.project_out is not None
    ids = [5, 6, 7, 8, 9]
    trace = capture(HookEngine(model, adapter), ids, CaptureSpec())
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(adapter.readout(trace.residual[-1]), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "phi3", "opt"])
def test_capture_keeps_values_and_neurons_as_the_model_computes_them(arch, tiny):
    """Values: the value projection of the pre-attention norm of the stream; neurons: the MLP's down
    projection input, which the down projection turns back into the MLP's write (plus its bias)."""
    model, tok, adapter = tiny(arch)
    ids = tok("values and neurons")["input_ids"]
    tr = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=True, sublayers=True, values=(1,), neurons=(0, 2)))
    assert set(tr.values) == {1} and set(tr.neurons) == {0, 2}
    T, H, KV, hd = len(ids), adapter.n_heads, adapter.n_kv_heads, adapter.head_dim
    assert tr.values[1].shape == (T, KV, hd)
    with torch.no_grad():
        out = adapter.value_proj[1](adapter.attn_norm[1](tr.residual[1]).unsqueeze(0))[0]
    v = out[:, -KV * hd:] if adapter.spec.value_fused else out
    torch.testing.assert_close(tr.values[1], v.reshape(T, KV, hd))
    for l in (0, 2):
        W, b = adapter.down_projection(l), adapter.down_proj[l].bias
        torch.testing.assert_close(tr.neurons[l] @ W + (0 if b is None else b), tr.mlp_out[l], atol=1e-4, rtol=1e-4)


def test_a_model_without_attention_weights_raises_a_lens_error():
    from lens.errors import AttentionWeightsUnavailable

    model, tok = tiny_model("llama")
    adapter = adapt(model)
    # An attention module that returns no weights (as a fused kernel does).
    handle = adapter.attn[1].register_forward_hook(lambda module, args, out: (out[0], None))
    try:
        with pytest.raises(AttentionWeightsUnavailable, match="eager attention"):
            capture(HookEngine(model, adapter), tok("hi")["input_ids"], CaptureSpec(attentions=True))
    finally:
        handle.remove()
    assert issubclass(AttentionWeightsUnavailable, LensError)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_traces_without_attention_weights_use_sdpa_and_agree_with_eager(arch, tiny):
    """A pass that keeps no attention weights runs fused SDPA attention; its residual stream equals the
    eager pass's to float tolerance, and the model is left as it was (eager)."""
    model, tok, adapter = tiny(arch)
    ids = tok(TINY_PROMPT_FOR_SDPA)["input_ids"]
    seen = []
    handle = adapter.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(model.config._attn_implementation))
    try:
        fast = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=True, sublayers=True))
        slow = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=True, sublayers=True, attentions=(0,)))
    finally:
        handle.remove()
    # (Gemma 2 has no SDPA path in transformers: it stays eager.)
    assert seen == ["sdpa" if getattr(model, "_supports_sdpa", False) else "eager", "eager"]
    assert model.config._attn_implementation == "eager"
    scale = float(slow.residual.abs().max())
    torch.testing.assert_close(fast.residual, slow.residual, atol=1e-5 * scale, rtol=1e-4)
    torch.testing.assert_close(fast.attn_out, slow.attn_out, atol=1e-5 * scale, rtol=1e-4)
    assert torch.equal(fast.output_top1, slow.output_top1)


TINY_PROMPT_FOR_SDPA = "the same stream, two kinds of attention"


def test_values_need_an_architecture_that_names_them(tiny):
    model, tok, adapter = tiny("gpt_neox")
    assert not adapter.value_proj and not adapter.supports_routes
    with pytest.raises(LensError, match="in parallel"):
        capture(HookEngine(model, adapter), tok("hi")["input_ids"], CaptureSpec(values=True))


def test_head_shapes_come_from_the_config(tiny):
    for arch in ("gpt2", "llama", "gemma", "opt"):
        _, _, a = tiny(arch)
        assert (a.n_heads, a.d_model, a.head_dim) == (4, 32, 8)
        assert a.n_kv_heads == (2 if a.spec.grouped_kv else 4)
        assert a.kv_group == a.n_heads // a.n_kv_heads
