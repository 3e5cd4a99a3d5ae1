"""The plain PyTorch Llama model (lens/model/plain_llama.py) against transformers' own, number for number.

The plain model is what the bundled model runs as, so a start needs no transformers model code; every view reads
it through the engine. Here each is checked against ``LlamaForCausalLM`` from transformers on the same weights:
the logits, every named site, head means in row blocks, resumed and packed patching runs, generation with a cache,
padded batches, gradients, and what falls back to transformers.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lens.engine.base import Read, head_mean, head_mean_lower
from lens.engine.hooks import HookEngine
from lens.engine.packed import packed_resid_logits, packs
from lens.engine_backend import local_backend, nnsight_backend
from lens.model.loading import load_model
from lens.model.plain_llama import LlamaForCausalLM, load_plain, unsupported
from lens.model.tiny import tiny_model

PROMPT = "the cat sat on the mat, and then it slept"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama (grouped-query attention, 3 blocks) saved as a model folder."""
    model, tok = tiny_model("llama", seed=3)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pair(tiny_folder):
    """(plain, transformers) loads of the same tiny folder."""
    return load_model(str(tiny_folder)), load_model(str(tiny_folder), plain=False)


def test_a_local_llama_folder_loads_as_the_plain_model_and_plain_false_as_transformers(pair):
    plain, hf = pair
    assert isinstance(plain.model, LlamaForCausalLM)
    assert not isinstance(hf.model, LlamaForCausalLM) and type(hf.model).__module__.startswith("transformers.")
    assert plain.adapter.n_layers == hf.adapter.n_layers == 3
    assert (plain.adapter.n_heads, plain.adapter.n_kv_heads, plain.adapter.head_dim) == \
        (hf.adapter.n_heads, hf.adapter.n_kv_heads, hf.adapter.head_dim) == (4, 2, 8)
    assert plain.context_length == hf.context_length
    assert plain.tokenizer(PROMPT)["input_ids"] == hf.tokenizer(PROMPT)["input_ids"]
    # the same parameters under the same names; the unembedding tied to the embeddings only where the config says
    ps, hs = plain.model.state_dict(), hf.model.state_dict()
    assert set(ps) == set(hs)
    assert all(torch.equal(ps[k], hs[k]) for k in ps)
    assert plain.model.config.tie_word_embeddings is False
    assert plain.model.lm_head.weight is not plain.model.model.embed_tokens.weight


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_logits_cached_steps_and_padded_batches_are_bit_identical(pair, attention):
    plain, hf = pair
    ids = torch.tensor([plain.tokenizer(PROMPT)["input_ids"]])
    p, h = plain.model, hf.model
    p.set_attn_implementation(attention)
    h.set_attn_implementation(attention)
    try:
        with torch.no_grad():
            assert torch.equal(p(input_ids=ids, use_cache=False).logits, h(input_ids=ids, use_cache=False).logits)
            po, ho = p(input_ids=ids, use_cache=True), h(input_ids=ids, use_cache=True)
            for nxt in (5, 77, 200):  # three cached steps
                po = p(input_ids=torch.tensor([[nxt]]), past_key_values=po.past_key_values, use_cache=True)
                ho = h(input_ids=torch.tensor([[nxt]]), past_key_values=ho.past_key_values, use_cache=True)
                assert torch.equal(po.logits, ho.logits)
            # a left-padded batch, as the fitted lens's corpus sampler runs one
            batch = torch.stack([torch.cat([torch.full((4,), 257), ids[0]]), torch.cat([ids[0], ids[0, :4]])])
            mask = torch.ones_like(batch)
            mask[0, :4] = 0
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            a = p(input_ids=batch, attention_mask=mask, position_ids=pos, use_cache=False).logits
            b = h(input_ids=batch, attention_mask=mask, position_ids=pos, use_cache=False).logits
            assert torch.equal(a[0, 4:], b[0, 4:]) and torch.equal(a[1], b[1])
    finally:
        p.set_attn_implementation("eager")
        h.set_attn_implementation("eager")


SITES = ["resid_pre.1", "attn_in.2", "attn_out.2", "head_out.2", "mlp_in.3", "mlp_act.3", "mlp_out.1",
         "resid_post.3", "value.2", "q_proj.1", "k_proj.3", "v_proj.2", "attn_pattern.2", "final_norm", "logits"]


def test_every_named_site_reads_the_same_through_the_engine(pair):
    plain, hf = pair
    ids = plain.tokenizer(PROMPT)["input_ids"]
    a = HookEngine.of(plain).run(ids, read={s: None for s in SITES}, logits="all")
    b = HookEngine.of(hf).run(ids, read={s: None for s in SITES}, logits="all")
    assert set(a.reads) == set(b.reads) == set(SITES)
    for s in SITES:
        assert torch.equal(a.reads[s], b.reads[s]), s
    assert torch.equal(a.logits, b.logits)


def test_head_means_in_row_blocks_equal_transformers_and_the_whole_pattern(pair, monkeypatch):
    import lens.engine.hooks as hooks

    plain, hf = pair
    ids = plain.tokenizer(PROMPT)["input_ids"]
    T = len(ids)
    monkeypatch.setattr(hooks, "ROW_BLOCK_BYTES", 4 * 4 * T * 3)  # 3 query rows a block: several blocks a pass
    got = [HookEngine.of(lm).run(ids, read={"attn_pattern.2": Read(map=head_mean),
                                             "attn_pattern.3": Read(map=head_mean_lower)}, logits="none")
           for lm in (plain, hf)]
    whole = HookEngine.of(plain).run(ids, read={"attn_pattern.2": None, "attn_pattern.3": None}, logits="none")
    for name in ("attn_pattern.2", "attn_pattern.3"):
        torch.testing.assert_close(got[0].reads[name], got[1].reads[name], rtol=0, atol=1e-7)
    torch.testing.assert_close(got[0].reads["attn_pattern.2"][0], whole.reads["attn_pattern.2"][0].mean(0),
                               rtol=0, atol=1e-6)
    lower = whole.reads["attn_pattern.3"][0].mean(0)[torch.tril_indices(T, T).unbind()]
    torch.testing.assert_close(got[0].reads["attn_pattern.3"][0], lower, rtol=0, atol=1e-6)


def test_writes_gradients_and_masks_act_the_same(pair):
    plain, hf = pair
    ids = plain.tokenizer(PROMPT)["input_ids"]

    def double(x, call):
        return x * 2

    def cut_first(mask, call):
        out = mask.clone()
        out[..., 1:, 0] = False
        return out

    runs = [HookEngine.of(lm).run(ids, read={"resid_post.1": None, "attn_out.2": None},
                                  write={"mlp_out.1": double, "attn_mask.2": cut_first},
                                  grad_of=lambda z: z[0, 7] - z[0, 9])
            for lm in (plain, hf)]
    assert runs[0].metric == runs[1].metric
    assert torch.equal(runs[0].logits, runs[1].logits)
    for name in ("resid_post.1", "attn_out.2"):
        assert torch.equal(runs[0].reads[name], runs[1].reads[name])
        torch.testing.assert_close(runs[0].grads[name], runs[1].grads[name], rtol=0, atol=1e-6)


def test_resumed_and_packed_patching_runs_equal_transformers(pair):
    plain, hf = pair
    ids = plain.tokenizer(PROMPT)["input_ids"]
    L, T = plain.adapter.n_layers, len(ids)
    recs = [HookEngine.of(lm).record(ids) for lm in (plain, hf)]
    assert all(packs(r) for r in recs)
    assert torch.equal(recs[0].residual, recs[1].residual)
    assert torch.equal(recs[0].last_logits, recs[1].last_logits)

    def put(x, call):
        y = x.clone()
        y[:, 2] = 0.5
        return y

    resumed = [HookEngine.of(lm).resume(r, 2, {"resid_pre.2": put}) for lm, r in zip((plain, hf), recs)]
    assert torch.equal(resumed[0], resumed[1])
    vec = torch.full((2, plain.adapter.d_model), 0.25)
    patches = [None, ([1, 4], vec), None, ([T - 1, 0], vec)][:L]
    packed = [packed_resid_logits(HookEngine.of(lm), r, patches) for lm, r in zip((plain, hf), recs)]
    torch.testing.assert_close(packed[0], packed[1], rtol=0, atol=1e-5)


def test_generation_and_the_backend_views_match(pair):
    plain, hf = pair
    ids = plain.tokenizer(PROMPT)["input_ids"]
    for temperature in (0.0, 0.9):
        a = HookEngine.of(plain).generate(ids, 8, temperature=temperature, seed=4)
        b = HookEngine.of(hf).generate(ids, 8, temperature=temperature, seed=4)
        assert a == b
    pa, pb = local_backend(plain, None), local_backend(hf, None)
    la, lb = pa.logit_lens(PROMPT), pb.logit_lens(PROMPT)
    assert (la.top_ids == lb.top_ids).all()
    assert abs(la.top_probs - lb.top_probs).max() <= 1e-6


def test_nnsight_runs_the_plain_load_through_transformers_own_model(pair):
    plain, _ = pair
    backend = nnsight_backend(plain)
    assert not isinstance(backend.loaded.model, LlamaForCausalLM)
    a, b = backend.logit_lens(PROMPT), local_backend(plain, None).logit_lens(PROMPT)
    assert (a.top_ids == b.top_ids).all()
    assert abs(a.top_probs - b.top_probs).max() <= 1e-5


def test_checkpoints_the_plain_model_cannot_run_go_to_transformers(tiny_folder, tmp_path, monkeypatch):
    config = json.loads((tiny_folder / "config.json").read_text())
    assert unsupported(config) is None
    assert "scaled" in unsupported({**config, "rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                                  "rope_theta": 1e4}})
    assert "gelu" in unsupported({**config, "hidden_act": "gelu"})
    assert "mistral" in unsupported({**config, "model_type": "mistral"})
    # a folder whose config asks for another rotary scaling loads, through transformers
    import shutil

    other = tmp_path / "scaled"
    shutil.copytree(tiny_folder, other)
    (other / "config.json").write_text(json.dumps({**config, "rope_parameters": {
        "rope_type": "linear", "factor": 2.0, "rope_theta": config["rope_parameters"]["rope_theta"]}}))
    assert not isinstance(load_model(str(other)).model, LlamaForCausalLM)
    # LAYERLENS_PLAIN=0: transformers' model for every load
    monkeypatch.setenv("LAYERLENS_PLAIN", "0")
    assert not isinstance(load_model(str(tiny_folder)).model, LlamaForCausalLM)


def test_weights_that_do_not_fit_are_named(tiny_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    state = load_file(str(broken / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    state["model.layers.0.self_attn.q_proj.weight"] = state["model.layers.0.self_attn.q_proj.weight"][:, :5].contiguous()
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match="model.layers.1.mlp.up_proj.weight"):
        load_plain(broken)
    state["model.layers.1.mlp.up_proj.weight"] = torch.zeros(64, 32)
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match=r"q_proj.weight has shape \(32, 5\)"):
        load_plain(broken)


def test_the_bundled_model_loads_without_transformers_model_code_and_equals_it(bundled):
    assert isinstance(bundled.model, LlamaForCausalLM)
    assert bundled.model.lm_head.weight is bundled.model.model.embed_tokens.weight  # tied, as its config says
    code = ("import sys, json\n"
            "from lens.model.loading import load_model\n"
            "from lens.engine_backend import local_backend\n"
            "lm = load_model('smollm2-135m')\n"
            "r = local_backend(lm, None).logit_lens('The capital of France is')\n"
            "print(json.dumps({'plain': type(lm.model).__module__, 'top': r.top_ids[-1, -1, 0].item(),"
            " 'heavy': [m for m in ('transformers.modeling_utils', 'torch._dynamo', 'torch.distributed.tensor')"
            " if m in sys.modules]}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["plain"] == "lens.model.plain_llama" and got["heavy"] == []
    assert bundled.tokenizer.decode([got["top"]]).strip() == "Paris"
    # number for number against transformers' model of the same folder
    hf = load_model("smollm2-135m", plain=False)
    ids = bundled.tokenizer("The capital of France is Paris, and the capital of Germany is")["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(bundled.model(input_ids=x, use_cache=False).logits,
                           hf.model(input_ids=x, use_cache=False).logits)
    sites = {"resid_post.15": None, "attn_pattern.7": None, "mlp_act.30": None}
    a, b = HookEngine.of(bundled).run(ids, read=sites), HookEngine.of(hf).run(ids, read=sites)
    assert all(torch.equal(a.reads[s], b.reads[s]) for s in sites)
    assert HookEngine.of(bundled).generate(ids, 6) == HookEngine.of(hf).generate(ids, 6)


def test_hidden_states_and_attention_weights_come_back_as_transformers_gives_them(pair):
    plain, hf = pair
    x = torch.tensor([plain.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        a = plain.model(input_ids=x, output_hidden_states=True, output_attentions=True)
        b = hf.model(input_ids=x, output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == len(b.hidden_states) == 4 and len(a.attentions) == len(b.attentions) == 3
    assert all(torch.equal(u, v) for u, v in zip(a.hidden_states, b.hidden_states))
    assert all(torch.equal(u, v) for u, v in zip(a.attentions, b.attentions))


def test_a_config_that_leaves_values_out_reads_transformers_defaults(tiny_folder, tmp_path):
    import shutil

    sparse = tmp_path / "sparse"
    shutil.copytree(tiny_folder, sparse)
    config = json.loads((sparse / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3  # not the default: left out below, both must read 1e-6
    for key in ("rms_norm_eps", "attention_bias", "mlp_bias", "tie_word_embeddings", "max_position_embeddings",
                "pad_token_id", "use_cache"):
        config.pop(key, None)
    (sparse / "config.json").write_text(json.dumps(config))
    plain, hf = load_model(str(sparse)), load_model(str(sparse), plain=False)
    assert isinstance(plain.model, LlamaForCausalLM)
    assert plain.model.model.norm.variance_epsilon == hf.model.model.norm.variance_epsilon == 1e-6
    assert plain.context_length == hf.context_length
    x = torch.tensor([plain.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(plain.model(input_ids=x).logits, hf.model(input_ids=x).logits)


@pytest.mark.parametrize("changes", [
    {"attention_bias": True, "mlp_bias": True},  # biases on every projection
    {"num_key_value_heads": 4},  # one key/value head per head (no grouping)
    {"head_dim": 12, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}},  # heads wider than d/H
    {"num_key_value_heads": 1, "tie_word_embeddings": True},  # one shared key/value head; tied unembedding
])
def test_other_llama_shapes_equal_transformers(tmp_path, changes):
    """Llama configs other than the bundled model's: random weights of each, saved, loaded both ways."""
    import transformers as tf

    from lens.model.tiny import tiny_config, tiny_tokenizer

    config = tiny_config("llama")
    for key, value in changes.items():
        setattr(config, key, value)
    torch.manual_seed(5)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # biases and norms away from their initial values too
    model.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    plain, hf = load_model(str(tmp_path)), load_model(str(tmp_path), plain=False)
    assert isinstance(plain.model, LlamaForCausalLM)
    ids = plain.tokenizer(PROMPT)["input_ids"]
    sites = {"attn_pattern.2": None, "head_out.3": None, "mlp_act.1": None, "resid_post.3": None}
    for attention in ("eager", "sdpa"):
        plain.model.set_attn_implementation(attention)
        hf.model.set_attn_implementation(attention)
        with torch.no_grad():
            x = torch.tensor([ids])
            assert torch.equal(plain.model(input_ids=x).logits, hf.model(input_ids=x).logits), attention
    plain.model.set_attn_implementation("eager")
    hf.model.set_attn_implementation("eager")
    a, b = HookEngine.of(plain).run(ids, read=sites), HookEngine.of(hf).run(ids, read=sites)
    assert all(torch.equal(a.reads[s], b.reads[s]) for s in sites)
    assert HookEngine.of(plain).generate(ids, 6, temperature=0.8, seed=2) == \
        HookEngine.of(hf).generate(ids, 6, temperature=0.8, seed=2)
