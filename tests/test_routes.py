"""Route importances: the per-(source, head) decomposition, normalisation, the graph and the drill-down."""
from lens.options import ContributionOptions
import numpy as np
import pytest
import torch

from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.analysis.routes import (RouteData, attention_contributions, attention_importance, mlp_importance,
                                  node_detail, route_capture, route_graph)
from lens.engine.hooks import HookEngine
from lens.engine.trace import capture
from lens.results import BLOCKS, KINDS
from shown import as_shown

PROMPT = "hello there, the end; see me here"


def data_for(model, tok, adapter, text=PROMPT, layers=None, neurons=False):
    ids = tok(text)["input_ids"]
    tr = capture(HookEngine(model, adapter), ids, route_capture(adapter.n_layers, layers, neurons), model_name="m",
                 tokens=[as_shown(tok, i) for i in ids])
    return RouteData.from_trace(tr)


@torch.no_grad()
def independent_parts(model, adapter, data, l):
    """z[i, j, h] for every target, computed from the residual stream with the model's own weights:
    values = pre-attention norm of h_{l-1}, then the value projection; per head A·v·W_O^h."""
    attn = adapter.attn[l]
    x = adapter.attn_norm[l](data.residual[l])
    H, KV, hd = adapter.n_heads, adapter.n_kv_heads, adapter.head_dim
    if adapter.model_type == "gpt2":
        d = x.shape[-1]
        v = (x @ attn.c_attn.weight + attn.c_attn.bias)[:, 2 * d:]
        Wo = attn.c_proj.weight  # [H*hd, d]
    elif adapter.model_type == "phi3":  # fused q (H·hd), k (KV·hd), v (KV·hd)
        v = attn.qkv_proj(x)[:, (H + KV) * hd:]
        Wo = attn.o_proj.weight.T
    elif adapter.model_type == "opt":
        v = attn.v_proj(x)
        Wo = attn.out_proj.weight.T
    else:
        v = attn.v_proj(x)
        Wo = attn.o_proj.weight.T
    v = v.reshape(len(x), KV, hd).double()
    A = data.attentions[l].double()
    T = len(x)
    z = torch.zeros(T, T, H, Wo.shape[1], dtype=torch.float64)  # fine for a tiny model
    for h in range(H):
        g = h // (H // KV)
        vo = v[:, g] @ Wo[h * hd:(h + 1) * hd].double()  # [T, d]
        z[:, :, h] = A[h].unsqueeze(-1) * vo.unsqueeze(0)
    return z


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "phi3", "opt", "gemma"])
def test_decomposition_sums_to_block_output_tiny(tiny, arch):
    model, tok, adapter = tiny(arch)
    data = data_for(model, tok, adapter)
    for l in range(adapter.n_layers):
        z = independent_parts(model, adapter, data, l)
        _, b = adapter.output_projection(l)
        target = data.attn_out[l].double() - (0 if b is None else b.double())
        torch.testing.assert_close(z.sum((1, 2)), target, atol=1e-5, rtol=1e-5)
        # The fast path's value-outputs give the same parts.
        VO = data.value_outputs(l).double()
        fast = data.attentions[l].double().permute(1, 2, 0).unsqueeze(-1) * VO.unsqueeze(0)
        torch.testing.assert_close(fast, z, atol=1e-5, rtol=1e-5)


def test_decomposition_bundled(bundled):
    tok = bundled.tokenizer
    data = data_for(bundled.model, tok, bundled.adapter, "The capital of France is")
    assert bundled.adapter.n_kv_heads < bundled.adapter.n_heads  # grouped-query attention
    for l in (0, 14, bundled.n_layers - 1):
        VO = data.value_outputs(l)
        s = torch.einsum("hij,jhd->id", data.attentions[l], VO)
        _, b = bundled.adapter.output_projection(l)
        target = data.attn_out[l] - (0 if b is None else b)
        torch.testing.assert_close(s, target, atol=1e-4 * float(target.abs().max()), rtol=1e-4)


def naive_importance(data, l, i, z):
    y = data.residual[l][i].double() + data.attn_out[l][i].double()
    ny = y.abs().sum()
    imp = (ny - (y - z[i]).abs().sum(-1)).clamp_min(0)  # [T, H]
    res = (ny - (y - data.residual[l][i].double()).abs().sum()).clamp_min(0)
    tot = res + imp.sum()
    return (res / tot).item(), (imp / tot).numpy()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_importances_against_naive(tiny, arch):
    model, tok, adapter = tiny(arch)
    data = data_for(model, tok, adapter)
    T = data.n_tokens
    for l in range(adapter.n_layers):
        z = independent_parts(model, adapter, data, l)
        targets = list(range(T))
        res, parts, S = attention_importance(data, l, targets)
        np.testing.assert_allclose((res + parts.sum((1, 2))).numpy(), 1.0, atol=1e-5)
        for i in (0, T // 2, T - 1):
            r_ref, p_ref = naive_importance(data, l, i, z)
            assert res[i].item() == pytest.approx(r_ref, abs=1e-5)
            np.testing.assert_allclose(parts[i].numpy(), p_ref[:S], atol=1e-5)
        r, m = mlp_importance(data, l)
        np.testing.assert_allclose((r + m).numpy(), 1.0, atol=1e-6)


def test_contributions_bundled(bundled):
    b = local_backend(bundled, cache=None)
    c = b.contributions("The capital of France is", ContributionOptions(layer=20, position=4))
    assert c.heads.shape == (bundled.model.config.num_attention_heads, 5)
    np.testing.assert_allclose(c.heads.sum(0), c.sources, atol=1e-6)
    assert c.residual + c.sources.sum() == pytest.approx(1.0, abs=1e-5)
    # Against the straightforward computation on the same captured pass.
    data = b._route_data("The capital of France is")
    VO = data.value_outputs(19).double()
    z = data.attentions[19].double()[:, 4, :].T.unsqueeze(-1) * VO  # [T, H, d]
    y = (data.residual[19][4] + data.attn_out[19][4]).double()
    imp = (y.abs().sum() - (y - z).abs().sum(-1)).clamp_min(0)
    res = (y.abs().sum() - data.attn_out[19][4].double().abs().sum()).clamp_min(0)
    tot = res + imp.sum()
    np.testing.assert_allclose(c.heads, (imp / tot).T.numpy(), atol=1e-5)
    with pytest.raises(LensError, match="out of range"):
        b.contributions("The capital of France is", ContributionOptions(layer=31, position=4))
    with pytest.raises(LensError, match="outside"):
        b.contributions("The capital of France is", ContributionOptions(layer=3, position=5))


def test_route_graph_structure(tiny):
    model, tok, adapter = tiny("llama")
    data = data_for(model, tok, adapter)
    tau = 0.05
    g = route_graph(data, None, tau, tokenizer=tok)
    L, p = adapter.n_layers, data.n_tokens - 1
    assert len(g.edge_layer) > 0 and np.all(g.edge_importance >= tau)
    # Each edge's importance is the node's importance, summed over heads for attention edges.
    for e in range(len(g.edge_layer)):
        l, b, k = int(g.edge_layer[e]), BLOCKS[g.edge_block[e]], KINDS[g.edge_kind[e]]
        s, t = int(g.edge_src[e]), int(g.edge_dst[e])
        if b == "attn":
            res, parts, _ = attention_importance(data, l - 1, [t])
            want = res[0].item() if k == "residual" else parts[0, s].sum().item()
        else:
            r, m = mlp_importance(data, l - 1, [t])
            want = (r if k == "residual" else m)[0].item()
        assert g.edge_importance[e] == pytest.approx(want, abs=1e-5)
    # Every node is reachable backwards from the prediction: walk forward from each edge's source.
    nodes = g.nodes()
    assert ("mlp", L, p) in nodes
    succ = {}
    for e in range(len(g.edge_layer)):
        l, b, s, t = int(g.edge_layer[e]), BLOCKS[g.edge_block[e]], int(g.edge_src[e]), int(g.edge_dst[e])
        src = (("emb", 0, s) if l == 1 else ("mlp", l - 1, s)) if b == "attn" else ("attn", l, s)
        succ.setdefault(src, set()).add((b, l, t))
    for n in nodes:
        cur, seen = [n], set()
        while cur:
            x = cur.pop()
            if x == ("mlp", L, p):
                break
            seen.add(x)
            cur.extend(y for y in succ.get(x, ()) if y not in seen)
        else:
            pytest.fail(f"{n} does not reach the prediction")
    # Shares renormalise the kept edges of each node.
    tot = {}
    for e in range(len(g.edge_layer)):
        key = (int(g.edge_layer[e]), int(g.edge_block[e]), int(g.edge_dst[e]))
        tot[key] = tot.get(key, 0.0) + float(g.edge_share[e])
    np.testing.assert_allclose(list(tot.values()), 1.0, atol=1e-5)
    with pytest.raises(LensError, match="threshold"):
        route_graph(data, None, 0.7)


@torch.no_grad()
def test_node_detail_sums(tiny):
    model, tok, adapter = tiny("gpt2")
    data = data_for(model, tok, adapter, neurons=True)
    p = 7
    d = node_detail(data, tok, 2, p, "attn", top_k=5)
    assert len(d.items) == adapter.n_heads
    assert d.residual_importance + d.block_importance == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(d.head_sources.sum(1), d.head_importance, atol=1e-6)
    # The projected tokens are the top of W_U·(γ ⊙ centred write), computed here directly.
    l = 1
    VO = data.value_outputs(l)
    w = torch.einsum("hs,shd->hd", data.attentions[l][:, p, :p + 1], VO[:p + 1])
    x = (w - w.mean(-1, keepdim=True)) * adapter.final_norm.weight
    logits = x @ adapter.unembed.weight.T
    for h in range(adapter.n_heads):
        top = logits[h].topk(5).indices.tolist()
        assert d.items[h]["promoted"] == [as_shown(tok, i) for i in top]
    m = node_detail(data, tok, 2, p, "mlp", n_neurons=4)
    # Neuron writes add up to the MLP output minus the down-projection bias.
    Wd = adapter.down_projection(l)
    total = data.neurons[l][p] @ Wd + adapter.mlp[l].c_proj.bias
    torch.testing.assert_close(total, data.mlp_out[l][p], atol=1e-4, rtol=1e-4)
    assert len(m.items) == 4 and m.residual_importance + m.block_importance == pytest.approx(1.0, abs=1e-6)
    probs = torch.softmax(adapter.readout(data.residual[2][p]), -1)
    assert m.lens_tokens[0] == as_shown(tok, int(probs.argmax()))


def test_unsupported_models(tiny):
    from lens.model.loading import load_model

    for arch, why in (("gpt_neox", "in parallel"), ("phi", "in parallel"), ("gemma2", "normalises each sub-block")):
        model, tok, adapter = tiny(arch)
        assert not adapter.supports_routes
        with pytest.raises(LensError, match=why):
            data_for(model, tok, adapter)
    enc = local_backend(load_model("minilm-l6"), cache=None)
    with pytest.raises(LensError, match="post-LN"):
        enc.route_graph("hello world")
