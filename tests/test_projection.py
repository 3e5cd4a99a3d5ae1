"""Projections: PCA against numpy's SVD, Procrustes against a known rotation, point selection,
nearest neighbours, UMAP and its cache, the backend on the bundled model, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from command import lens_command
import lens.analysis.projection as projection
from lens.engine_backend import local_backend
from lens.cache import ResultCache
from lens.errors import LensError
from lens.model.loading import load_model
from lens.analysis.points import select_points
from lens.model.tokens import word_key
from lens.analysis.projection import align_layers, knn, pca, procrustes_rotation, project, project_points
from lens.options import ProjectionOptions
from shown import as_shown

RNG = np.random.default_rng(0)


def svd_reference(X: np.ndarray, k: int):
    Xc = X - X.mean(0)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    return U[:, :k] * S[:k], (S[:k] ** 2) / (S ** 2).sum()


def same_up_to_sign(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    for j in range(a.shape[1]):
        s = np.sign(a[:, j] @ b[:, j]) or 1.0
        np.testing.assert_allclose(a[:, j], s * b[:, j], atol=atol)


@pytest.mark.parametrize("shape", [(300, 40), (25, 60)])  # covariance route and Gram route
@pytest.mark.parametrize("k", [2, 3])
def test_pca_matches_numpy_svd(shape, k):
    # Distinct singular values so the components are well defined.
    X = RNG.normal(size=shape) * np.linspace(3.0, 0.5, shape[1])
    coords, ratio = pca(torch.tensor(X, dtype=torch.float32), k)
    ref, ref_ratio = svd_reference(X.astype(np.float32).astype(np.float64), k)
    same_up_to_sign(coords, ref, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(ratio, ref_ratio, rtol=1e-6)
    # Sign convention: the largest-magnitude coordinate of each component is positive.
    assert all(coords[np.abs(coords[:, j]).argmax(), j] > 0 for j in range(k))


def test_pca_with_fewer_points_than_components():
    coords, ratio = pca(np.array([[0.0, 0, 0, 1], [1.0, 0, 0, 0]]), 3)
    assert coords.shape == (2, 3)
    np.testing.assert_allclose(np.abs(coords[:, 0]), [np.sqrt(0.5)] * 2, atol=1e-12)
    np.testing.assert_allclose(coords[:, 1:], 0, atol=1e-12)
    np.testing.assert_allclose(ratio, [1, 0, 0], atol=1e-12)


def random_orthogonal(k: int, reflect: bool = False) -> np.ndarray:
    Q, _ = np.linalg.qr(RNG.normal(size=(k, k)))
    if np.linalg.det(Q) < 0:
        Q[:, 0] *= -1
    if reflect:
        Q[:, -1] *= -1
    return Q


@pytest.mark.parametrize("k,reflect", [(2, False), (2, True), (3, False)])
def test_procrustes_recovers_a_known_rotation(k, reflect):
    A = RNG.normal(size=(40, k))
    A -= A.mean(0)
    Q = random_orthogonal(k, reflect)
    B = A @ Q
    np.testing.assert_allclose(procrustes_rotation(A, B), Q, atol=1e-10)
    # Noise does not move the answer far, and the result is orthogonal.
    Qn = procrustes_rotation(A, B + 0.01 * RNG.normal(size=B.shape))
    np.testing.assert_allclose(Qn @ Qn.T, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(Qn, Q, atol=0.02)


def test_align_layers_undoes_per_layer_rotations():
    base = RNG.normal(size=(30, 2))
    layers = np.stack([base @ random_orthogonal(2, reflect=bool(r % 2)) + RNG.normal(size=2) for r in range(5)])
    aligned = align_layers(layers)
    centred = base - base.mean(0)
    for r in range(5):
        np.testing.assert_allclose(aligned[r], centred @ procrustes_rotation(centred, aligned[0]), atol=1e-9)
        np.testing.assert_allclose(aligned[r], aligned[0], atol=1e-9)


def test_knn_matches_brute_force():
    X = torch.tensor(RNG.normal(size=(120, 16)), dtype=torch.float32)
    X[7] = X[3]  # a duplicate: each point must still be its own first neighbour
    idx, dist = knn(X, 5, chunk=50)
    D = np.linalg.norm(X.numpy()[:, None] - X.numpy()[None], axis=-1)
    assert (idx[:, 0] == np.arange(120)).all()
    np.testing.assert_allclose(dist[:, 0], 0, atol=1e-6)
    ref = np.sort(D, axis=1)[:, :5]
    np.testing.assert_allclose(dist, ref, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(D, idx, 1), dist, atol=1e-4)


# ---------------------------------------------------------------- on traces


def test_point_selection(tiny_trace, tiny):
    trace, tok = tiny_trace("llama")
    T = trace.n_tokens
    pts = select_points([trace])
    assert pts.positions == list(range(1, T)) and pts.X.shape == (trace.n_layers + 1, T - 1, 32)
    assert torch.equal(pts.X, trace.residual[:, 1:])
    pts = select_points([trace, trace], skip_first=False)
    assert pts.text_index == [0] * T + [1] * T and pts.n_texts == 2
    special = select_points([trace], skip_first=False, special_ids=[trace.token_ids[2]])
    assert trace.token_ids[2] not in special.token_ids
    assert len(select_points([trace], skip_first=False, skip_special=False,
                             special_ids=[trace.token_ids[2]]).tokens) == T
    model, tok, adapter = tiny("llama")
    from lens.engine.hooks import HookEngine
    from lens.engine.trace import CaptureSpec, capture
    one = capture(HookEngine(model, adapter), tok("a")["input_ids"], CaptureSpec(), tokens=["a"])
    with pytest.raises(LensError, match="at least 2"):
        select_points([one])


def test_word_key_rule():
    assert word_key(" Bank") == word_key("bank") == word_key("##bank") == word_key("BANK\n") == "bank"
    assert word_key(" banks") != "bank"


def test_joint_and_aligned_projection_of_a_trace(tiny_trace):
    trace, _ = tiny_trace("gpt2")
    pts = select_points([trace])
    X = pts.X.numpy().astype(np.float64)
    R, N, d = X.shape
    rms = np.sqrt((X ** 2).mean(axis=(1, 2)))
    scaled = X / rms[:, None, None]

    joint = project_points(pts, ProjectionOptions())
    ref, ratio = svd_reference(scaled.reshape(R * N, d), 2)
    same_up_to_sign(joint.coords.reshape(R * N, 2).astype(np.float64), ref, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(joint.explained[0], ratio, rtol=1e-4)
    np.testing.assert_allclose(joint.rms, rms, rtol=1e-5)
    np.testing.assert_allclose(joint.norms, np.linalg.norm(X, axis=-1), rtol=1e-5)

    raw = project_points(pts, ProjectionOptions(rms_scale=False))
    ref_raw, _ = svd_reference(X.reshape(R * N, d), 2)
    same_up_to_sign(raw.coords.reshape(R * N, 2).astype(np.float64), ref_raw, atol=1e-4 * np.abs(ref_raw).max())

    aligned = project_points(pts, ProjectionOptions(mode="aligned"))
    for r in range(R):
        own, own_ratio = svd_reference(scaled[r], 2)
        # Aligned = the layer's own PCA times an orthogonal matrix: same distances, same spread.
        da = np.linalg.norm(aligned.coords[r][:, None] - aligned.coords[r][None], axis=-1)
        do = np.linalg.norm(own[:, None] - own[None], axis=-1)
        np.testing.assert_allclose(da, do, atol=1e-4 * do.max())
        np.testing.assert_allclose(aligned.explained[r], own_ratio, rtol=1e-4)
        if r:  # each layer is the rotation of its PCA closest to the previous layer
            Q = procrustes_rotation(aligned.coords[r].astype(np.float64), aligned.coords[r - 1].astype(np.float64))
            np.testing.assert_allclose(Q, np.eye(2), atol=1e-4)


def test_projection_options_are_checked(tiny_trace):
    trace, _ = tiny_trace("llama")
    for bad in (dict(method="tsne"), dict(mode="free"), dict(dims=4), dict(method="umap", mode="aligned")):
        with pytest.raises(LensError):
            project([trace], ProjectionOptions(**bad))


def test_umap_too_many_points_is_refused_before_importing_umap(tiny_trace, monkeypatch):
    trace, _ = tiny_trace("llama")
    with pytest.raises(LensError, match="limit here is 50"):
        project([trace], ProjectionOptions(method="umap"), max_umap_points=50)


def test_umap_runs_reports_progress_and_is_cached(tmp_path, monkeypatch):
    backend = local_backend(load_model("tiny-llama"), ResultCache(tmp_path))
    seen = []
    options = ProjectionOptions(method="umap", dims=2)
    first = backend.projection("hello there, the end", options, progress=lambda f, m: seen.append((f, m)))
    R = first.n_layers + 1
    assert first.coords.shape == (R, len(first.tokens), 2) and np.isfinite(first.coords).all()
    assert seen[-1][0] == 1.0 and any("neighbours" in m for _, m in seen)
    assert np.isnan(first.explained).all() and first.method == "umap"

    def no_refit(*a, **k):
        raise AssertionError("UMAP was fitted again for the same inputs")

    monkeypatch.setattr(projection, "umap_fit", no_refit)
    again = backend.projection("hello there, the end", options)
    np.testing.assert_array_equal(again.coords, first.coords)


# ---------------------------------------------------------------- bundled models


FRANCE = "The capital of France is a city on the river Seine"


def independent_residual(lm, text: str) -> np.ndarray:
    """[L+1, T, d] from transformers' own hidden states, the last block's raw output by a hook of our own."""
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    last = {}
    h = lm.model.model.layers[-1].register_forward_hook(lambda m, a, o: last.setdefault("x", (o[0] if isinstance(o, tuple) else o)))
    try:
        with torch.no_grad():
            out = lm.model(ids, output_hidden_states=True)
    finally:
        h.remove()
    hs = [x[0] for x in out.hidden_states[:-1]] + [last["x"].reshape(ids.shape[1], -1)]
    return torch.stack(hs).double().numpy()


@pytest.fixture(scope="module")
def smol_backend(tmp_path_factory):
    return local_backend(load_model("smollm2-135m"), ResultCache(tmp_path_factory.mktemp("proj-cache")))


def test_bundled_projection_against_independent_pca(smol_backend):
    lm = smol_backend.loaded
    H = independent_residual(lm, FRANCE)[:, 1:]  # first token left out
    R, N, d = H.shape
    scaled = H / np.sqrt((H ** 2).mean(axis=(1, 2)))[:, None, None]
    ref, ratio = svd_reference(scaled.reshape(R * N, d), 2)
    result = smol_backend.projection(FRANCE)
    assert result.tokens == [as_shown(lm.tokenizer, i) for i in lm.tokenizer(FRANCE)["input_ids"]][1:]
    assert result.layers[0] == "emb" and len(result.layers) == 31
    same_up_to_sign(result.coords.reshape(R * N, 2).astype(np.float64), ref, atol=2e-3 * np.abs(ref).max())
    np.testing.assert_allclose(result.explained[0], ratio, rtol=1e-3)
    cached = smol_backend.projection(FRANCE)
    np.testing.assert_array_equal(cached.coords, result.coords)


def test_encoder_projection_leaves_out_cls_and_sep():
    backend = local_backend(load_model("minilm-l6"))
    result = backend.projection("the bank of the river")
    assert result.tokens == ["the", "bank", "of", "the", "river"] and result.coords.shape == (7, 5, 2)
    kept = backend.projection("the bank of the river", ProjectionOptions(skip_first=False, skip_special=False, dims=3))
    assert kept.tokens[0] == "[CLS]" and kept.tokens[-1] == "[SEP]" and kept.coords.shape == (7, 7, 3)
    corpus = backend.projection(["the bank of the river", "money in the bank"])
    assert corpus.n_texts == 2 and corpus.text_index == [0] * 5 + [1] * 4


# ---------------------------------------------------------------- CLI


def test_cli_project_json():
    out = lens_command("project", "--model", "tiny-llama", "--prompt", "hello there", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["layers"] == ["emb", "1", "2", "3"] and data["tokens"] == list("ello there")
    coords = np.array(data["coords"])
    assert coords.shape == (4, 10, 2)
    assert data["options"]["method"] == "pca" and data["options"]["rms_scale"] is True
    assert data["options"]["skip_first"] is True and data["options"]["mode"] == "joint"


def test_cli_project_errors_and_corpus_in_process(tmp_path, capsys):
    from lens.cli import main

    assert main(["project", "--model", "tiny-llama", "--prompt", "h", "--no-cache"]) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()[-1]
    assert out.out == "" and err.startswith("error:") and "at least 2" in err and "Traceback" not in out.err
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello there\n\nthe end\n", encoding="utf-8")
    assert main(["project", "--model", "tiny-llama", "--corpus-file", str(corpus), "--json", "--dims", "3",
                 "--no-cache"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_texts"] == 2 and np.array(data["coords"]).shape == (4, 10 + 6, 3)
    assert main(["project", "--model", "tiny-llama", "--prompt", "hello", "--method", "umap", "--mode", "aligned",
                 "--no-cache"]) == 2
    assert "use PCA" in capsys.readouterr().err
