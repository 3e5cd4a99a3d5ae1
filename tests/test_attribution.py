"""Who writes the answer, checked against plain computations written here: direct logit attribution against the HF
model's own logits and a per-head decomposition with this file's own hooks and norm formulas; attention knockout
against runs masked by hand; the sub-layer lens against writes decoded by hand; the engine's attention-mask site."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens.attribution.knockout import knocked_probs
from lens.attribution.options import DLAOptions, KnockoutOptions, SublayerOptions, sources_from_text
from lens.cli import main
from lens.engine.hooks import HookEngine
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import load_model
from shown import as_shown

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

def parts_of(lm):
    """(blocks, attention module, output projection, final norm, norm kind, eps) named here per architecture."""
    m, cfg = lm.model, lm.model.config
    if cfg.model_type == "gpt2":
        return (m.transformer.h, lambda b: b.attn, lambda b: b.attn.c_proj, lambda b: b.mlp, m.transformer.ln_f,
                "layer", cfg.layer_norm_epsilon)
    return (m.model.layers, lambda b: b.self_attn, lambda b: b.self_attn.o_proj, lambda b: b.mlp, m.model.norm, "rms",
            cfg.rms_norm_eps)


def head_weights(proj, h, hd):
    """[hd, d]: head h's block of the output projection (nn.Linear: weight [d, H·hd]; GPT-2's Conv1D: [H·hd, d])."""
    if isinstance(proj, torch.nn.Linear):
        return proj.weight[:, h * hd:(h + 1) * hd].T.double()
    return proj.weight[h * hd:(h + 1) * hd].double()


def through_frozen_norm(x, final, norm, kind, eps):
    """``x`` [n, d] through the final norm with the scale of ``final`` [d] (the residual it normalises), no bias."""
    final = final.double()
    if kind == "layer":
        scale = 1 / torch.sqrt(((final - final.mean()) ** 2).mean() + eps)
        x = x - x.mean(-1, keepdim=True)
    else:
        scale = 1 / torch.sqrt((final ** 2).mean() + eps)
    return x * scale * norm.weight.double()


@torch.no_grad()
def hand_run(lm, ids, position):
    """The HF model's logits at ``position``, each block's attention output-projection input, attention and MLP
    outputs there, and the final norm's input, with hooks written here."""
    blocks, attn, proj, mlp, norm, kind, eps = parts_of(lm)
    got = {"z": {}, "attn": {}, "mlp": {}}
    hs = []
    for i, b in enumerate(blocks):
        hs.append(proj(b).register_forward_pre_hook(lambda m, a, i=i: got["z"].__setitem__(i, a[0][0].clone())))
        hs.append(attn(b).register_forward_hook(lambda m, a, o, i=i: got["attn"].__setitem__(i, o[0][0].clone())))
        hs.append(mlp(b).register_forward_hook(lambda m, a, o, i=i: got["mlp"].__setitem__(i, o[0].clone())))
    hs.append(norm.register_forward_pre_hook(lambda m, a: got.__setitem__("final", a[0][0].clone())))
    try:
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].double()
    finally:
        for h in hs:
            h.remove()
    return logits, got, (norm, kind, eps)


def token(lm, text):
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    return ids[0]


# ---------------------------------------------------------------- direct logit attribution

@pytest.mark.parametrize("name, target, foil, position", [
    ("tiny-llama", "t", "a", None), ("tiny-gpt2", "e", None, -3), ("tiny-qwen2", "m", "c", 4),
    ("smollm2-135m", " Mary", " John", None)])
def test_dla_parts_add_up_to_the_models_logit_difference(models, name, target, foil, position):
    lm, b = models(name)
    text = ("When Mary and John went to the store, John gave a drink to" if name.startswith("smollm2") else PROMPT)
    r = b.dla(text, DLAOptions(target=target, foil=foil, position=position))
    ids = b.token_ids(text)
    p = len(ids) - 1 if position is None else position % len(ids)
    logits, got, (norm, kind, eps) = hand_run(lm, ids, p)
    t, f = token(lm, target), (None if foil is None else token(lm, foil))
    want = float(logits[p, t] - (0 if f is None else logits[p, f]))
    assert r.position == p and r.target_id == t and r.foil_id == f
    assert abs(r.logit_diff - want) < 1e-4 * max(1, abs(want))
    parts = r.embed + r.attn.sum() + r.mlp.sum() + r.bias
    assert abs(parts - want) < 1e-4 * max(1, abs(want)) and abs(r.total - parts) < 1e-9
    # Each attention block is its heads plus its output projection's bias.
    np.testing.assert_allclose(r.heads.sum(1) + r.attn_bias, r.attn, atol=1e-5)
    assert r.metric_name == ("logit(target)" if foil is None else "logit(target) − logit(foil)")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-qwen2", "smollm2-135m"])
def test_each_heads_part_is_its_slice_times_its_block_of_W_O_through_the_frozen_norm(models, name):
    lm, b = models(name)
    text = "The capital of France is" if name.startswith("smollm2") else PROMPT
    foil = " Rome" if name.startswith("smollm2") else "a"
    r = b.dla(text, DLAOptions(foil=foil))  # the target: the model's top-1
    ids = b.token_ids(text)
    p = len(ids) - 1
    logits, got, (norm, kind, eps) = hand_run(lm, ids, p)
    assert r.target_id == int(logits[p].argmax())
    W_U = lm.model.get_output_embeddings().weight.double()
    direction = W_U[r.target_id] - W_U[token(lm, foil)]
    blocks, _, proj, _, _, _, _ = parts_of(lm)
    H = r.heads.shape[1]
    hd = got["z"][0].shape[-1] // H
    for i, block in enumerate(blocks):
        z = got["z"][i][p].double()
        writes = torch.stack([z[h * hd:(h + 1) * hd] @ head_weights(proj(block), h, hd) for h in range(H)])
        want = through_frozen_norm(writes, got["final"][p], norm, kind, eps) @ direction
        np.testing.assert_allclose(r.heads[i], want.numpy(), rtol=1e-4, atol=1e-5)
        # The tokens the head raises most: its write decoded over the whole vocabulary.
        full = through_frozen_norm(writes, got["final"][p], norm, kind, eps) @ W_U.T
        best = int(np.argmax(r.heads[i]))
        assert r.head_top_tokens[i][best][:3] == [as_shown(lm.tokenizer, j) for j in full[best].topk(3).indices]
        assert r.head_bottom_tokens[i][best][:3] == [as_shown(lm.tokenizer, j)
                                                     for j in full[best].topk(3, largest=False).indices]


def test_dla_heads_attention_row_is_the_models_attention(models):
    lm, b = models("tiny-llama")
    r = b.dla(PROMPT, DLAOptions(position=5))
    out = lm.model(input_ids=torch.tensor([b.token_ids(PROMPT)]), output_attentions=True)
    for i, a in enumerate(out.attentions):
        np.testing.assert_allclose(r.head_attention[i], a[0, :, 5].detach().numpy(), atol=1e-6)


def test_dla_refuses_bad_input(models):
    _, b = models("tiny-llama")
    for options, message in [(DLAOptions(target="ab"), "not one"), (DLAOptions(target="t", foil="t"), "same token"),
                             (DLAOptions(position=99), "outside the prompt"), (DLAOptions(position="x"), "whole number"),
                             (DLAOptions(top_k=0), "top-k")]:
        with pytest.raises(LensError, match=message):
            b.dla(PROMPT, options)


# ---------------------------------------------------------------- the sub-layer lens

@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_sublayer_lens_is_each_write_decoded_by_hand(models, name):
    lm, b = models(name)
    r = b.sublayer_lens(PROMPT, SublayerOptions(target="t"))
    ids = b.token_ids(PROMPT)
    logits, got, (norm, kind, eps) = hand_run(lm, ids, None)
    W_U = lm.model.get_output_embeddings().weight.double()
    t = token(lm, "t")
    assert r.positions == list(range(len(ids))) and r.target_id == t
    for block in ("attn", "mlp"):
        for i in range(len(r.layers)):
            for p in r.positions:
                z = through_frozen_norm(got[block][i][p].double()[None], got["final"][p], norm, kind, eps) @ W_U.T
                assert abs(getattr(r, f"{block}_target")[i, p] - float(z[0, t])) < 1e-4
                assert abs(getattr(r, f"{block}_top_values")[i, p, 0] - float(z[0].max())) < 1e-3
                assert abs(getattr(r, f"{block}_bottom_values")[i, p, 0] - float(z[0].min())) < 1e-3
    # At the last position, the target's cells are direct logit attribution's attention and MLP parts.
    d = b.dla(PROMPT, DLAOptions(target="t"))
    np.testing.assert_allclose(r.attn_target[:, -1], d.attn - d.attn_bias, atol=1e-6)
    np.testing.assert_allclose(r.mlp_target[:, -1], d.mlp, atol=1e-6)


def test_sublayer_lens_default_target_is_the_top1(models):
    lm, b = models("tiny-qwen2")
    r = b.sublayer_lens(PROMPT)
    logits = lm.model(input_ids=torch.tensor([b.token_ids(PROMPT)])).logits[0, -1]
    assert r.target_id == int(logits.argmax())


# ---------------------------------------------------------------- attention knockout

def test_an_unchanged_mask_is_the_plain_run_bit_for_bit(models):
    lm, _ = models("tiny-llama")
    e = HookEngine.of(lm)
    ids = [3, 5, 7, 9, 11]
    plain = e.run(ids).logits
    same = e.run(ids, write={f"attn_mask.{l}": (lambda m, c: m) for l in (1, 2, 3)}).logits
    assert torch.equal(plain, same)
    with pytest.raises(LensError, match="written, not read"):
        e.run(ids, read={"attn_mask.1": None})


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_knockout_of_nothing_is_the_plain_run(models, name):
    lm, b = models(name)
    e = b.engine
    ids = b.token_ids(PROMPT)
    hf = torch.softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
    t = int(hf.argmax())
    rec = e.record(ids)
    plain = float(torch.softmax(e.run(ids).logits[0].double(), -1)[t])  # the engine's plain pass
    recorded = float(torch.softmax(rec.last_logits.double(), -1)[t])  # the plain pass knockout resumes from
    got = knocked_probs(e, ids, [([], (1, 3)), ([], (2, 2))], t)
    # Nothing blocked: the plain pass. Bit for bit within one batch; against the unbatched pass, to float32's
    # rounding (a batch of two rows may take another matmul kernel, as on AVX-512 CPUs).
    assert got[0] == got[1] and got[0] == pytest.approx(plain, rel=1e-6)
    got = knocked_probs(e, ids, [([], (1, 3))], t, recording=rec)
    assert got[0] == recorded
    r = b.knockout(PROMPT, KnockoutOptions(sources=(1,), window=1))
    assert r.target_id == t and r.base_prob == recorded
    assert abs(plain - float(hf[t])) < 1e-6 and abs(recorded - float(hf[t])) < 1e-6  # the model's own, to rounding


@torch.no_grad()
def hand_masked_prob(lm, ids, blocked, layers, target):
    """p(target) at the last position with the last row's ``blocked`` keys masked in ``layers`` (0-based), by hooks
    written here that replace the attention modules' masks (eager attention: an additive mask)."""
    blocks, attn, *_ = parts_of(lm)
    T = len(ids)
    hooks = []

    def hook(module, args, kwargs):
        mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)
        mask[T - 1, blocked] = torch.finfo(torch.float32).min
        return args, {**kwargs, "attention_mask": mask[None, None]}
    for i in layers:
        hooks.append(attn(blocks[i]).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        lm.model.set_attn_implementation("eager")
        z = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    finally:
        for h in hooks:
            h.remove()
    return float(torch.softmax(z, -1)[target])


@pytest.mark.parametrize("name, window, align", [("tiny-llama", 1, "centre"), ("tiny-gpt2", 2, "start"),
                                                 ("tiny-qwen2", 3, "centre")])
def test_knockout_of_everything_before_the_last_position_against_masks_by_hand(models, name, window, align):
    lm, b = models(name)
    ids = b.token_ids(PROMPT)
    T = len(ids)
    r = b.knockout(PROMPT, KnockoutOptions(target="t", sources=tuple(range(T - 1)), window=window, align=align))
    assert r.rows[0].startswith("sources") and r.row_positions[0] == list(range(T - 1))
    assert r.rows[1].startswith("last token") and len(r.rows) == 2  # no other tokens are left
    L = len(r.layers)
    for j in range(L):
        lo, hi = r.windows[j]
        assert (lo, hi) == ((max(1, j + 1 - (window - 1) // 2), min(L, j + 1 + window // 2)) if align == "centre"
                            else (j + 1, min(L, j + window)))
        want = hand_masked_prob(lm, ids, list(range(T - 1)), range(lo - 1, hi), token(lm, "t"))
        assert abs(r.prob[0, j] - want) < 1e-5, (j, r.prob[0, j], want)
        want_last = hand_masked_prob(lm, ids, [T - 1], range(lo - 1, hi), token(lm, "t"))
        assert abs(r.prob[1, j] - want_last) < 1e-5
    np.testing.assert_allclose(r.change, (r.prob - r.base_prob) / r.base_prob)


def test_knockout_rows_and_bad_input(models):
    _, b = models("tiny-llama")
    T = len(b.token_ids(PROMPT))
    r = b.knockout(PROMPT, KnockoutOptions(window=2))
    assert r.rows == [f"{p}·{t}".replace(" ", "␣") for p, t in enumerate(b.tokenize(PROMPT))]
    r = b.knockout(PROMPT, KnockoutOptions(sources=(2, -3)))
    assert r.sources == [2, T - 3] and r.row_positions[2] == [p for p in range(T - 1) if p not in (2, T - 3)]
    assert sources_from_text("2-4, 7") == (2, 3, 4, 7) and sources_from_text(" ") is None
    for options, message in [(KnockoutOptions(sources=(99,)), "outside the prompt"),
                             (KnockoutOptions(window=0), "window"), (KnockoutOptions(align="end"), "aligned")]:
        with pytest.raises(LensError, match=message):
            b.knockout(PROMPT, options)
    with pytest.raises(LensError, match="ranges"):
        sources_from_text("2,x")


# ---------------------------------------------------------------- the commands

def test_commands_print_their_json_and_refuse_bad_input(capsys):
    code = main(["dla", "--model", "tiny-llama", "--prompt", PROMPT, "--target", "t", "--foil", "a", "--json",
                 "--no-cache"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["heads"]) == len(out["attn"]) == len(out["mlp"]) == 3 and len(out["heads"][0]) == 4
    assert abs(out["embed"] + sum(out["attn"]) + sum(out["mlp"]) + out["bias"] - out["logit_diff"]) < 1e-4
    assert main(["knockout", "--model", "tiny-llama", "--prompt", PROMPT, "--sources", "1,2", "--window", "2",
                 "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sources"] == [1, 2] and len(out["prob"][0]) == 3
    assert main(["sublayer-lens", "--model", "tiny-gpt2", "--prompt", PROMPT, "--json", "--no-cache"]) == 0
    assert len(json.loads(capsys.readouterr().out)["attn_target"]) == 3
    for args, message in [(["dla", "--target", "ab"], "not one"), (["knockout", "--sources", "x"], "ranges"),
                          (["dla", "--position", "99"], "outside")]:
        assert main([*args, "--model", "tiny-llama", "--prompt", PROMPT, "--no-cache"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
