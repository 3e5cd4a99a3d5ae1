"""The weight space (lens/weights/) against plain computations written here from the HF models' own weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.engine.hooks import HookEngine
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import load_model
from lens.weights.heads import composition_scores, copying, embeddings
from lens.weights.neurons import neuron_contexts, neuron_page
from lens.weights.options import HeadWeightOptions, NeuronOptions, NeuronPageOptions

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            lm = load_model(name)
            cache[name] = (lm, local_backend(lm, None))
        return cache[name]
    return get


# ---------------------------------------------------------------- plain computations, independent of lens code

def plain_parts(lm):
    """(final norm weight [d], is LayerNorm, unembedding [V, d], per layer W_down as [N, d]) read here."""
    m = lm.model
    if m.config.model_type == "gpt2":
        return (m.transformer.ln_f.weight.double(), True, m.lm_head.weight.double(),
                [b.mlp.c_proj.weight.double() for b in m.transformer.h])  # Conv1D: [N, d] already
    return (m.model.norm.weight.double(), False, m.lm_head.weight.double(),
            [b.mlp.down_proj.weight.T.double() for b in m.model.layers])  # Linear: weight [d, N]


def plain_scores(lm, token_id):
    gamma, centre, W_U, downs = plain_parts(lm)
    rows = []
    for W in downs:
        if centre:
            W = W - W.mean(1, keepdim=True)
        rows.append(W @ (gamma * W_U[token_id]))
    return torch.stack(rows)  # [L, N]


def plain_heads(lm):
    """Per layer: (W_Q, W_K, W_V per query head [H, d, hd], W_O [H, hd, d]) with the input norm's weight (and, for
    LayerNorm, the centring) folded in, read straight from the modules."""
    m, cfg = lm.model, lm.model.config
    H = cfg.num_attention_heads if hasattr(cfg, "num_attention_heads") else cfg.n_head
    d = cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd
    hd = d // H
    out = []
    if cfg.model_type == "gpt2":
        for b in m.transformer.h:
            W = b.attn.c_attn.weight.double()  # [d, 3d]
            g = b.ln_1.weight.double()
            P = torch.eye(d, dtype=torch.float64) - 1.0 / d
            f = lambda w: P @ (g[:, None] * w)
            q, k, v = (f(W[:, i * d:(i + 1) * d]) for i in range(3))
            O = b.attn.c_proj.weight.double()  # [d, d] Conv1D: x @ W
            per = lambda w: torch.stack([w[:, h * hd:(h + 1) * hd] for h in range(H)])
            out.append((per(q), per(k), per(v), torch.stack([O[h * hd:(h + 1) * hd] for h in range(H)])))
        return out
    KV = cfg.num_key_value_heads
    for b in m.model.layers:
        a, g = b.self_attn, b.input_layernorm.weight.double()
        q, k, v = ((g[:, None] * p.weight.T.double()) for p in (a.q_proj, a.k_proj, a.v_proj))
        O = a.o_proj.weight.T.double()
        group = H // KV
        out.append((torch.stack([q[:, h * hd:(h + 1) * hd] for h in range(H)]),
                    torch.stack([k[:, (h // group) * hd:(h // group + 1) * hd] for h in range(H)]),
                    torch.stack([v[:, (h // group) * hd:(h // group + 1) * hd] for h in range(H)]),
                    torch.stack([O[h * hd:(h + 1) * hd] for h in range(H)])))
    return out


def down_input_hook(lm, layer, ids):
    """[T, N] the down projection's input in block ``layer`` (0-based), by a hook written here."""
    m = lm.model
    mod = m.transformer.h[layer].mlp.c_proj if m.config.model_type == "gpt2" else m.model.layers[layer].mlp.down_proj
    got = {}
    handle = mod.register_forward_pre_hook(lambda _m, args: got.setdefault("x", args[0].detach().clone()))
    try:
        with torch.no_grad():
            m(torch.tensor([ids]))
    finally:
        handle.remove()
    return got["x"][0].float()


# ---------------------------------------------------------------- neuron scores

@pytest.mark.parametrize("name, token", [("tiny-llama", "a"), ("tiny-gpt2", "e")])
def test_neuron_scores_are_the_plain_matrix_product(models, name, token):
    lm, b = models(name)
    r = b.neurons(NeuronOptions(token=token, top=10))
    t = lm.tokenizer(token, add_special_tokens=False)["input_ids"][0]
    S = plain_scores(lm, t)
    flat = S.flatten()
    N = S.shape[1]
    best, worst = flat.argsort(descending=True)[:10], flat.argsort()[:10]
    assert [(x["layer"], x["neuron"]) for x in r.neurons] == [(int(i) // N + 1, int(i) % N) for i in best]
    assert [(x["layer"], x["neuron"]) for x in r.suppressors] == [(int(i) // N + 1, int(i) % N) for i in worst]
    np.testing.assert_allclose([x["score"] for x in r.neurons], flat[best].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.layer_max, S.max(1).values.numpy(), rtol=1e-4, atol=1e-5)
    # each listed neuron's top token: the argmax of its output vector through γ (and centring) and W_U
    gamma, centre, W_U, downs = plain_parts(lm)
    x = r.neurons[0]
    w = downs[x["layer"] - 1][x["neuron"]]
    w = w - w.mean() if centre else w
    logits = W_U @ (gamma * w)
    assert lm.tokenizer.decode([int(logits.argmax())]) == r.top_tokens[0][0]
    assert abs(float(logits.max()) - float(r.top_values[0, 0])) < 1e-4


def test_bundled_top_neuron_for_paris(bundled):
    b = local_backend(bundled, None)
    r = b.neurons(NeuronOptions(token=" Paris", top=5))
    t = bundled.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    S = plain_scores(bundled, t)
    i = int(S.flatten().argmax())
    assert (r.neurons[0]["layer"], r.neurons[0]["neuron"]) == (i // S.shape[1] + 1, i % S.shape[1])
    assert abs(r.neurons[0]["score"] - float(S.flatten()[i])) < 1e-3
    assert r.neurons[0]["score"] > r.neurons[1]["score"] > 0 > r.suppressors[0]["score"]


# ---------------------------------------------------------------- a neuron's activation and its contexts

@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_contexts_are_the_brute_force_top_k_and_the_activation_is_the_hooks(models, name):
    lm, _ = models(name)
    engine = HookEngine.of(lm)
    rng = np.random.default_rng(0)
    V = lm.tokenizer.vocab_size if hasattr(lm.tokenizer, "vocab_size") else 200
    stream = [int(x) for x in rng.integers(40, min(V, 120), size=70)]
    chunks = [stream[i:i + 16] for i in range(0, len(stream), 16)]  # four of 16, one of 6: two batch shapes
    k = 5
    ctx = neuron_contexts(engine, chunks, "test", "digest", lm.name, k=k)
    L = lm.adapter.n_layers
    for layer in range(L):
        acts = torch.cat([down_input_hook(lm, layer, c) for c in chunks])  # [len(stream), N]
        for high, values, places in ((True, ctx.values, ctx.where), (False, ctx.low_values, ctx.low_where)):
            v, where = acts.topk(k, 0, largest=high)
            np.testing.assert_allclose(values[layer], v.T.numpy(), rtol=1e-5, atol=1e-6)
            assert (places[layer] == where.T.numpy()).all()
    ids = lm.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    page = neuron_page(engine, lm.tokenizer, ids, 2, 7, 5, 3, ctx, stream, lm.name)
    np.testing.assert_allclose(page.activation, down_input_hook(lm, 1, ids)[:, 7].numpy(), rtol=1e-5, atol=1e-6)
    p = int(ctx.where[1, 7, 0])
    assert page.contexts[0][page.context_peak[0]] == lm.tokenizer.decode([stream[p]])
    assert page.context_values[0] == ctx.values[1, 7, 0]
    p = int(ctx.low_where[1, 7, 1])
    assert page.low_contexts[1][page.low_context_peak[1]] == lm.tokenizer.decode([stream[p]])
    assert page.low_context_values[1] == ctx.low_values[1, 7, 1] <= ctx.values[1, 7, 0]


# ---------------------------------------------------------------- heads: OV copying and composition

@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_ov_copying_is_the_plain_formula(models, name):
    lm, _ = models(name)
    gamma, centre, W_U, _ = plain_parts(lm)
    E = (lm.model.transformer.wte if name == "tiny-gpt2" else lm.model.model.embed_tokens).weight.double()
    subset = list(range(40, 100, 3))
    mean_z, z = copying(lm.adapter, embeddings(lm.model), subset, 3)
    for l, (q, k, v, O) in enumerate(plain_heads(lm)):
        for h in range(q.shape[0]):
            for i, s in enumerate(subset[:5]):
                y = E[s] @ v[h] @ O[h]  # what the head writes for input s
                y = y - y.mean() if centre else y
                row = W_U[subset] @ (gamma * y)
                want = (row[i] - row.mean()) / row.std()
                assert abs(float(z[l, h, i]) - float(want)) < 1e-3
    assert mean_z.shape == (lm.adapter.n_layers, lm.adapter.n_heads)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("kind", ["q", "k", "v"])
def test_composition_is_elhage_formula_on_full_matrices(models, name, kind):
    lm, _ = models(name)
    got = composition_scores(lm.adapter, kind)
    heads = plain_heads(lm)
    H = heads[0][0].shape[0]
    fro = torch.linalg.matrix_norm
    for la in range(len(heads)):
        for lb in range(len(heads)):
            for a in range(H):
                for bh in range(H):
                    want = 0.0
                    if lb > la:
                        qA, kA, vA, OA = (m[a] for m in heads[la])
                        qB, kB, vB, OB = (m[bh] for m in heads[lb])
                        ov = vA @ OA
                        M = {"q": qB @ kB.T, "k": (qB @ kB.T).T, "v": vB @ OB}[kind]
                        want = float(fro(ov @ M) / (fro(ov) * fro(M)))
                    assert abs(got[la * H + a, lb * H + bh] - want) < 1e-4


def test_grouped_query_heads_share_their_groups_key_and_value(bundled):
    from lens.weights.heads import qkv

    q, k, v = qkv(bundled.adapter, 0)
    g = bundled.adapter.kv_group
    assert g == 3 and q.shape[0] == k.shape[0] == v.shape[0] == 9
    assert torch.equal(k[0], k[2]) and torch.equal(v[3], v[5]) and not torch.equal(v[2], v[3])


# ---------------------------------------------------------------- commands and bad input

def test_commands_print_their_json_and_refuse_bad_input(models, capsys):
    lm, b = models("tiny-llama")
    assert main(["neurons", "--model", "tiny-llama", "--token", "a", "--top", "4", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = b.neurons(NeuronOptions(token="a", top=4))
    assert out["neurons"] == [{"layer": x["layer"], "neuron": x["neuron"], "score": pytest.approx(x["score"])}
                              for x in r.neurons]
    assert len(out["suppressors"]) == 4 and out["neurons"][0]["score"] >= out["neurons"][-1]["score"]
    assert main(["heads-weights", "--model", "tiny-gpt2", "--composition", "q", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["scores"]) == 12 and out["composition"] == "q"
    for args, message in [(["neurons", "--token", "ab"], "not one"), (["neurons", "--token", "a", "--top", "0"],
                                                                       "--top"),
                          (["neuron", "--layer", "9", "--neuron", "0"], "--layer"),
                          (["neuron", "--layer", "1", "--neuron", "-1"], "--neuron"),
                          (["heads-weights", "--top-k", "0"], "top-k"), (["neurons"], "--token T")]:
        assert main([*args, "--model", "tiny-llama", "--no-cache"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # no token: the model's own top-1 after the prompt
    top1 = lm.tokenizer.decode([int(lm.model(torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])).logits[0, -1].argmax())])
    assert b.neurons(NeuronOptions(top=4), PROMPT).neurons == b.neurons(NeuronOptions(token=top1, top=4)).neurons
    assert b.neurons(NeuronOptions(top=4), PROMPT).token == top1
    with pytest.raises(LensError, match="--neuron"):
        b.neuron(PROMPT, NeuronPageOptions(layer=1, neuron=10_000))
    with pytest.raises(LensError, match="composition"):
        b.head_weights(HeadWeightOptions(composition="x"))
