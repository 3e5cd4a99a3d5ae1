"""The engine (lens/engine/): named sites read, written and differentiated on tiny models of every decoder
architecture, each checked against a computation that does not go through the engine (Hugging Face's own
hidden states, inputs_embeds, autograd on inputs_embeds); resumed runs against whole runs; the plain
patching path against the fast one; the nnsight engine against the hook engine; a stub engine behind
the backend."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lens.engine.base import Capabilities, Read
from lens.engine.hooks import HookEngine
from lens.engine.sites import parse, resid_rows
from lens.errors import LensError
from lens.interventions.edits import add_vector, set_vector
from lens.model.registry import TINY_ARCHS

IDS = [104, 101, 108, 108, 111, 32, 116, 104, 101, 114, 101, 44]


def _hf_hidden(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_residual_sites_equal_the_models_own_hidden_states(tiny, arch):
    model, _, adapter = tiny(arch)
    eng = HookEngine(model, adapter)
    L = adapter.n_layers
    out = eng.run(IDS, read={s: None for s in resid_rows(L)}, logits="all")
    hf = _hf_hidden(model, IDS)
    # HF's last hidden state is after the final norm; every earlier one is a block's input.
    for r in range(L):
        torch.testing.assert_close(out.reads[resid_rows(L)[r]][0], hf.hidden_states[r][0].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits[0], hf.logits[0].float(), atol=1e-5, rtol=0)
    # resid_post.l and resid_pre.(l+1) are one place; embed names resid_pre.1.
    both = eng.run(IDS, read={"resid_post.1": None, "resid_pre.2": None, "embed": None})
    assert torch.equal(both.reads["resid_post.1"], both.reads["resid_pre.2"])
    assert torch.equal(both.reads["resid_pre.1"], out.reads["resid_pre.1"])


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_an_edit_at_the_embeddings_equals_running_on_edited_inputs_embeds(tiny, arch):
    model, _, adapter = tiny(arch)
    eng = HookEngine(model, adapter)
    v = torch.randn(adapter.d_model, generator=torch.Generator().manual_seed(0))
    edited = eng.run(IDS, write={"resid_pre.1": add_vector(v, 0.5, positions=slice(3, None))}, logits="all").logits
    with torch.no_grad():
        emb = model.get_input_embeddings()(torch.tensor([IDS]))
        emb[:, 3:] += 0.5 * v  # (Gemma's √d scale is part of its embedding module: no special case)
        ref = model(inputs_embeds=emb).logits
    torch.testing.assert_close(edited[0], ref[0].float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2", "opt", "phi"])
def test_gradients_at_a_site_equal_autograd_on_inputs_embeds(tiny, arch):
    model, _, adapter = tiny(arch)
    eng = HookEngine(model, adapter)
    target = 101

    def metric(z):
        return torch.log_softmax(z[0], -1)[target]
    out = eng.run(IDS, read={"resid_pre.1": None, "resid_post.2": None}, grad_of=metric)
    emb = model.get_input_embeddings()(torch.tensor([IDS])).detach().requires_grad_()
    with torch.enable_grad():
        m = torch.log_softmax(model(inputs_embeds=emb).logits[0, -1].float(), -1)[target]
        (g,) = torch.autograd.grad(m, [emb])
    torch.testing.assert_close(out.grads["resid_pre.1"][0], g[0], atol=1e-5, rtol=1e-4)
    assert out.metric == pytest.approx(float(m.detach()), abs=1e-5)
    # The gradient later in the stream is another tensor, not a copy of the first.
    assert out.grads["resid_post.2"].shape == out.grads["resid_pre.1"].shape
    assert not torch.equal(out.grads["resid_post.2"], out.grads["resid_pre.1"])
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients were accumulated


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "gemma2"])
def test_resumed_runs_equal_whole_runs(tiny, arch):
    model, _, adapter = tiny(arch)
    eng = HookEngine(model, adapter)
    rec = eng.record(IDS)
    torch.testing.assert_close(rec.residual[0], eng.run(IDS, read={"embed": None}).reads["resid_pre.1"][0])
    vec = rec.residual[1, 2] * 3
    for site in ("resid_pre.2", "attn_out.2", "mlp_out.3"):
        write = {site: set_vector(2, vec)}
        whole = eng.run([IDS] * 2, write=write).logits
        resumed = eng.resume(rec, 2, write)
        torch.testing.assert_close(resumed, whole, atol=2e-5, rtol=0)


def test_a_resumed_batch_shared_by_recordings_starts_each_share_from_its_own(tiny):
    """Two recordings of the same tokens, each made with its own write at the embeddings: rows 0–1 of a resumed
    batch continue the first, rows 2–3 the second, as whole runs with both writes do."""
    model, _, adapter = tiny("llama")
    eng = HookEngine(model, adapter)
    noise = [torch.randn(adapter.d_model, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    at_emb = lambda vs: lambda x, call: x + torch.stack(vs)[:, None, :].to(x.dtype)  # noqa: E731
    recs = [eng.record(IDS, write={"resid_pre.1": at_emb([v])}) for v in noise]
    restore = set_vector(1, recs[0].residual[2, 1] * 2)
    whole = eng.run([IDS] * 4, write={"resid_pre.1": at_emb([noise[0], noise[0], noise[1], noise[1]]),
                                      "resid_pre.3": restore}).logits
    torch.testing.assert_close(eng.resume(recs, 4, {"resid_pre.3": restore}), whole, atol=2e-5, rtol=0)
    with pytest.raises(LensError, match="equally"):
        eng.resume(recs, 3, {"resid_pre.3": restore})
    with pytest.raises(LensError, match="same tokens"):
        eng.resume([recs[0], eng.record(IDS[:-1])], 2, {"resid_pre.3": restore})


def test_site_names_are_checked(tiny):
    model, _, adapter = tiny("llama")
    eng = HookEngine(model, adapter)
    with pytest.raises(LensError, match="unknown site"):
        eng.run(IDS, read={"resid_mid.1": None})
    with pytest.raises(LensError, match="names no block"):
        eng.run(IDS, read={"resid_pre.4": None})
    with pytest.raises(LensError, match="read, not written"):
        eng.run(IDS, write={"attn_pattern.1": lambda x, c: x})
    assert parse("embed", 3).name == "resid_pre.1"
    gpt_neox = tiny("gpt_neox")
    with pytest.raises(LensError, match="no head out site"):
        HookEngine(gpt_neox[0], gpt_neox[2]).run(IDS, read={"head_out.1": None})


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_head_and_neuron_sites_are_the_projections_inputs(tiny, arch):
    model, _, adapter = tiny(arch)
    eng = HookEngine(model, adapter)
    out = eng.run(IDS, read={"head_out.2": None, "attn_out.2": None, "mlp_act.1": None, "mlp_out.1": None})
    W, b = adapter.output_projection(1)  # [H, hd, d]
    z = out.reads["head_out.2"][0].reshape(len(IDS), adapter.n_heads, adapter.head_dim)
    by_hand = torch.einsum("thk,hkd->td", z, W) + (0 if b is None else b)
    torch.testing.assert_close(by_hand, out.reads["attn_out.2"][0], atol=1e-5, rtol=0)
    down = adapter.down_projection(0)  # [N, d]
    bias = getattr(adapter.down_proj[0], "bias", None)
    mlp = out.reads["mlp_act.1"][0] @ down + (0 if bias is None else bias.detach())
    torch.testing.assert_close(mlp, out.reads["mlp_out.1"][0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "opt"])
def test_query_key_value_sites_are_the_projections_outputs(tiny, arch):
    """``q_proj.l``, ``k_proj.l``, ``v_proj.l``: each projection of the attention's normed input (taken here by hand),
    and a write there reaches the output (zeroing the values zeroes the attention's write, bias aside)."""
    model, _, adapter = tiny(arch)
    eng = HookEngine(model, adapter)
    out = eng.run(IDS, read={"attn_in.2": None, "q_proj.2": None, "k_proj.2": None, "v_proj.2": None})
    normed = adapter.attn_norm[1].forward(out.reads["attn_in.2"])
    for site, mod, width in (("q_proj.2", adapter.query_proj[1], adapter.n_heads),
                             ("k_proj.2", adapter.key_proj[1], adapter.n_kv_heads),
                             ("v_proj.2", adapter.separate_value_proj[1], adapter.n_kv_heads)):
        with torch.no_grad():
            by_hand = torch.nn.functional.linear(normed, mod.weight, mod.bias)
        assert out.reads[site].shape == (1, len(IDS), width * adapter.head_dim)
        torch.testing.assert_close(out.reads[site], by_hand, atol=1e-5, rtol=0)
    zero = eng.run(IDS, read={"attn_out.2": None}, write={"v_proj.2": lambda x, call: torch.zeros_like(x)})
    _, b = adapter.output_projection(1)
    want = torch.zeros_like(zero.reads["attn_out.2"]) + (0 if b is None else b)
    torch.testing.assert_close(zero.reads["attn_out.2"], want, atol=1e-5, rtol=0)


def test_fused_projections_have_no_query_key_value_sites(tiny):
    model, _, adapter = tiny("gpt2")
    with pytest.raises(LensError, match="separate projections"):
        HookEngine(model, adapter).run(IDS, read={"q_proj.1": None})


class PlainEngine(HookEngine):
    """The hook engine with resumed runs turned off: every patched run is a whole pass."""

    def __init__(self, model, adapter):
        super().__init__(model, adapter)
        self.capabilities = replace(self.capabilities, resumes=False)


@pytest.mark.parametrize("arch,site", [("llama", "resid"), ("llama", "attn"), ("llama", "head"), ("gpt2", "resid"),
                                       ("gpt2", "mlp"), ("opt", "head")])
def test_the_plain_patching_path_equals_the_fast_one(tiny, arch, site):
    from lens.interventions.patching import patch_grid, run_for_patching

    model, tok, adapter = tiny(arch)
    clean = tok("the cat sat on the mat")["input_ids"]
    corrupt = tok("the dog sat in the box")["input_ids"]
    assert len(clean) == len(corrupt)
    grids = []
    for eng in (HookEngine(model, adapter), PlainEngine(model, adapter)):
        c, k = run_for_patching(eng, clean, site), run_for_patching(eng, corrupt, None)
        grids.append(patch_grid(eng, c, k, target=clean[-1], foil=corrupt[-1], site=site))
    np.testing.assert_allclose(grids[0][0], grids[1][0], atol=1e-4)
    assert grids[0][1:] == pytest.approx(grids[1][1:], abs=1e-5)


class ReadOnlyEngine(HookEngine):
    """A second engine, as a remote one would be: reads only (no weights here, no edits, no generation)."""

    def __init__(self, model, adapter):
        super().__init__(model, adapter)
        self.capabilities = Capabilities(where="on the stub", weights_here=False, writes=False, gradients=False,
                                         resumes=False, generates=False, reduces_lens=True)


def test_a_second_engine_serves_the_backend_protocol_and_refuses_what_it_cannot_do():
    from lens.backend import Backend
    from lens.engine_backend import EngineBackend, local_backend
    from lens.model.loading import load_model
    from lens.options import LensOptions, PatchOptions

    lm = load_model("tiny-llama")
    stub = EngineBackend(lm, ReadOnlyEngine(lm.model, lm.adapter))
    plain = local_backend(lm)
    assert isinstance(stub, Backend) and isinstance(plain, Backend)
    prompt = "hello there, the end"
    a, b = plain.logit_lens(prompt, LensOptions(top_k=3)), stub.logit_lens(prompt, LensOptions(top_k=3))
    np.testing.assert_array_equal(a.top_ids, b.top_ids)  # the stub's lens is reduced where it runs
    np.testing.assert_allclose(a.kl_to_final, b.kl_to_final, atol=2e-5)
    a, b = (x.logit_lens(prompt, LensOptions(top_k=3, positions=(1, 4), alternatives=3)) for x in (plain, stub))
    np.testing.assert_array_equal(a.alternative_ids, b.alternative_ids)
    assert a.alternative_tokens == b.alternative_tokens
    np.testing.assert_array_equal(a.alternative_rank, b.alternative_rank)
    np.testing.assert_allclose(a.alternative_prob, b.alternative_prob, atol=2e-5)
    np.testing.assert_allclose(plain.rollout(prompt).rollout, stub.rollout(prompt).rollout, atol=1e-6)
    for call in (lambda: stub.generate(prompt), lambda: stub.route_graph(prompt),
                 lambda: stub.patch(prompt, prompt, PatchOptions(target=" t")),
                 lambda: stub.logit_lens(prompt, LensOptions(lens="linear"))):
        with pytest.raises(LensError, match="on the stub"):
            call()


def test_nnsight_engine_reads_and_writes_as_the_hook_engine(tiny):
    from lens.engine.nnsight import NnsightEngine
    from lens.model.loading import load_model

    for name in ("tiny-llama", "tiny-gpt2"):
        lm = load_model(name)
        hooks, nn = HookEngine.of(lm), NnsightEngine(lm)
        L = lm.n_layers
        read = {s: None for s in resid_rows(L)} | {"attn_out.1": None, "mlp_act.2": None, "head_out.3": None,
                                                  "attn_pattern.2": Read(map=lambda w: w.mean(1)), "value.1": None}
        v = torch.ones(lm.adapter.d_model)
        write = {"resid_pre.2": add_vector(v, 0.3)}
        x, y = hooks.run(IDS, read=read, write=write), nn.run(IDS, read=read, write=write)
        assert x.reads.keys() == y.reads.keys()
        for k in x.reads:
            torch.testing.assert_close(x.reads[k], y.reads[k], atol=1e-5, rtol=0, msg=f"{name} {k}")
        torch.testing.assert_close(x.logits, y.logits, atol=1e-5, rtol=0)
