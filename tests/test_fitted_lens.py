"""Fitted lenses (lens/fitted/): the linear shortcut against a direct least-squares solution, lenses read
through their maps against a direct computation, the store under faults, tuned-lens checkpoints written
by a small reference script, training, and the backend and CLI paths."""
from __future__ import annotations

from lens.options import FitOptions
import json

import numpy as np
import pytest
import torch

from lens.errors import LensError
from lens.fitted.affine import AffineLens, content_id, lens_path, load_lens, save_lens
from lens.fitted.corpus import chunk_corpus, read_jsonl, read_seeds, read_text_file, SHIPPED_FILE
from lens.fitted.linear import fit_linear
from lens.fitted.tuned import read_tuned_checkpoint, train_tuned
from lens.engine.hooks import HookEngine
from lens.engine.trace import CaptureSpec, capture


TEXTS = ["hello there, the end; see me here. " * 3, "the quick brown fox jumps over the lazy dog; " * 4,
         "one two three four five six seven eight nine ten " * 3, "abc def ghi jkl mno " * 6]
ARCHS = ["llama", "gpt2", "gemma2", "opt", "gpt_neox", "qwen2"]


def _corpus(tok, chunk=48):
    return chunk_corpus(tok, TEXTS, "test", chunk=chunk)


def _rows_one_by_one(model, adapter, corpus):
    """Every chunk's residual stream through the ordinary batch-1 capture (another code path)."""
    out = [capture(HookEngine(model, adapter), c, CaptureSpec(residual=True)).residual for c in corpus.chunks]
    return torch.cat(out, 1).double()  # [L+1, N, d]


@pytest.mark.parametrize("arch", ARCHS)
def test_linear_fit_equals_lstsq(tiny, arch):
    model, tok, adapter = tiny(arch)
    corpus = _corpus(tok)
    ridge = 1e-3
    lens = fit_linear(HookEngine(model, adapter), corpus, ridge=ridge)
    rows = _rows_one_by_one(model, adapter, corpus)
    L, N, d = rows.shape[0] - 1, rows.shape[1], rows.shape[2]
    y = rows[-1]
    w = (d ** 0.5) / y.norm(dim=-1, keepdim=True)  # each token weighted by 1/‖h_L‖² (as a square root)
    for r in range(L):
        X = torch.cat([rows[r], torch.ones(N, 1, dtype=torch.float64)], 1) * w
        Y = y * w
        lam = ridge * (X[:, :d] ** 2).sum() / d
        # Ridge as least squares on extra rows √λ·I (no row for the bias column).
        pen = torch.cat([torch.eye(d, dtype=torch.float64), torch.zeros(d, 1, dtype=torch.float64)], 1) * lam.sqrt()
        sol = torch.linalg.lstsq(torch.cat([X, pen]), torch.cat([Y, torch.zeros(d, d, dtype=torch.float64)])).solution
        scale = sol.abs().max()
        assert torch.allclose(lens.weight[r].double(), sol[:d], atol=2e-4 * scale), (arch, r)
        assert torch.allclose(lens.bias[r].double(), sol[d], atol=2e-4 * scale), (arch, r)


def _direct_lens(adapter, residual, lens):
    """softmax(W_U norm_f(h M + b)) for every row and position, in float64."""
    L = residual.shape[0] - 1
    out = []
    for r in range(L + 1):
        h = residual[r].double()
        if lens is not None and r < L:
            h = h @ lens.weight[r].double() + lens.bias[r].double()
        z = adapter.readout(h.float()).double()
        out.append(torch.log_softmax(z, -1))
    return torch.stack(out)  # [R, T, V] log-probabilities


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2"])
def test_lens_through_fitted_maps_equals_direct(tiny, tiny_trace, arch):
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    model, tok, adapter = tiny(arch)
    lens = fit_linear(HookEngine(model, adapter), _corpus(tok))
    trace, tok = tiny_trace(arch)
    res = logit_lens(trace, tok, LensOptions(top_k=3), fitted=lens)
    logp = _direct_lens(adapter, trace.residual, lens)
    p = logp.exp()
    ent = -(p * logp).sum(-1)
    kl = (p[-1:] * (logp[-1:] - logp)).sum(-1)
    assert res.lens == "linear"
    np.testing.assert_allclose(res.entropy, ent.numpy(), atol=2e-4)
    np.testing.assert_allclose(res.kl_to_final, kl.clamp_min(0).numpy(), atol=2e-4)
    np.testing.assert_allclose(res.top_probs[..., 0], p.max(-1).values.numpy(), atol=2e-5)
    # The last row is the model's own output, untouched by any map.
    logits = model(input_ids=torch.tensor([trace.token_ids])).logits[0]
    assert (res.top_ids[-1, :, 0] == logits.argmax(-1).numpy()).all()
    assert np.abs(res.kl_to_final[-1]).max() < 1e-5


def test_saturation_rows_against_a_loop():
    from lens.analysis.early_exit import exit_fractions, saturation_rows

    rng = np.random.default_rng(0)
    for _ in range(200):
        R, P = rng.integers(1, 8), rng.integers(1, 6)
        top1 = rng.integers(0, 3, size=(R, P))
        final = rng.integers(0, 3, size=P)
        got = saturation_rows(top1, final)
        for p in range(P):
            want = None
            for r in range(R):
                if all(top1[q, p] == final[p] for q in range(r, R)):
                    want = r
                    break
            assert got[p] == want
        frac = exit_fractions(got, R)
        for r in range(R):
            assert frac[r] == pytest.approx(sum(1 for e in got if e is not None and e <= r) / P)


def test_lens_result_carries_exit_rows(tiny_trace):
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    trace, tok = tiny_trace("llama")
    res = logit_lens(trace, tok, LensOptions())
    top1, final = res.top_ids[:, :, 0], trace.output_top1.numpy()
    for p, e in enumerate(res.exit_layer):
        assert e is not None  # the last row is the model's output
        assert (top1[e:, p] == final[p]).all()
        assert e == 0 or top1[e - 1, p] != final[p]


def test_store_round_trip_and_faults(tmp_path):
    L, d = 3, 8
    w, b = torch.randn(L, d, d), torch.randn(L, d)
    lens = AffineLens("linear", w, b, {"id": content_id(w, b), "corpus": "x"})
    path = lens_path(tmp_path, "fp", "linear", "corpus")
    save_lens(path, lens)
    back = load_lens(path, L, d)
    assert back is not None and torch.equal(back.weight, w) and back.meta["corpus"] == "x"
    assert load_lens(path, L + 1, d) is None  # another model's shape
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    assert load_lens(path, L, d) is None
    save_lens(path, AffineLens("linear", w, b, {"id": "not-its-digest"}))  # altered
    assert load_lens(path, L, d) is None
    assert load_lens(tmp_path / "missing.safetensors", L, d) is None


def _write_reference_checkpoint(folder, L, d, seed=0, old=False):
    """What the tuned-lens package writes: config.json and a torch.save'd state dict of nn.Linear translators."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    state, weights = {}, []
    for i in range(L):
        W, b = torch.randn(d, d, generator=g) * 0.05, torch.randn(d, generator=g) * 0.05
        weights.append((W, b))
        name = (("input_translator" if i == 0 else f"layer_translators.{i - 1}") if old else str(i))
        state[f"{name}.weight"], state[f"{name}.bias"] = W, b
    if old:
        state["unembedding.weight"] = torch.zeros(3, d)
    torch.save(state, folder / "params.pt")
    (folder / "config.json").write_text(json.dumps({"base_model_name_or_path": "tiny", "d_model": d,
                                                    "num_hidden_layers": L, "bias": True,
                                                    "lens_type": "linear_tuned_lens"}))
    return weights


@pytest.mark.parametrize("old", [False, True])
def test_tuned_checkpoint_gives_the_reference_outputs(tiny, tiny_trace, tmp_path, old):
    from lens.analysis.logit_lens import logit_lens
    from lens.options import LensOptions

    model, tok, adapter = tiny("llama")
    L, d = adapter.n_layers, adapter.d_model
    weights = _write_reference_checkpoint(tmp_path / "ckpt", L, d, old=old)
    lens = read_tuned_checkpoint(tmp_path / "ckpt", L, d)
    trace, tok = tiny_trace("llama")
    res = logit_lens(trace, tok, LensOptions(top_k=1), fitted=lens)
    for r in range(L + 1):
        h = trace.residual[r]
        if r < L:  # the tuned-lens formula: h + translator(h)
            W, b = weights[r]
            h = h + torch.nn.functional.linear(h, W, b)
        p = torch.softmax(adapter.readout(h).double(), -1)
        np.testing.assert_allclose(res.top_probs[r, :, 0], p.max(-1).values.numpy(), atol=2e-5)
        assert (res.top_ids[r, :, 0] == p.argmax(-1).numpy()).all()


class NotATensor:
    """Any class: unpickling it would mean running code named by the file."""


def test_tuned_checkpoint_faults(tmp_path):
    _write_reference_checkpoint(tmp_path / "ok", 3, 8)
    with pytest.raises(LensError, match="3 layers of width 8.*4 layers"):
        read_tuned_checkpoint(tmp_path / "ok", 4, 8)
    (tmp_path / "code").mkdir()
    torch.save({"0.weight": NotATensor()}, tmp_path / "code" / "params.pt")
    with pytest.raises(LensError, match="plain tensors"):  # weights_only: a pickled object is never built
        read_tuned_checkpoint(tmp_path / "code", 3, 8)
    with pytest.raises(LensError, match="no such folder"):
        read_tuned_checkpoint(tmp_path / "nowhere", 3, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LensError, match="no params.pt"):
        read_tuned_checkpoint(tmp_path / "empty", 3, 8)


def _mean_kl(model, adapter, corpus, lens):
    rows = _rows_one_by_one(model, adapter, corpus)
    logp = _direct_lens(adapter, rows, lens)
    p = logp.exp()
    return float((p[-1:] * (logp[-1:] - logp)).sum(-1)[:-1].mean())


def test_tuned_training_lowers_the_kl(tiny):
    model, tok, adapter = tiny("llama")
    corpus = _corpus(tok)
    start = AffineLens("linear", torch.eye(adapter.d_model).repeat(adapter.n_layers, 1, 1),
                       torch.zeros(adapter.n_layers, adapter.d_model))
    tuned = train_tuned(HookEngine(model, adapter), corpus, init=start, steps=60, lr=3e-3)
    assert tuned.kind == "tuned" and tuned.meta["steps"] == 60
    before, after = _mean_kl(model, adapter, corpus, start), _mean_kl(model, adapter, corpus, tuned)
    assert after < 0.8 * before, (before, after)


def test_corpus_files(tmp_path, tiny):
    _, tok, _ = tiny("llama")
    seeds = read_seeds()
    assert len(seeds) >= 50 and all(s.strip() for s in seeds)
    shipped = read_jsonl(SHIPPED_FILE)
    assert len(shipped) == len(seeds) and all(t.startswith(s) for t, s in zip(shipped, seeds))
    f = tmp_path / "c.txt"
    f.write_text("first paragraph\nstill first\n\nsecond one\n\n\n", encoding="utf-8")
    assert read_text_file(f) == ["first paragraph\nstill first", "second one"]
    f.write_bytes(b"\xff\xfe bad")
    with pytest.raises(LensError, match="not UTF-8"):
        read_text_file(f)
    with pytest.raises(LensError, match="is a folder"):
        read_text_file(tmp_path)
    with pytest.raises(LensError, match="only"):
        chunk_corpus(tok, ["ab"], "tiny", chunk=64)
    a, b = chunk_corpus(tok, TEXTS, "x", chunk=32), chunk_corpus(tok, TEXTS, "y", chunk=32)
    assert a.digest == b.digest and all(len(c) == 32 for c in a.chunks[:-1])


def test_backend_fits_once_and_reads_through_the_lens(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_CACHE", str(tmp_path / "cache"))  # its fits stay out of the session's cache
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import LensOptions

    b = local_backend(load_model("tiny-llama"))
    f = tmp_path / "corpus.txt"
    f.write_text("\n\n".join(TEXTS), encoding="utf-8")
    first = b.fit_lens(FitOptions("linear", corpus_file=str(f)))
    again = b.fit_lens(FitOptions("linear", corpus_file=str(f)))
    assert again.lens_id == first.lens_id and first.corpus == "corpus.txt" and first.tokens > 100
    assert [x.kind for x in b.lens_fits()] == ["linear"]
    # Another corpus: a second fit, now in use; the first corpus again: the first fit back at once.
    g = tmp_path / "other.txt"
    g.write_text("\n\n".join(TEXTS[::-1]) + " and more words here", encoding="utf-8")
    other = b.fit_lens(FitOptions("linear", corpus_file=str(g)))
    assert other.lens_id != first.lens_id and b.lens_fits()[0].lens_id == other.lens_id
    assert b.fit_lens(FitOptions("linear", corpus_file=str(f))).lens_id == first.lens_id
    assert b.lens_fits()[0].lens_id == first.lens_id
    logit = b.logit_lens("hello there", LensOptions())
    linear = b.logit_lens("hello there", LensOptions(lens="linear"))
    assert linear.lens == "linear" and logit.lens == "logit"
    assert not np.allclose(linear.kl_to_final[:-1], logit.kl_to_final[:-1])
    np.testing.assert_allclose(linear.top_probs[-1], logit.top_probs[-1], atol=1e-6)
    with pytest.raises(LensError, match="no tuned lens"):
        b.logit_lens("hello there", LensOptions(lens="tuned"))
    with pytest.raises(LensError, match="unknown lens"):
        b.logit_lens("hello there", LensOptions(lens="tunde"))
    cmp = b.lens_comparison("hello there")
    assert cmp.lenses == ["logit", "linear"]
    np.testing.assert_allclose(cmp.mean_kl[0], logit.kl_to_final.mean(1), rtol=1e-6)
    np.testing.assert_allclose(cmp.mean_kl[1], linear.kl_to_final.mean(1), rtol=1e-6)
    assert (cmp.top1_agreement[:, -1] == 1).all() and (cmp.exit_fraction[:, -1] == 1).all()


def test_cli_fit_lens_and_logit_lens_with_it(tmp_path, cli):
    f = tmp_path / "corpus.txt"
    f.write_text("\n\n".join(TEXTS), encoding="utf-8")
    env = {"LAYERLENS_CACHE": tmp_path / "cache"}  # its fits stay out of the session's cache
    fit = cli("fit-lens", "--kind", "linear", "--model", "tiny-gpt2", "--corpus-file", str(f), env=env)
    assert fit.returncode == 0, fit.stderr
    assert "linear lens" in fit.stdout
    again = cli("fit-lens", "--kind", "linear", "--model", "tiny-gpt2", "--corpus-file", str(f), env=env)
    assert again.returncode == 0 and "already fitted" in again.stdout
    out = cli("logit-lens", "--model", "tiny-gpt2", "--prompt", "hello there", "--lens", "linear", "--json",
               env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["lens"] == "linear" and len(data["exit_layer"]) == len(data["positions"])
    assert all(e is None or 0 <= e <= data["n_layers"] for e in data["exit_layer"])
    bad = cli("logit-lens", "--model", "tiny-gpt2", "--prompt", "hi", "--lens", "sideways")
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("fit-lens", "--kind", "tuned", "--model", "tiny-gpt2", "--checkpoint", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_cli_compare_lenses_and_language(tmp_path, cli):
    cmp = cli("compare-lenses", "--model", "tiny-llama", "--prompt", "hello there", "--json")
    assert cmp.returncode == 0, cmp.stderr
    data = json.loads(cmp.stdout)
    assert data["lenses"][0] == "logit" and len(data["mean_kl"][0]) == len(data["layers"])
    lang = cli("language", "--model", "tiny-llama", "--prompt", "hello there", "--track", "a,b", "--json")
    assert lang.returncode == 0, lang.stderr
    data = json.loads(lang.stdout)
    assert data["words"] == ["a", "b"] and all(abs(sum(row) - 1) < 1e-6 for row in data["mass"])
    table = cli("language", "--model", "tiny-llama", "--prompt", "hello there")
    assert table.returncode == 0 and "layer" in table.stdout
    bad = cli("language", "--model", "tiny-llama", "--prompt", "hello", "--position", "99")
    assert bad.returncode == 2 and "outside the prompt" in bad.stderr


def test_text_scripts():
    from lens.analysis.language import text_script

    assert text_script(" Paris") == "Latin" and text_script("вода") == "Cyrillic" and text_script("水") == "Han"
    assert text_script("ひら") == "Kana" and text_script("한") == "Hangul" and text_script("\ufffd") == "pieces"
    assert text_script(" 123,") == "other" and text_script("aб") == "other"


def test_the_backend_never_fits_a_lens_unasked(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_CACHE", str(tmp_path / "cache"))
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import LensOptions

    b = local_backend(load_model("tiny-gpt2"))
    with pytest.raises(LensError, match="no linear lens yet: fit one"):
        b.logit_lens("hello there", LensOptions(lens="linear"))
    assert b.lens_fits() == [] and not list((tmp_path / "cache").rglob("*.safetensors"))
