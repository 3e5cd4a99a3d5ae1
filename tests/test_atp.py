"""Attribution patching (lens/circuits/atp.py) against computations written here with plain PyTorch hooks: each
cell's estimate against a central finite difference of the metric along the clean-minus-corrupted direction
(float64 models of every decoder architecture, every grid); an exact case (a final norm made linear, where the
last layer's patches reach the logits linearly) against real patching; the QK fix's split of each head's write;
the backend, the CLI and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from command import lens_command
from lens.circuits.atp import atp_grid, pearson, split_head_writes
from lens.circuits.options import AttributeOptions
from lens.engine.hooks import HookEngine
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.interventions.patching import patch_grid, run_for_patching
from lens.model.adapters import adapt
from lens.model.loading import load_model
from lens.model.registry import TINY_ARCHS
from lens.model.tiny import tiny_model
from lens.options import PatchOptions

CLEAN, CORRUPT = [ord(c) for c in "hello there, the end"], [ord(c) for c in "jello where, the fnd"]
TARGET, FOIL = ord("e"), ord("f")


def first(out):
    return out[0] if isinstance(out, tuple) else out


def _metric(logits, foil):
    z = logits[0, -1].double()
    return torch.log_softmax(z, -1)[TARGET] if foil is None else z[TARGET] - z[foil]


def _place(a, site, row):
    """(module, hook kind) holding row ``row`` of ``site``'s grid, and whether the module works on [B·T, d]."""
    L = a.n_layers
    if site == "resid":
        return (a.blocks[row], "pre", False) if row < L else (a.blocks[L - 1], "post", False)
    if site == "attn":
        return a.attn_write[row], "post", False
    if site == "mlp":
        return a.mlp_write[row], "post", True
    return a.out_proj[row], "pre", False


def _run(model, a, ids, site, row, change=None, foil=FOIL):
    """The metric of one forward pass of ``ids`` with ``change(x [T, D]) -> x`` at the site's row, and the
    activation there (before the change)."""
    module, kind, flat = _place(a, site, row)
    seen = {}

    def edit(x):
        T = len(ids)
        y = x.reshape(1, T, -1)[0] if flat else x[0]
        seen["x"] = y.detach().clone()
        if change is None:
            return None
        new = change(y.detach().clone()).to(x.dtype)
        return new.reshape(x.shape) if flat else new[None]
    if kind == "pre":
        h = module.register_forward_pre_hook(
            lambda m, args, kw: None if (y := edit(args[0] if args else kw["hidden_states"])) is None
            else (((y, *args[1:]), kw) if args else (args, {**kw, "hidden_states": y})), with_kwargs=True)
    else:
        h = module.register_forward_hook(
            lambda m, args, out: None if (y := edit(first(out))) is None
            else ((y, *out[1:]) if isinstance(out, tuple) else y))
    try:
        with torch.no_grad():
            m = float(_metric(model(input_ids=torch.tensor([ids])).logits, foil))
    finally:
        h.remove()
    return m, seen["x"]


def _cell_change(site, col, clean_x, corrupt_x, eps, hd):
    def change(x):
        if site == "head":
            sl = slice(col * hd, (col + 1) * hd)
            x[:, sl] = corrupt_x[:, sl] + eps * (clean_x[:, sl] - corrupt_x[:, sl])
        else:
            x[col] = corrupt_x[col] + eps * (clean_x[col] - corrupt_x[col])
        return x
    return change


def _derivative(f, h):
    """f'(0) by central differences, Richardson-extrapolated (error O(h⁴)): attention's softmax runs in float32
    even in a float64 model, so a small step drowns in rounding."""
    d = [(f(s) - f(-s)) / (2 * s) for s in (h, h / 2)]  # (OPT's ReLU: a smaller step, kinks are not crossed)
    return (4 * d[1] - d[0]) / 3


def _sites(a):
    sites = ["resid"]
    if not a.post_ln:
        sites += ["attn", "mlp"]
    if a.out_proj:
        sites.append("head")
    return sites


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_each_cell_is_the_finite_difference_of_the_metric(arch):
    """AtP of a cell is the directional derivative of m along (a_clean − a_corrupt) at the corrupted run."""
    model, _ = tiny_model(arch)
    model = model.double()
    a = adapt(model)
    eng = HookEngine(model, a)
    rng = np.random.default_rng(0)
    for site in _sites(a):
        for foil in (FOIL, None):
            est, m_clean, m_corrupt = atp_grid(eng, CLEAN, CORRUPT, TARGET, foil, site)
            assert m_clean == pytest.approx(_run(model, a, CLEAN, "resid", 0, foil=foil)[0], abs=1e-5)
            cols = a.n_heads if site == "head" else len(CORRUPT)
            cells = {(int(r), int(c)) for r, c in zip(rng.integers(0, est.shape[0], 3), rng.integers(0, cols, 3))}
            if site == "resid":
                cells.add((a.n_layers, len(CORRUPT) - 1))  # the last row at the last position
            for row, col in cells:
                _, clean_x = _run(model, a, CLEAN, site, row, foil=foil)
                m0, corrupt_x = _run(model, a, CORRUPT, site, row, foil=foil)
                assert m0 == pytest.approx(m_corrupt, abs=1e-5)  # the engine keeps logits in float32
                fd = _derivative(lambda e: _run(model, a, CORRUPT, site, row, _cell_change(
                    site, col, clean_x, corrupt_x, e, a.head_dim), foil=foil)[0], h=2e-3 if arch == "opt" else 2e-2)
                assert est[row, col] == pytest.approx(fd, rel=1e-3, abs=5e-5), (arch, site, foil, row, col)
            if site == "resid":  # the last row feeds the read-out at the last position only
                assert np.all(est[-1, :-1] == 0)


def _linear_readout_llama(site: str):
    """A tiny Llama whose final RMSNorm divides by a constant (its epsilon dwarfs every mean square): the last
    residual row and the last MLP's write then reach the logits linearly, so AtP of the last row is exact; for
    attention and heads the last MLP writes nothing (else their writes pass through it)."""
    model, _ = tiny_model("llama")
    model = model.double()
    model.model.norm.variance_epsilon = 1e8
    with torch.no_grad():
        model.model.norm.weight *= 1e4  # the logits keep their size
        if site in ("attn", "head"):
            model.model.layers[-1].mlp.down_proj.weight.zero_()
    a = adapt(model)
    return HookEngine(model, a), a


@pytest.mark.parametrize("site", ["resid", "attn", "mlp", "head"])
def test_where_linear_is_exact_the_estimate_is_real_patching(site):
    eng, a = _linear_readout_llama(site)
    est, m_clean, m_corrupt = atp_grid(eng, CLEAN, CORRUPT, TARGET, FOIL, site)
    c, k = run_for_patching(eng, CLEAN, site), run_for_patching(eng, CORRUPT, None)
    raw, m_clean2, m_corrupt2 = patch_grid(eng, c, k, TARGET, FOIL, site)
    assert m_clean == pytest.approx(m_clean2, abs=1e-5) and m_corrupt == pytest.approx(m_corrupt2, abs=1e-5)
    actual = raw - m_corrupt
    np.testing.assert_allclose(est[-1], actual[-1], rtol=1e-4, atol=1e-5)
    assert pearson(est[-1], actual[-1]) > 0.99999
    if site != "resid":  # earlier rows pass through later blocks' nonlinearities: close, not equal
        assert pearson(est, actual) > 0.8


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2", "phi3", "opt"])
def test_the_qk_fix_splits_each_heads_write_exactly(arch):
    """z = A·V per head (grouped-query heads share values): A_c·V_k + A_c·(V_c − V_k) = z_c and A_k·V_k = z_k."""
    model, _ = tiny_model(arch)
    a = adapt(model)
    eng = HookEngine(model, a)
    L, H, hd, T = a.n_layers, a.n_heads, a.head_dim, len(CLEAN)
    read = {f"{k}.{l}": None for l in range(1, L + 1) for k in ("attn_pattern", "value", "head_out")}
    c, k = eng.run(CLEAN, read=read), eng.run(CORRUPT, read=read)
    for l in range(1, L + 1):
        pat, val = split_head_writes(c.reads[f"attn_pattern.{l}"][0], c.reads[f"value.{l}"][0],
                                     k.reads[f"value.{l}"][0], a.kv_group)
        zc = c.reads[f"head_out.{l}"][0].reshape(T, H, hd)
        torch.testing.assert_close(pat + val, zc, atol=1e-5, rtol=1e-5)
        kpat, _ = split_head_writes(k.reads[f"attn_pattern.{l}"][0], k.reads[f"value.{l}"][0],
                                    k.reads[f"value.{l}"][0], a.kv_group)
        torch.testing.assert_close(kpat, k.reads[f"head_out.{l}"][0].reshape(T, H, hd), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("site", ["attn", "head"])
def test_the_qk_fix_is_exact_where_the_read_out_is_linear(site):
    """Its pattern term is patched for real and its value term linear: on the last layer of a linear read-out,
    both are exact, and the whole estimate is real patching there."""
    eng, a = _linear_readout_llama(site)
    est, _, m_corrupt = atp_grid(eng, CLEAN, CORRUPT, TARGET, FOIL, site, qk_fix=True)
    c, k = run_for_patching(eng, CLEAN, site), run_for_patching(eng, CORRUPT, None)
    raw, _, _ = patch_grid(eng, c, k, TARGET, FOIL, site)
    np.testing.assert_allclose(est[-1], raw[-1] - m_corrupt, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_backend():
    return local_backend(load_model("tiny-llama"), None)


def test_backend_layout_and_verification_match_patch(tiny_backend):
    b = tiny_backend
    for site in ("resid", "attn", "mlp", "head"):
        r = b.attribute("hello there", "jello where", AttributeOptions("e", "f", site, verify=True))
        p = b.patch("hello there", "jello where", PatchOptions("e", "f", site))
        assert r.layers == p.layers and r.columns == p.columns and r.tokens == p.tokens
        assert r.estimate.shape == p.patch.shape
        np.testing.assert_array_equal(r.actual, p.patch)
        assert r.metric_clean == pytest.approx(p.metric_clean, abs=1e-5)
        np.testing.assert_allclose(r.estimate, r.estimate_raw / (r.metric_clean - r.metric_corrupt), rtol=1e-5)
        assert r.correlation == pytest.approx(np.corrcoef(r.estimate.ravel(), p.patch.ravel())[0, 1], abs=1e-6)
        gaps = [d["gap"] for d in r.disagreements]
        assert gaps == sorted(gaps, reverse=True) and len(gaps) == 8
        worst = np.abs(r.estimate.astype(np.float64) - p.patch).max()
        assert gaps[0] == pytest.approx(worst, rel=1e-6)
    plain = b.attribute("hello there", "jello where", AttributeOptions("e", "f", "head"))
    assert not plain.verified and plain.actual.size == 0


def cli(*args):
    return lens_command("attribute", *args)


def test_cli_json_equals_the_backend(tiny_backend):
    out = cli("--model", "tiny-llama", "--clean-prompt", "hello there", "--corrupt-prompt", "jello where",
              "--target", "e", "--foil", "f", "--site", "head", "--qk-fix", "--verify", "--json", "--no-cache")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = tiny_backend.attribute("hello there", "jello where", AttributeOptions("e", "f", "head", True, True))
    np.testing.assert_allclose(np.array(got["estimate"]), want.estimate, atol=1e-6)
    np.testing.assert_allclose(np.array(got["actual"]), want.actual, atol=1e-6)
    assert got["correlation"] == pytest.approx(want.correlation, abs=1e-6)
    assert got["layers"] == ["1", "2", "3"] and got["columns"] == ["head 0", "head 1", "head 2", "head 3"]


@pytest.mark.parametrize("args, message", [
    (["--site", "resid", "--qk-fix"], "the QK fix applies to attention"),
    (["--site", "mlp", "--foil", "e"], "the target and the foil are the same token"),
    (["--target", "ee"], "the target 'ee' is 2 tokens here"),
])
def test_cli_bad_input_is_one_line(args, message):
    base = ["--model", "tiny-llama", "--no-cache", "--clean-prompt", "hello there", "--corrupt-prompt",
            "jello where"]
    if "--target" not in args:
        base += ["--target", "e"]
    out = cli(*base, *args)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], out.stderr


def test_models_without_head_sites_refuse_the_qk_fix():
    model, _ = tiny_model("gpt_neox")
    a = adapt(model)
    with pytest.raises(LensError, match="no head sites"):
        atp_grid(HookEngine(model, a), CLEAN, CORRUPT, TARGET, FOIL, "attn", qk_fix=True)


def _grads_without_block(model, a, ids, site, drop):
    """Each grid row's activation [T, D] and the metric's gradient there on a run of ``ids`` whose block ``drop``
    (0-based) passes no gradient back through its attention and MLP writes (they are detached here)."""
    L = a.n_layers
    rows = L + 1 if site == "resid" else L
    acts, hooks = {}, []

    def keep(row, flat):
        def grab(x):
            acts[row] = x
        return grab
    for row in range(rows):
        module, kind, flat = _place(a, site, row)
        if kind == "pre":
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, kw, g=keep(row, flat): g(args[0] if args else kw["hidden_states"]), with_kwargs=True))
        else:
            hooks.append(module.register_forward_hook(lambda m, args, out, g=keep(row, flat): g(first(out))))
    for mod in (a.attn_write[drop], a.mlp_write[drop]):
        hooks.append(mod.register_forward_hook(
            lambda m, args, out: (first(out).detach(), *out[1:]) if isinstance(out, tuple) else out.detach()))
    hooks.append(model.get_input_embeddings().register_forward_hook(
        lambda m, args, out: out.detach().requires_grad_()))
    try:
        with torch.enable_grad():
            m = _metric(model(input_ids=torch.tensor([ids])).logits, FOIL)
            grads = torch.autograd.grad(m, [acts[r] for r in range(rows)], allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    T = len(ids)
    shape = lambda x: x.detach().reshape(T, -1)  # noqa: E731
    return ([shape(acts[r]) for r in range(rows)],
            [torch.zeros(T, acts[r].shape[-1]) if g is None else shape(g) for r, g in enumerate(grads)])


@pytest.mark.parametrize("arch,site", [("llama", "resid"), ("llama", "head"), ("gpt2", "attn"), ("qwen2", "mlp")])
def test_grad_drop_is_the_mean_size_over_passes_that_each_skip_one_block(arch, site):
    """GradDrop by hand: one backward pass per block with that block's writes detached; a cell's estimate is the
    mean |(clean − corrupted) · gradient| over the passes other than its own block's."""
    model, _ = tiny_model(arch)
    a = adapt(model)
    L, H = a.n_layers, a.n_heads
    clean_acts, _ = _grads_without_block(model, a, CLEAN, site, 0)
    per_pass = []
    for drop in range(L):
        acts, grads = _grads_without_block(model, a, CORRUPT, site, drop)
        prods = [((c.double() - k.double()) * g.double()) for c, k, g in zip(clean_acts, acts, grads)]
        per_pass.append([p.reshape(len(CORRUPT), H, -1).sum((0, 2)) if site == "head" else p.sum(-1) for p in prods])
    blocks = list(range(0 if site == "resid" else 1, L + 1))  # each row's block (the embeddings: none)
    want = np.stack([np.mean([np.abs(per_pass[d][r].numpy()) for d in range(L) if d != b - 1], axis=0)
                     for r, b in enumerate(blocks)])
    got, *_ = atp_grid(HookEngine(model, a), CLEAN, CORRUPT, TARGET, FOIL, site, grad_drop=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    plain, *_ = atp_grid(HookEngine(model, a), CLEAN, CORRUPT, TARGET, FOIL, site)
    assert not np.allclose(np.abs(plain), got, atol=1e-6)  # dropping a block's gradient changes something


def test_grad_drop_verifies_against_the_size_of_real_patching(tiny_backend):
    r = tiny_backend.attribute("hello there", "jello where", AttributeOptions("e", "f", "head", verify=True,
                                                                              grad_drop=True))
    assert r.grad_drop and (r.estimate >= 0).all()
    assert r.correlation == pytest.approx(np.corrcoef(r.estimate.ravel(), np.abs(r.actual).ravel())[0, 1], abs=1e-6)
    both = tiny_backend.attribute("hello there", "jello where", AttributeOptions("e", "f", "head", qk_fix=True,
                                                                                 grad_drop=True))
    assert (both.estimate >= 0).all() and both.estimate.shape == r.estimate.shape
