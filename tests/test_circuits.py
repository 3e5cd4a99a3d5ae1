"""Circuits (lens/circuits/eap.py) against computations written here with plain hooks: the circuit of every edge
is the clean run and of none the corrupted run (every architecture with head sites); one- and two-edge circuits
against a hand-built path patch; EAP scores against gradients taken here through each reader's input alone;
pruning leaves the metric as it is; the backend's result and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from command import lens_command
from lens.circuits.eap import (Graph, check_circuits, circuit_metrics, edge_scores, keep_mask, ranked_edges)
from lens.circuits.options import CircuitOptions
from lens.engine.hooks import HookEngine
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.adapters import adapt
from lens.model.loading import load_model
from lens.model.registry import TINY_ARCHS
from lens.model.tiny import tiny_model

CLEAN, CORRUPT = [ord(c) for c in "hello there, the end"], [ord(c) for c in "jello where, the fnd"]
TARGET, FOIL = ord("e"), ord("f")
WITH_CIRCUITS = [a for a in TINY_ARCHS if a not in ("gpt_neox", "phi", "gemma2", "gemma3_text")]


def first(out):
    return out[0] if isinstance(out, tuple) else out


def metric(z):
    z = z[0, -1].double()
    return z[TARGET] - z[FOIL]


def plain_run(model, ids, pre=(), post=()):
    """The metric of one forward pass with pre-hooks ``(module, fn(x [1,T,d]) -> x)`` and output hooks."""
    hs = [m.register_forward_pre_hook(lambda mod, args, fn=fn: (fn(args[0]), *args[1:])) for m, fn in pre]
    hs += [m.register_forward_hook(lambda mod, args, out, fn=fn: (fn(first(out)), *out[1:])
                                   if isinstance(out, tuple) else fn(out)) for m, fn in post]
    try:
        with torch.no_grad():
            return float(metric(model(input_ids=torch.tensor([ids])).logits))
    finally:
        for h in hs:
            h.remove()


def head_write(a, layer, head, z):
    """Head ``head``'s write of block ``layer`` (1-based) from the output projection's input [1, T, H·hd]."""
    mod = a.out_proj[layer - 1]
    W = mod.weight if type(mod).__name__ == "Conv1D" else mod.weight.T  # [H·hd, d]
    hd = a.head_dim
    return z[0, :, head * hd:(head + 1) * hd] @ W[head * hd:(head + 1) * hd]


@pytest.mark.parametrize("arch", WITH_CIRCUITS)
def test_every_edge_is_the_clean_run_and_none_the_corrupted_run(arch):
    model, _ = tiny_model(arch)
    a = adapt(model)
    eng = HookEngine(model, a)
    g, scores, m_clean, m_corrupt, wk = edge_scores(eng, CLEAN, CORRUPT, TARGET, FOIL)
    every, none = g.valid.copy(), np.zeros_like(g.valid)
    ms = circuit_metrics(eng, g, CLEAN, wk, [every, none], TARGET, FOIL)
    assert m_clean == pytest.approx(plain_run(model, CLEAN), abs=1e-4)
    assert m_corrupt == pytest.approx(plain_run(model, CORRUPT), abs=1e-4)
    assert ms[0] == pytest.approx(m_clean, abs=1e-4) and ms[1] == pytest.approx(m_corrupt, abs=1e-4)
    assert abs(m_clean - m_corrupt) > 0.05  # the two are far apart: the test could fail


@pytest.mark.parametrize("arch", ["gpt_neox", "phi", "gemma2"])
def test_models_whose_blocks_do_not_add_heads_to_one_stream_are_refused(arch):
    model, _ = tiny_model(arch)
    with pytest.raises(LensError, match="circuits need|do not add"):
        check_circuits(adapt(model))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2", "opt"])
def test_small_circuits_equal_a_path_patch_built_by_hand(arch):
    model, _ = tiny_model(arch)
    a = adapt(model)
    eng = HookEngine(model, a)
    L = a.n_layers
    g, scores, m_clean, m_corrupt, wk = edge_scores(eng, CLEAN, CORRUPT, TARGET, FOIL)
    got = {}
    # Both runs' embeddings and block 2's head 1 write, by hand.
    for name, ids in (("c", CLEAN), ("k", CORRUPT)):
        hs = [a.blocks[0].register_forward_pre_hook(lambda m, args, name=name: got.__setitem__(name + "emb", args[0])),
              a.out_proj[1].register_forward_pre_hook(lambda m, args, name=name: got.__setitem__(name + "z", args[0]))]
        plain_run(model, ids)
        for h in hs:
            h.remove()
    d_emb = got["cemb"] - got["kemb"]
    # 1. emb → logits: the last block's output gets the embeddings' difference, nothing else changes.
    want1 = plain_run(model, CORRUPT, post=[(a.blocks[L - 1], lambda x: x + d_emb)])
    # 2. emb → block 2's attention and a2.h1 → logits: head 1 of block 2 reads the corrupted stream plus the
    #    embeddings' difference (its attention only); its new write minus its corrupted one reaches the logits.
    seen = {}
    hs = [a.out_proj[1].register_forward_pre_hook(lambda m, args: seen.__setitem__("z", args[0]))]
    plain_run(model, CORRUPT, pre=[(a.attn_norm[1], lambda x: x + d_emb)])
    hs[0].remove()
    d_head = head_write(a, 2, 1, seen["z"]) - head_write(a, 2, 1, got["kz"])
    want2 = plain_run(model, CORRUPT, post=[(a.blocks[L - 1], lambda x: x + d_head[None])])
    logits = g.readers.index("logits")
    h21 = g.writers.index("a2.h1")
    keep1 = keep_mask(g, [(0, logits)])
    if g.per_head:  # head 1 reads the changed stream through its query, its key/value head's keys and values
        kv = 1 // a.kv_group
        into = [g.readers.index(n) for n in ("a2.h1.q", f"a2.kv{kv}.k", f"a2.kv{kv}.v")]
    else:
        into = [g.readers.index("a2")]
    keep2 = keep_mask(g, [(0, r) for r in into] + [(h21, logits)])
    keeps = [keep1, keep2]
    if g.per_head:
        # 3. emb → a2.h1.q and a2.h1 → logits: only head 1's query sees the changed stream; built here by
        #    recomputing its columns of the query projection from the corrupted input plus the difference.
        W = a.query_proj[1].weight
        b = a.query_proj[1].bias
        cols = slice(a.head_dim, 2 * a.head_dim)
        held = {}

        def query_from_changed_input(m, args, out):
            q = torch.nn.functional.linear(a.attn_norm[1].forward(held["x"] + d_emb), W, b)
            out = out.clone()
            out[..., cols] = q[..., cols]
            return out
        hs = [a.attn_norm[1].register_forward_pre_hook(lambda m, args: held.__setitem__("x", args[0])),
              a.query_proj[1].register_forward_hook(query_from_changed_input),
              a.out_proj[1].register_forward_pre_hook(lambda m, args: seen.__setitem__("zq", args[0]))]
        plain_run(model, CORRUPT)
        for h in hs:
            h.remove()
        d_q = head_write(a, 2, 1, seen["zq"]) - head_write(a, 2, 1, got["kz"])
        want3 = plain_run(model, CORRUPT, post=[(a.blocks[L - 1], lambda x: x + d_q[None])])
        keeps.append(keep_mask(g, [(0, g.readers.index("a2.h1.q")), (h21, logits)]))
    ms = circuit_metrics(eng, g, CLEAN, wk, keeps, TARGET, FOIL)
    assert ms[0] == pytest.approx(want1, abs=1e-4) and ms[1] == pytest.approx(want2, abs=1e-4)
    assert abs(want2 - m_corrupt) > 1e-4  # the two-edge path does something
    if g.per_head:
        assert ms[2] == pytest.approx(want3, abs=1e-4) and abs(want3 - want2) > 1e-5


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_scores_are_write_differences_times_each_readers_own_gradient(arch):
    """Gradients at a reader's input taken here: a copy of the stream fed to that sub-block's norm alone."""
    model, _ = tiny_model(arch)
    a = adapt(model)
    eng = HookEngine(model, a)
    g, scores, *_ = edge_scores(eng, CLEAN, CORRUPT, TARGET, FOIL)
    writes = {}
    for name, ids in (("c", CLEAN), ("k", CORRUPT)):
        hs = [a.blocks[0].register_forward_pre_hook(lambda m, args, name=name: writes.__setitem__(name + "emb", args[0])),
              a.mlp_write[0].register_forward_hook(
                  lambda m, args, out, name=name: writes.__setitem__(name + "m1", first(out).reshape(1, len(ids), -1)))]
        plain_run(model, ids)
        for h in hs:
            h.remove()
    leaf = {}

    def own(name):
        def hook(m, args):
            x = args[0].clone()  # joined to the graph (earlier readers' paths stay), a tensor of this reader's own
            leaf[name] = x
            return (x, *args[1:])
        return hook
    hs = [a.attn_norm[2].register_forward_pre_hook(own("a3")), a.mlp_norm[1].register_forward_pre_hook(own("m2"))]
    emb = model.get_input_embeddings().register_forward_hook(lambda m, args, out: out.detach().requires_grad_())
    hs.append(emb)
    # Per-head readers: block 2's head 2 query and key/value head 0's keys, each recomputed from a tensor of its
    # own (a copy of the attention's input) through the norm and its rows of the projection. (Block 3's queries
    # would give 0: only the last position's matters there, and its token is the same in both prompts.)
    parts = {"a2.h2.q": (a.query_proj, 2), "a2.kv0.k": (a.key_proj, 0)} if g.per_head else {}
    hs.append(a.attn_norm[1].register_forward_pre_hook(lambda m, args: leaf.__setitem__("a2in", args[0])))

    def alone(name, mods, index):
        def hook(m, args, out):
            x = leaf["a2in"].detach().requires_grad_()
            leaf[name] = x
            cols = slice(index * a.head_dim, (index + 1) * a.head_dim)
            out = out.clone()
            out[..., cols] = torch.nn.functional.linear(a.attn_norm[1].forward(x), m.weight, m.bias)[..., cols]
            return out
        return hook
    hs += [mods[1].register_forward_hook(alone(name, mods, i)) for name, (mods, i) in parts.items()]
    with torch.enable_grad():
        m = metric(model(input_ids=torch.tensor([CORRUPT])).logits)
        ga3, gm2, *g_parts = torch.autograd.grad(m, [leaf["a3"], leaf["m2"]] + [leaf[n] for n in parts])
    for h in hs:
        h.remove()
    d_emb = (writes["cemb"] - writes["kemb"]).double()
    d_m1 = (writes["cm1"] - writes["km1"]).double()
    R = g.readers.index
    gm2 = gm2.reshape(d_emb.shape).double()
    if g.per_head:
        for name, gp in zip(parts, g_parts):
            assert scores[0, R(name)] == pytest.approx(float((d_emb * gp.double()).sum()), rel=1e-4, abs=1e-7)
            assert abs(scores[0, R(name)]) > 1e-6
    else:
        assert scores[0, R("a3")] == pytest.approx(float((d_emb * ga3.double()).sum()), rel=1e-4, abs=1e-7)
    assert scores[0, R("m2")] == pytest.approx(float((d_emb * gm2).sum()), rel=1e-4, abs=1e-7)
    assert scores[g.writers.index("m1"), R("m2")] == pytest.approx(float((d_m1 * gm2).sum()), rel=1e-4, abs=1e-7)
    assert scores[g.writers.index("m2"), R("m1")] == 0  # no edge runs backwards


def test_pruning_drops_what_reaches_nothing_and_keeps_the_metric(tiny):
    g = Graph(3, 2)
    W, R = g.writers.index, g.readers.index
    # a2.h0 → m3, but m3 writes to no kept reader: dead end; a1.h1 → logits, but nothing feeds block 1's
    # attention: a1.h1 writes its corrupted value.
    edges = [(W("emb"), R("a2")), (W("a2.h0"), R("m3")), (W("emb"), R("logits")), (W("a1.h1"), R("logits"))]
    assert g.prune(edges) == [(W("emb"), R("logits"))]
    model, _ = tiny_model("llama")
    a = adapt(model)
    eng = HookEngine(model, a)
    g2, scores, m_clean, m_corrupt, wk = edge_scores(eng, CLEAN, CORRUPT, TARGET, FOIL)
    u, v, s = ranked_edges(g2, scores)
    top = list(zip(u[:12], v[:12]))
    ms = circuit_metrics(eng, g2, CLEAN, wk, [keep_mask(g2, top), keep_mask(g2, g2.prune(top))], TARGET, FOIL)
    assert ms[0] == pytest.approx(ms[1], abs=1e-5)


def grown_from_the_logits(g, u, v, s, key) -> bool:
    """Written here: each edge's reader is the logits or read by a writer taken before it, and it has the largest
    key among the edges whose readers were open then."""
    open_readers = {len(g.readers) - 1}
    left = set(range(len(u)))
    for i in range(len(u)):
        if v[i] not in open_readers:
            return False
        best = max(key(s[j]) for j in left if v[j] in open_readers)
        if key(s[i]) < best - 1e-12:
            return False
        left.discard(i)
        open_readers.update(g.writer_readers[u[i]])
    return True


def test_the_greedy_order_grows_a_circuit_from_the_logits():
    g = Graph(2, 1)  # writers emb, a1.h0, m1, a2.h0, m2; readers a1, m1, a2, m2, logits
    W, R = g.writers.index, g.readers.index
    u, v = np.nonzero(g.valid)
    score = {(W("emb"), R("a1")): 9.0, (W("m2"), R("logits")): 1.0, (W("a2.h0"), R("logits")): 3.0,
             (W("emb"), R("a2")): 2.0, (W("m1"), R("a2")): 5.0, (W("emb"), R("logits")): 0.5}
    s = np.array([score.get((int(a), int(b)), 0.0) for a, b in zip(u, v)])
    order = g.greedy_order(s)
    named = [(g.writers[u[i]], g.readers[v[i]]) for i in order[:5]]
    # emb → a1 scores highest but is taken only once a1 matters, which needs a1.h0 taken: it never is here.
    assert named == [("a2.h0", "logits"), ("m1", "a2"), ("emb", "a2"), ("m2", "logits"), ("emb", "logits")]
    assert sorted(order.tolist()) == list(range(len(u)))  # every edge, once
    assert grown_from_the_logits(g, u[order], v[order], s[order], lambda x: x)


def test_backend_result(tmp_path):
    b = local_backend(load_model("tiny-llama"), None)
    r = b.circuit("hello there, the end", "jello where, the fnd", CircuitOptions("e", "f", 10))
    E = len(r.edge_score)
    assert E == int(Graph(3, 4, 2).valid.sum())  # per-head q, k, v readers: tiny llama has 2 key/value heads
    g = Graph(3, 4, 2)
    assert grown_from_the_logits(g, r.edge_from, r.edge_to, r.edge_score, lambda s: s)  # by default: by score
    by_size = b.circuit("hello there, the end", "jello where, the fnd", CircuitOptions("e", "f", 10, rank="size"))
    assert grown_from_the_logits(g, by_size.edge_from, by_size.edge_to, by_size.edge_score, np.abs)
    assert sorted(by_size.edge_score) == sorted(r.edge_score)  # the same scores, ranked another way
    assert r.curve_edges[-1] == E and r.curve_faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
    assert r.faithfulness == pytest.approx((r.metric_circuit - r.metric_corrupt) / (r.metric_clean - r.metric_corrupt))
    i = list(r.curve_edges).index(8)
    over = [n for n, f in zip(r.curve_edges, r.curve_faithfulness) if f >= 0.8]
    assert r.edges_80 == over[0]
    assert len(r.kept) <= 10 and all(r.edge_to[k] for k in range(1))
    again = b.circuit("hello there, the end", "jello where, the fnd", CircuitOptions("e", "f", 8))
    assert again.metric_circuit == pytest.approx(r.curve_metric[i], abs=1e-6)
    with pytest.raises(LensError, match="whole number"):
        CircuitOptions("e", "f", -1).check()


def test_cli_json_equals_the_backend():
    out = lens_command("circuit", "--model", "tiny-llama", "--clean-prompt", "hello there", "--corrupt-prompt",
                       "jello where", "--target", "e", "--foil", "f", "--edges", "12", "--json", "--no-cache")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = local_backend(load_model("tiny-llama"), None).circuit("hello there", "jello where",
                                                                 CircuitOptions("e", "f", 12))
    assert got["kept"] == [[u, v, pytest.approx(s)] for u, v, s in want.kept]
    assert got["faithfulness"] == pytest.approx(want.faithfulness, abs=1e-6)
    np.testing.assert_allclose(got["curve_faithfulness"], want.curve_faithfulness, atol=1e-6)


def test_integrated_gradients_average_the_gradient_between_the_two_embeddings():
    """EAP-IG with 2 steps: the gradient at block 3's attention input averaged over embeddings a quarter and three
    quarters of the way from the corrupted to the clean ones, each run here on inputs_embeds."""
    model, _ = tiny_model("llama")
    a = adapt(model)
    eng = HookEngine(model, a)
    g, scores, *_ = edge_scores(eng, CLEAN, CORRUPT, TARGET, FOIL, ig_steps=2)
    emb = model.get_input_embeddings()
    ec, ek = emb(torch.tensor([CLEAN])).detach(), emb(torch.tensor([CORRUPT])).detach()
    grads = []
    for alpha in (0.25, 0.75):
        kept = {}

        def own(m, args):
            kept["x"] = args[0].clone()  # block 3's attention alone reads this copy
            return (kept["x"], *args[1:])
        h = a.attn_norm[2].register_forward_pre_hook(own)
        with torch.enable_grad():
            m = metric(model(inputs_embeds=(ek + alpha * (ec - ek)).requires_grad_()).logits)
            grads.append(torch.autograd.grad(m, [kept["x"]])[0])
        h.remove()
    want = float(((ec - ek).double() * (sum(grads) / 2).double()).sum())
    # Block 3's attention reads its input through every head's query and every key/value head's keys and values:
    # by the chain rule their gradients add up to the gradient at that input.
    a3 = g.attn_readers[3]
    assert len(a3) == 4 + 2 + 2
    assert abs(want) > 1e-3
    assert scores[0, a3].sum() == pytest.approx(want, rel=1e-4, abs=1e-7)
    plain = edge_scores(eng, CLEAN, CORRUPT, TARGET, FOIL)[1]
    assert abs(plain[0, a3].sum() - scores[0, a3].sum()) > 1e-4  # not the plain gradient
