"""The Jacobian lens (lens/fitted/jacobian.py): checkpoints in the published layout (the jacobian-lens
package's ``.pt``) and the plain safetensors one, read against ``unembed(norm_f(J_l h_l))`` computed by hand
from the Hugging Face model's hidden states; identity matrices against the logit lens; every bad file as one
line; a suite against single-prompt runs; the CLI and the lens page."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens.errors import LensError
from lens.fitted.jacobian import read_jacobian_checkpoint, write_jacobian_safetensors
from lens.options import FitOptions, LensOptions

PROMPT = "hello there, the end; see me here"


def published(path, jacobians: dict[int, torch.Tensor], d_model: int, **extra):
    """A checkpoint as ``jlens.JacobianLens.save`` writes it (float16 matrices, plain Python values)."""
    torch.save({"J": {l: J.to(torch.float16) for l, J in jacobians.items()}, "n_prompts": 7,
                "source_layers": sorted(jacobians), "d_model": d_model, **extra}, str(path))
    return path


def random_jacobians(n_layers: int, d: int, seed: int = 0, scale: float = 0.6) -> dict[int, torch.Tensor]:
    """One matrix per block but the last, far enough from the identity to change every reading."""
    g = torch.Generator().manual_seed(seed)
    return {l: torch.eye(d) + scale * torch.randn(d, d, generator=g) / d ** 0.5 for l in range(n_layers - 1)}


def backend_for(name: str, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_CACHE", str(tmp_path / "cache"))  # its lenses stay out of the session's cache
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    return local_backend(load_model(name))


def final_norm_by_hand(model, x: torch.Tensor) -> torch.Tensor:
    """The model's final norm written out in float64 (RMSNorm for llama, LayerNorm for gpt2)."""
    if hasattr(model, "transformer"):  # gpt2
        ln = model.transformer.ln_f
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()
    norm = model.model.norm
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight.double()


def jacobian_lens_by_hand(model, ids: list[int], jacobians: dict[int, torch.Tensor] | None) -> torch.Tensor:
    """[L+1, T, V] log-probabilities: row 0 the embeddings and row L the model's output as they are, row r
    (1..L-1) the output of block r-1 (from 0) carried by ``J_{r-1}`` (``J @ h``), all in float64."""
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    L = len(out.hidden_states) - 1
    W_U = model.get_output_embeddings().weight.double()
    rows = []
    for r in range(L):  # hidden_states[r]: the input of block r (from 0), i.e. our row r; its last is normed
        h = out.hidden_states[r][0].double()
        if jacobians is not None and r >= 1:
            h = h @ jacobians[r - 1].double().T  # J h for each position's column vector
        rows.append(torch.log_softmax(final_norm_by_hand(model, h) @ W_U.T, -1))
    rows.append(torch.log_softmax(out.logits[0].double(), -1))  # the model's own output
    return torch.stack(rows)


def assert_lens_matches(result, logp: torch.Tensor, atol: float = 2e-5):
    p = logp.exp()
    k = result.top_probs.shape[-1]
    ref_top = torch.topk(p, k, -1).values.numpy()
    np.testing.assert_allclose(result.top_probs, ref_top, atol=atol)
    final = p[-1]
    kl = (final * (logp[-1] - logp)).sum(-1).numpy()
    np.testing.assert_allclose(result.kl_to_final, kl, atol=1e-4, rtol=1e-4)
    entropy = -(p * logp).sum(-1).numpy()
    np.testing.assert_allclose(result.entropy, entropy, atol=1e-4, rtol=1e-4)
    # The top-1 token, where the first two are not tied within float32's reach.
    clear = (ref_top[..., 0] - ref_top[..., 1]) > 1e-4
    assert (result.top_ids[..., 0][clear] == p.argmax(-1).numpy()[clear]).all()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_published_checkpoint_reads_unembed_of_the_norm_of_J_h(arch, tmp_path, monkeypatch):
    b = backend_for(f"tiny-{arch}", tmp_path, monkeypatch)
    a = b.loaded.adapter
    J = random_jacobians(a.n_layers, a.d_model, seed=1)
    fit = b.fit_lens(FitOptions("jacobian", checkpoint=str(published(tmp_path / "lens.pt", J, a.d_model))))
    assert fit.kind == "jacobian" and fit.source == "checkpoint" and fit.details["n_prompts"] == 7
    assert fit.details["blocks"] == a.n_layers - 1 and [f.kind for f in b.lens_fits()] == ["jacobian"]
    result = b.logit_lens(PROMPT, LensOptions(top_k=5, lens="jacobian"))
    assert result.lens == "jacobian"
    stored = {l: m.to(torch.float16).double() for l, m in J.items()}  # what the float16 file holds
    assert_lens_matches(result, jacobian_lens_by_hand(b.loaded.model, b.token_ids(PROMPT), stored))
    # Not the logit lens in disguise: every row between the embeddings and the output reads otherwise.
    logit = b.logit_lens(PROMPT, LensOptions(top_k=5))
    assert all(np.abs(result.kl_to_final[r] - logit.kl_to_final[r]).max() > 1e-3 for r in range(1, a.n_layers))
    np.testing.assert_array_equal(result.top_probs[[0, -1]], logit.top_probs[[0, -1]])
    # Written the other way round (h J instead of J h), it would read differently: the orientation is pinned.
    transposed = {l: m.T for l, m in stored.items()}
    wrong = jacobian_lens_by_hand(b.loaded.model, b.token_ids(PROMPT), transposed).exp()
    assert np.abs(result.top_probs[1:-1, :, 0] - wrong.max(-1).values.numpy()[1:-1]).max() > 1e-3


def test_the_plain_safetensors_form_and_a_folder_read_the_same_lens(tmp_path):
    L, d = 3, 8
    J = random_jacobians(L, d, seed=2)
    pt = read_jacobian_checkpoint(published(tmp_path / "a.pt", J, d), L, d)
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jacobian_safetensors(folder / "lens.safetensors", {l: m.half().float() for l, m in J.items()}, n_prompts=7)
    (folder / "config.json").write_text(json.dumps({"d_model": d, "num_hidden_layers": L}), encoding="utf-8")
    st = read_jacobian_checkpoint(folder, L, d)
    assert torch.equal(pt.weight, st.weight) and pt.lens_id == st.lens_id
    assert pt.meta["format"] == "jlens .pt" and st.meta["format"] == "safetensors" and st.meta["n_prompts"] == 7
    # Row 0 (the embeddings) has no matrix: the identity; row r is J_{r-1}ᵀ (h Jᵀ = J h); no bias.
    assert torch.equal(pt.weight[0], torch.eye(d)) and not pt.bias.any()
    for l, m in J.items():
        assert torch.equal(pt.weight[l + 1], m.half().float().T)
    h = torch.randn(L + 1, 5, d)
    out = pt.apply(h)
    for l, m in J.items():
        torch.testing.assert_close(out[l + 1], h[l + 1] @ m.half().float().T)
    assert torch.equal(out[0], h[0]) and torch.equal(out[-1], h[-1])


def test_identity_matrices_give_the_logit_lens_exactly(tmp_path, monkeypatch):
    from lens.suites.suite import parse_lines

    b = backend_for("tiny-llama", tmp_path, monkeypatch)
    a = b.loaded.adapter
    eye = {l: torch.eye(a.d_model) for l in range(a.n_layers - 1)}
    b.fit_lens(FitOptions("jacobian", checkpoint=str(write_jacobian_safetensors(tmp_path / "eye.safetensors", eye))))
    jac, logit = (b.logit_lens(PROMPT, LensOptions(top_k=5, lens=k)) for k in ("jacobian", "logit"))
    for field in ("top_ids", "top_probs", "entropy", "kl_to_final", "target_rank", "target_prob"):
        np.testing.assert_array_equal(getattr(jac, field), getattr(logit, field), err_msg=field)
    assert jac.exit_layer == logit.exit_layer
    suite = parse_lines("hello there\tl\nabc abc\nthe end; see me")
    sj, sl = (b.lens_suite(suite, __import__("lens.suites.options", fromlist=["x"]).SuiteOptions(lens=k))
              for k in ("jacobian", "logit"))
    for field in ("target_prob", "kl_to_final", "top1_ids", "target_rank"):
        np.testing.assert_array_equal(getattr(sj, field), getattr(sl, field), err_msg=field)


def _bad(tmp_path, name: str):
    """A checkpoint for a model of 3 layers and width 8, spoilt as ``name`` says; returns its path."""
    L, d = 3, 8
    J = random_jacobians(L, d)
    p = tmp_path / f"{name}.pt"
    if name == "corrupt":
        p.write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    elif name == "corrupt-safetensors":
        p = tmp_path / "corrupt.safetensors"
        p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    elif name == "wrong-shape":
        published(p, {**J, 1: torch.eye(d + 1)}, d)
    elif name == "too-few-layers":
        published(p, {0: J[0]}, d)
    elif name == "too-many-layers":
        published(p, {**J, 2: torch.eye(d), 3: torch.eye(d)}, d)
    elif name == "nan":
        J[1][2, 3] = float("nan")
        published(p, J, d)
    elif name == "inf-safetensors":
        p = tmp_path / "inf.safetensors"
        J[0][0, 0] = float("inf")
        write_jacobian_safetensors(p, J)
    elif name == "wider-model":
        published(p, J, d + 8)
    elif name == "pickled-code":
        torch.save({"J": {0: J[0]}, "fit": Exploding()}, str(p))  # pickled as a call of print
    elif name == "no-J":
        torch.save({"weight": torch.eye(d)}, str(p))
    elif name == "not-a-block":
        torch.save({"J": {**J, "head": torch.eye(d)}, "d_model": d}, str(p))
    elif name == "other-tensors":
        p = tmp_path / "other.safetensors"
        from safetensors.torch import save_file
        save_file({"weight": torch.eye(d)}, str(p))
    elif name == "two-files":
        p = tmp_path / "two"
        p.mkdir()
        published(p / "a.pt", J, d)
        published(p / "b.pt", J, d)
    elif name == "config-mismatch":
        p = tmp_path / "cfg"
        p.mkdir()
        published(p / "lens.pt", J, d)
        (p / "config.json").write_text(json.dumps({"d_model": d, "num_hidden_layers": 5}))
    elif name == "missing":
        p = tmp_path / "nowhere.pt"
    elif name == "text-file":
        p = tmp_path / "lens.txt"
        p.write_text("J")
    return p


class Exploding:
    """An object whose unpickling would run code: a tensors-only read must refuse it before that."""

    def __reduce__(self):
        return (print, ("this must never be printed",))


BAD = [("corrupt", r"cannot read .*corrupt\.pt as plain tensors"),
       ("corrupt-safetensors", r"cannot read .*corrupt\.safetensors as safetensors"),
       ("wrong-shape", r"the matrix of block 1 has shape \(9, 9\), not 8×8"),
       ("too-few-layers", r"matrices for 1 blocks \(0\); this model has 3 layers .*\(0–1\): blocks 1 are missing"),
       ("too-many-layers", r"matrices for 4 blocks \(0–3\); .*: blocks 2–3 are beyond it"),
       ("nan", r"the matrix of block 1 has 1 values that are not finite"),
       ("inf-safetensors", r"the matrix of block 0 has 1 values that are not finite"),
       ("wider-model", r"is for a model of width 16; this model has 3 layers of width 8"),
       ("pickled-code", r"as plain tensors .*only tensor files are loaded"),
       ("no-J", r"holds no 'J' dictionary of matrices \(found \['weight'\]\)"),
       ("not-a-block", r"'head' is not a block number"),
       ("other-tensors", r"tensor 'weight' is not named J.<block>"),
       ("two-files", r"holds 2 .pt or .safetensors files \(a.pt, b.pt\)"),
       ("config-mismatch", r"is for a model of 5 layers, width 8; this model has 3 layers of width 8"),
       ("missing", r"no such file or folder"),
       ("text-file", r"neither a .pt nor a .safetensors file")]


@pytest.mark.parametrize("name,match", BAD, ids=[b[0] for b in BAD])
def test_a_bad_checkpoint_is_one_clear_line(tmp_path, capfd, name, match):
    with pytest.raises(LensError, match=match) as err:
        read_jacobian_checkpoint(_bad(tmp_path, name), 3, 8)
    assert "\n" not in str(err.value)
    assert "never be printed" not in capfd.readouterr().out


def test_cli_imports_a_checkpoint_and_a_suite_agrees_with_single_prompts(tmp_path, cli):
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    env = {"LAYERLENS_CACHE": tmp_path / "cache"}
    missing = cli("logit-lens", "--model", "tiny-gpt2", "--prompt", "hello", "--lens", "jacobian", env=env)
    assert missing.returncode == 2 and "no Jacobian lens" in missing.stderr and "--kind jacobian" in missing.stderr
    no_file = cli("fit-lens", "--kind", "jacobian", "--model", "tiny-gpt2", env=env)
    assert no_file.returncode == 2 and "give its checkpoint" in no_file.stderr
    model = load_model("tiny-gpt2")
    a = model.adapter
    J = random_jacobians(a.n_layers, a.d_model, seed=3)
    J[0][1, 1] = float("nan")
    bad = cli("fit-lens", "--kind", "jacobian", "--model", "tiny-gpt2", "--checkpoint",
              str(published(tmp_path / "nan.pt", J, a.d_model)), env=env)
    assert bad.returncode == 2 and "block 0 has 1 values that are not finite" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    narrow = cli("fit-lens", "--kind", "jacobian", "--model", "tiny-gpt2", "--checkpoint", str(_bad(tmp_path, "nan")),
                 env=env)
    assert narrow.returncode == 2 and "is for a model of width 8; this model has 3 layers of width 32" in narrow.stderr
    path = published(tmp_path / "gpt2.pt", random_jacobians(a.n_layers, a.d_model, seed=3), a.d_model)
    fit = cli("fit-lens", "--kind", "jacobian", "--model", "tiny-gpt2", "--checkpoint", str(path), env=env)
    assert fit.returncode == 0, fit.stderr
    assert "jacobian lens read from" in fit.stdout and "--lens jacobian" in fit.stdout

    prompts = ["hello there", "the end; see me", "abc abc abc", "hello"]
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = cli("suite", "--prompts-file", str(f), "--model", "tiny-gpt2", "--lens", "jacobian", "--json", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["lens"] == "jacobian" and len(data["per_prompt"]) == len(prompts)

    b = local_backend(model)  # the same cache folder: the lens the CLI imported
    assert [x.kind for x in b.lens_fits()] == ["jacobian"]
    logit_suite = json.loads(cli("suite", "--prompts-file", str(f), "--model", "tiny-gpt2", "--json",
                                 env=env).stdout)
    for i, prompt in enumerate(prompts):
        single = b.logit_lens(prompt, LensOptions(top_k=1, lens="jacobian"))
        got = data["per_prompt"][i]
        np.testing.assert_allclose(got["target_prob"], single.target_prob[:, -1], atol=2e-6, rtol=1e-5)
        np.testing.assert_allclose(got["kl_to_final"], single.kl_to_final[:, -1], atol=2e-5, rtol=1e-4)
        assert got["target_rank"] == single.target_rank[:, -1].tolist()
        assert got["target_prob"] != logit_suite["per_prompt"][i]["target_prob"]

    one = cli("logit-lens", "--model", "tiny-gpt2", "--prompt", prompts[0], "--lens", "jacobian", "--json", env=env)
    assert one.returncode == 0 and json.loads(one.stdout)["lens"] == "jacobian"
    cmp = json.loads(cli("compare-lenses", "--model", "tiny-gpt2", "--prompt", prompts[0], "--json", env=env).stdout)
    assert cmp["lenses"] == ["logit", "jacobian"]


def test_the_lens_page_offers_the_jacobian_lens_once_the_model_has_one(tmp_path):
    """The page runs on the session's cache (conftest): tiny-phi3 is a model no other test gives a lens."""
    from conftest import lens_page
    from plotly_json import array, charts

    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    prompt = "hello there"
    at = lens_page(prompt, model="tiny-phi3", lens="jacobian")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Jacobian lens" not in at.selectbox(key="lens").options and at.selectbox(key="lens").value == "logit"
    said = [c.value for c in at.caption if "Not used from the link" in c.value]
    assert said and "lens “jacobian” (showing logit lens)" in said[0]

    b = local_backend(load_model("tiny-phi3"))
    a = b.loaded.adapter
    b.fit_lens(FitOptions("jacobian", checkpoint=str(published(
        tmp_path / "phi3.pt", random_jacobians(a.n_layers, a.d_model, seed=4), a.d_model))))
    at = lens_page(prompt, model="tiny-phi3", lens="jacobian", top_k="3")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="lens").value == "jacobian"
    z = array(charts(at)[0]["data"][0]["z"])
    expected = b.logit_lens(prompt, LensOptions(top_k=3, lens="jacobian"))
    np.testing.assert_allclose(z, expected.top_probs[..., 0], rtol=1e-5)


def test_the_stored_lens_is_reread_and_a_damaged_copy_is_a_miss(tmp_path, monkeypatch):
    from lens.fitted.jacobian import load_stored

    b = backend_for("tiny-llama", tmp_path, monkeypatch)
    a = b.loaded.adapter
    fit = b.fit_lens(FitOptions("jacobian", checkpoint=str(published(
        tmp_path / "l.pt", random_jacobians(a.n_layers, a.d_model, seed=5), a.d_model))))
    stored = next((tmp_path / "cache" / "lenses").rglob("jacobian-checkpoint-*.safetensors"))
    again = load_stored(stored, a.n_layers, a.d_model)
    assert again.kind == "jacobian" and again.lens_id == fit.lens_id
    assert torch.equal(again.weight, b.fitted_lens("jacobian").weight)
    assert load_stored(stored, a.n_layers + 1, a.d_model) is None  # another model's shape
    data = bytearray(stored.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the last matrix: its digest no longer matches
    stored.write_bytes(bytes(data))
    assert load_stored(stored, a.n_layers, a.d_model) is None
    assert load_stored(tmp_path / "none.safetensors", a.n_layers, a.d_model) is None
