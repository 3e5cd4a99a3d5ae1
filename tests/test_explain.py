"""Show the work (lens/explain/): every number against an independent computation written here — the HF model's
own modules under torch hooks placed in this file, and its own attention weights — for each architecture family
(GPT-2: learned positions, LayerNorm, plain MLP; Llama/Qwen2/Qwen3/Mistral: rotary, RMSNorm, gated MLP), plus the
bundled SmolLM2 (grouped-query attention: 9 heads, 3 KV heads); and equal to the views they explain."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.explain.options import AttentionWeightOptions, CellOptions, NeuronAtOptions
from lens.model.loading import load_model
from lens.options import HeadOptions, LensOptions

PROMPT = "hello there, the end"
ARCHS = ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-gemma"]


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            lm = load_model(name)
            cache[name] = (lm, local_backend(lm, None))
        return cache[name]
    return get


def parts(model):
    """(blocks, final norm, attention modules, MLP modules) of an HF model, found here by name."""
    if model.config.model_type == "gpt2":
        t = model.transformer
        return list(t.h), t.ln_f, [b.attn for b in t.h], [b.mlp for b in t.h]
    m = model.model
    return list(m.layers), m.norm, [b.self_attn for b in m.layers], [b.mlp for b in m.layers]


def hooked(model, ids, modules, pre=False):
    """Each module's output (or first input) on one pass of ``ids``, by a hook placed here."""
    got = {}
    handles = []
    for name, mod in modules.items():
        if pre:
            handles.append(mod.register_forward_pre_hook(lambda m, a, name=name: got.__setitem__(name, a[0].detach())))
        else:
            handles.append(mod.register_forward_hook(
                lambda m, a, o, name=name: got.__setitem__(name, (o[0] if isinstance(o, tuple) else o).detach())))
    try:
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return got, out


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("row,pos", [(0, 3), (2, -1), (3, -1), (3, 5)])
def test_lens_cell(models, name, row, pos):
    lm, b = models(name)
    model = lm.model
    ids = lm.tokenizer(PROMPT)["input_ids"]
    blocks, norm, _, _ = parts(model)
    got, out = hooked(model, ids, {i: blk for i, blk in enumerate(blocks)})
    emb, _ = hooked(model, ids, {"emb": blocks[0]}, pre=True)  # the embeddings (positions, Gemma's √d included)
    p = pos % len(ids)
    h = (emb["emb"] if row == 0 else got[row - 1])[0, p].double()
    hf = got[len(blocks) - 1][0, p].double()
    r = b.explain_cell(PROMPT, CellOptions(layer=row, position=pos))
    assert r.position == p and r.site == ("resid_pre.1" if row == 0 else f"resid_post.{row}")
    assert r.norm == pytest.approx(float(h.norm()), rel=1e-5)
    order = torch.argsort(-h.abs())[:8]
    assert r.dims == order.tolist() and r.values == pytest.approx(h[order].tolist(), abs=1e-5)
    # the norm, from the definitions, and through the model's own module
    if isinstance(norm, torch.nn.LayerNorm):
        assert r.norm_kind == "layernorm" and r.mean == pytest.approx(float(h.mean()), abs=1e-6)
        assert r.rms == pytest.approx(float(torch.sqrt(h.var(unbiased=False) + norm.eps)), rel=1e-6)
    else:
        assert r.norm_kind == "rms" and r.mean == 0
        eps = getattr(norm, "variance_epsilon", None) or norm.eps
        assert r.rms == pytest.approx(float(torch.sqrt((h * h).mean() + eps)), rel=1e-6)
    with torch.no_grad():
        x = norm(h.float()[None])[0].double()
        z = model.lm_head(norm(torch.stack([h, hf]).float())).double()
    assert r.normed == pytest.approx(x[r.dims].tolist(), abs=1e-4)
    logp, logpf = torch.log_softmax(z[0], -1), torch.log_softmax(z[1], -1)
    assert [t["id"] for t in r.top] == torch.argsort(-z[0])[:8].tolist()
    for t in r.top:
        assert t["logit"] == pytest.approx(float(z[0, t["id"]]), abs=1e-4)
        assert t["prob"] == pytest.approx(float(logp[t["id"]].exp()), abs=1e-6)
    assert r.logsumexp == pytest.approx(float(torch.logsumexp(z[0], -1)), abs=1e-4)
    assert r.entropy == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-5)
    assert r.kl_to_final == pytest.approx(float((logpf.exp() * (logpf - logp)).sum().clamp_min(0)), abs=1e-5)
    # equal to the heatmap's cell
    lens = b.logit_lens(PROMPT, LensOptions(top_k=5))
    assert r.prob == pytest.approx(float(lens.top_probs[row, p, 0]), abs=1e-5)
    assert r.entropy == pytest.approx(float(lens.entropy[row, p]), abs=1e-4)
    assert r.kl_to_final == pytest.approx(float(lens.kl_to_final[row, p]), abs=1e-4)
    if row == len(blocks):  # the last row is the model's own output
        assert r.is_final and [t["logit"] for t in r.model_top] == pytest.approx(
            out.logits[0, p, [t["id"] for t in r.top]].tolist(), abs=1e-4)


def qk_reference(model, got, layer, head, T):
    """Every position's query and key of ``head`` after rotary, from the projections' outputs hooked here and
    transformers' own rotary functions."""
    cfg = model.config
    H = cfg.num_attention_heads
    hd = cfg.hidden_size // H if model.config.model_type == "gpt2" else getattr(cfg, "head_dim", cfg.hidden_size // H)
    if model.config.model_type == "gpt2":
        qkv = got["c_attn"][0]
        d = cfg.hidden_size
        return qkv[:, :d].reshape(T, H, hd)[:, head], qkv[:, d:2 * d].reshape(T, H, hd)[:, head], hd ** -0.5
    import importlib

    mod = importlib.import_module(type(model).__module__)
    attn = parts(model)[2][layer - 1]
    KV = cfg.num_key_value_heads
    q = got["q_proj"][0].reshape(T, H, hd)
    k = got["k_proj"][0].reshape(T, KV, hd)
    if hasattr(attn, "q_norm"):
        with torch.no_grad():
            q, k = attn.q_norm(q), attn.k_norm(k)
    cos, sin = model.model.rotary_emb(q, torch.arange(T)[None])
    q, k = mod.apply_rotary_pos_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos, sin)
    return q[0, head], k[0, head // (H // KV)], attn.scaling


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("layer,head,query,key", [(1, 0, -1, 0), (2, 3, -1, 4), (3, 1, 7, 7), (2, 2, 3, 9)])
def test_one_attention_weight(models, name, layer, head, query, key):
    lm, b = models(name)
    model = lm.model
    ids = lm.tokenizer(PROMPT)["input_ids"]
    T = len(ids)
    attn = parts(model)[2][layer - 1]
    mods = {"c_attn": attn.c_attn, } if model.config.model_type == "gpt2" else {"q_proj": attn.q_proj,
                                                                                  "k_proj": attn.k_proj}
    got, out = hooked(model, ids, mods)
    out_in, _ = hooked(model, ids, {"o": attn.c_proj if model.config.model_type == "gpt2" else attn.o_proj},
                       pre=True)
    r = b.explain_attention(PROMPT, AttentionWeightOptions(layer=layer, head=head, query=query, key_position=key))
    qp = query % T
    q, k, scale = qk_reference(model, got, layer, head, T)
    assert r.positions == ("learned" if model.config.model_type == "gpt2" else "rotary")
    assert r.q == pytest.approx(q[qp, r.dims].tolist(), abs=1e-4)
    assert r.k == pytest.approx(k[key, r.dims].tolist(), abs=1e-4)
    assert r.dot == pytest.approx(float(q[qp] @ k[key]), abs=1e-4) and r.scale == pytest.approx(scale)
    assert r.masked == (key > qp)
    # the weight: the model's own attention, as the heads view shows it
    w = out.attentions[layer - 1][0, head, qp]
    assert r.weight == pytest.approx(float(w[key]), abs=1e-6) and r.shown_weight == pytest.approx(float(w[key]))
    assert r.row_weights == pytest.approx(w.tolist(), abs=1e-6) and sum(r.row_weights) == pytest.approx(1.0)
    hv = b.head_patterns(PROMPT, HeadOptions(layer))
    assert r.weight == pytest.approx(float(hv.attention[head, qp, key]), abs=1e-6)
    # the head's output: the input of the output projection, this head's slice
    hd = r.head_dim
    o = out_in["o"][0, qp, head * hd:(head + 1) * hd]
    assert r.output == pytest.approx(o[r.output_dims].tolist(), abs=1e-4)
    assert r.output_norm == pytest.approx(float(o.norm()), rel=1e-4)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("layer,neuron,pos", [(1, 0, -1), (2, 17, 4), (3, 63, -3)])
def test_one_neuron(models, name, layer, neuron, pos):
    lm, b = models(name)
    model = lm.model
    ids = lm.tokenizer(PROMPT)["input_ids"]
    p = pos % len(ids)
    mlp = parts(model)[3][layer - 1]
    gpt2 = model.config.model_type == "gpt2"
    got, _ = hooked(model, ids, {"gate": mlp.c_fc} if gpt2 else {"gate": mlp.gate_proj, "up": mlp.up_proj})
    act_in, _ = hooked(model, ids, {"act": mlp.c_proj if gpt2 else mlp.down_proj}, pre=True)
    outs, _ = hooked(model, ids, {"mlp": mlp})
    r = b.explain_neuron(PROMPT, NeuronAtOptions(layer=layer, neuron=neuron, position=pos))
    assert r.gated == (not gpt2) and r.position == p
    assert r.gate == pytest.approx(float(got["gate"][0, p, neuron]), abs=1e-4)
    if not gpt2:
        assert r.up == pytest.approx(float(got["up"][0, p, neuron]), abs=1e-4)
    act = float(act_in["act"][0, p, neuron])
    # the engine's pass and these hooks may take different matmul kernels: equal to float32's rounding; the value
    # shown is the one computed
    assert r.act == pytest.approx(act, abs=1e-4) and r.shown_act == pytest.approx(r.act, abs=1e-6)
    W = mlp.c_proj.weight[neuron] if gpt2 else mlp.down_proj.weight[:, neuron]  # Conv1D [N, d]; Linear [d, N]
    write = (act * W.double()).detach()
    assert r.write == pytest.approx(write[r.write_dims].tolist(), abs=1e-4)
    assert r.write_norm == pytest.approx(float(write.norm()), rel=1e-4)
    m = outs["mlp"][0, p].double()
    assert r.mlp_out_norm == pytest.approx(float(m.norm()), rel=1e-5)
    assert r.share == pytest.approx(float(write @ m / (m @ m)), rel=1e-3, abs=1e-6)


def test_bundled_cell_attention_and_neuron(bundled):
    b = local_backend(bundled, None)
    text = "The capital of France is"
    lens = b.logit_lens(text, LensOptions(top_k=5))
    for row in (0, 15, 30):
        r = b.explain_cell(text, CellOptions(layer=row, position=-1))
        assert r.prob == pytest.approx(float(lens.top_probs[row, -1, 0]), abs=1e-5)
        assert r.top[0]["id"] == int(lens.top_ids[row, -1, 0]) and r.top[0]["token"] == lens.top_tokens[row][-1][0]
        assert r.kl_to_final == pytest.approx(float(lens.kl_to_final[row, -1]), abs=1e-3)
    last = b.explain_cell(text, CellOptions(layer=30, position=-1))
    assert last.is_final and last.top[0]["token"] == " Paris" and last.top[0]["prob"] > 0.5
    assert last.top[0]["logit"] == pytest.approx(last.model_top[0]["logit"], abs=1e-3)
    pats = b.head_patterns(text, HeadOptions(5))
    for head in (0, 4, 8):  # query heads 0-2, 3-5, 6-8 read key/value heads 0, 1, 2
        a = b.explain_attention(text, AttentionWeightOptions(layer=5, head=head, query=-1, key_position=2))
        assert a.n_heads == 9 and a.n_kv_heads == 3 and a.kv_head == head // 3
        assert a.weight == pytest.approx(float(pats.attention[head, -1, 2]), abs=1e-5)
        assert a.output == pytest.approx(a.shown_output, abs=1e-4)
    n = b.explain_neuron(text, NeuronAtOptions(layer=10, neuron=100, position=-1))
    assert n.act == pytest.approx(n.shown_act, abs=1e-4) and n.activation == "silu"


def test_bad_requests_are_refused(models):
    _, b = models("tiny-llama")
    for call, options, message in [
            (b.explain_cell, CellOptions(layer=4), "--layer"), (b.explain_cell, CellOptions(position=99), "position"),
            (b.explain_cell, CellOptions(top=2), "--top"),
            (b.explain_attention, AttentionWeightOptions(layer=0), "layer"),
            (b.explain_attention, AttentionWeightOptions(head=4), "head"),
            (b.explain_attention, AttentionWeightOptions(key_position=-99), "position"),
            (b.explain_neuron, NeuronAtOptions(neuron=64), "neuron")]:
        with pytest.raises(LensError, match=message):
            call(PROMPT, options)
    # what the steps do not write out is refused, never shown wrong: Gemma 3's local rotary layers, Phi's parallel
    # block, Gemma 2's normed MLP writes, Phi-3's fused gate and up projection
    for name, call, message in [("tiny-gemma3_text", "explain_attention", "otherwise than the steps"),
                                ("tiny-phi", "explain_attention", "not the normed residual stream"),
                                ("tiny-phi", "explain_neuron", "in parallel"),
                                ("tiny-gemma2", "explain_neuron", "no neuron sites"),
                                ("tiny-phi3", "explain_neuron", "otherwise than the steps")]:
        options = AttentionWeightOptions(2, 1, -1, 3) if call == "explain_attention" else NeuronAtOptions(2, 5)
        with pytest.raises(LensError, match=message):
            getattr(models(name)[1], call)(PROMPT, options)


def test_explain_command(capsys, models):
    _, b = models("tiny-llama")
    assert main(["explain", "--model", "tiny-llama", "--prompt", PROMPT, "--layer", "2", "--position", "-1", "--json",
                 "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = b.explain_cell(PROMPT, CellOptions(layer=2, position=-1))
    assert out["norm"] == pytest.approx(r.norm) and out["rms"] == pytest.approx(r.rms)
    assert out["logsumexp"] == pytest.approx(r.logsumexp) and len(out["top"]) >= 5
    assert [t["prob"] for t in out["top"]] == pytest.approx([t["prob"] for t in r.top])
    assert set(out["top"][0]) >= {"token", "logit", "prob"}
    assert main(["explain", "--model", "tiny-llama", "--prompt", PROMPT, "--head", "2.1", "--query", "-1", "--key",
                 "3", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weight"] == pytest.approx(b.explain_attention(PROMPT, AttentionWeightOptions(2, 1, -1, 3)).weight)
    assert main(["explain", "--model", "tiny-gpt2", "--prompt", PROMPT, "--neuron", "1.5", "--position", "2",
                 "--json", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["neuron"] == 5
    assert main(["explain", "--model", "tiny-llama", "--prompt", PROMPT, "--layer", "0", "--no-cache"]) == 0
    assert "Softmax" in capsys.readouterr().out
    for args, message in [(["--layer", "9"], "--layer"), (["--head", "2"], "--head"), ([], "--layer L"),
                          (["--head", "1.1", "--neuron", "1.1"], "not both"), (["--layer", "1", "--position", "50"],
                                                                              "position"),
                          (["--layer", "1", "--head", "1.1"], "leave out --layer")]:
        assert main(["explain", "--model", "tiny-llama", "--prompt", PROMPT, "--no-cache", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
