"""Geometry metrics: hand-made examples with known answers, an explicit loop-by-loop
reference on random data, bad input, and the bundled decoder and encoder."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from command import lens_command
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.examples import CORPORA
from lens.analysis.geometry import geometry_points, mean_pair_cosine, unit
from lens.options import GeometryOptions
from lens.model.loading import load_model
from lens.analysis.points import PointSet
from lens.model.tokens import word_key
from shown import as_shown

RNG = np.random.default_rng(1)


def points(X: np.ndarray, tokens: list[str], text_index: list[int] | None = None) -> PointSet:
    """A PointSet from an array [R, N, d] (positions numbered within each text)."""
    R, N, _ = X.shape
    text_index = text_index or [0] * N
    positions, seen = [], {}
    for k in text_index:
        seen[k] = seen.get(k, 0) + 1
        positions.append(seen[k])
    return PointSet(X=torch.tensor(X, dtype=torch.float32), tokens=tokens, token_ids=list(range(N)),
                    text_index=text_index, positions=positions, n_texts=len(set(text_index)),
                    layers=["emb"] + [str(i) for i in range(1, R)], model="hand", n_layers=R - 1,
                    first_norms=torch.ones(R, len(set(text_index))))


def cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- known answers


def test_identical_vectors_have_cosine_one_everywhere():
    v = RNG.normal(size=16)
    X = np.tile(v, (2, 5, 1))
    g = geometry_points(points(X, ["a", "b", "a", "c", "a"]), GeometryOptions(word="a"))
    np.testing.assert_allclose(g.anisotropy, 1, atol=1e-6)
    np.testing.assert_allclose(g.intra_similarity_raw, 1, atol=1e-6)
    np.testing.assert_allclose(g.intra_similarity, 0, atol=1e-6)  # no more alike than the baseline
    np.testing.assert_allclose(g.self_similarity_raw, 1, atol=1e-6)
    np.testing.assert_allclose(g.layer_similarity, 1, atol=1e-6)
    np.testing.assert_allclose(g.word_mev, 1, atol=1e-6)  # one direction explains everything
    np.testing.assert_allclose(g.prompt_entropy, 0, atol=1e-5)  # rank one Gram matrix
    np.testing.assert_allclose(g.norm_ratio[1:], 1, atol=1e-6)
    assert np.isnan(g.norm_ratio[0])


def test_isotropic_random_vectors_have_a_baseline_near_zero():
    X = RNG.normal(size=(1, 400, 512))
    g = geometry_points(points(X, ["t"] * 400))
    assert abs(g.anisotropy[0]) < 0.01
    # The expected spread of a mean over ~80k pairs of random 512-d cosines is ~1/sqrt(512*400).
    assert g.pc1_share[0] < 0.02  # no direction dominates


def test_orthogonal_tokens_have_full_prompt_entropy_and_right_angles():
    d = 8
    X = np.eye(d)[None, :5] * 3.0  # 5 orthogonal tokens of equal norm
    g = geometry_points(points(X, list("abcde")))
    np.testing.assert_allclose(g.prompt_entropy, 1, atol=1e-6)
    np.testing.assert_allclose(g.anisotropy, 0, atol=1e-7)
    # Steps e_{t+1} - e_t: consecutive steps meet at 120°.
    np.testing.assert_allclose(g.curvature, 120, atol=1e-4)


def test_straight_and_zigzag_paths():
    line = np.arange(6)[None, :, None] * np.ones((1, 1, 4))  # points on a ray: every step the same direction
    line = line + np.array([1.0, 0, 0, 0])
    assert geometry_points(points(line, list("abcdef"))).curvature[0] == pytest.approx(0, abs=1e-3)
    zig = np.array([[[1, 1], [2, 1], [2, 2], [3, 2], [3, 3]]], dtype=float)  # right-angle turns
    assert geometry_points(points(zig, list("abcde"))).curvature[0] == pytest.approx(90, abs=1e-4)


def test_layer_similarity_of_a_sign_flip_and_norm_growth():
    base = RNG.normal(size=(6, 10))
    X = np.stack([base, 2 * base, -base])
    g = geometry_points(points(X, list("abcdef")))
    np.testing.assert_allclose(g.layer_similarity, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-6)
    np.testing.assert_allclose(g.norm_ratio[1:], [2, 0.5], atol=1e-6)
    np.testing.assert_allclose(g.norm_mean, np.linalg.norm(X, axis=-1).mean(-1), rtol=1e-6)


def test_mean_pair_cosine_matches_explicit_pairs():
    U = unit(torch.tensor(RNG.normal(size=(3, 9, 5)) + 0.5))
    ref = [np.mean([float(U[r, i] @ U[r, j]) for i, j in itertools.permutations(range(9), 2)]) for r in range(3)]
    np.testing.assert_allclose(mean_pair_cosine(U).numpy(), ref, atol=1e-6)


# ---------------------------------------------------------------- explicit reference


def reference_metrics(X: np.ndarray, tokens: list[str], text_index: list[int], word: str) -> dict:
    """Every metric by explicit loops over tokens, pairs and texts (float64)."""
    R, N, _ = X.shape
    texts = sorted(set(text_index))
    out = {k: [] for k in ("anis", "intra", "self", "mev", "pc1", "ent", "curv", "ratio")}
    occ = [i for i, t in enumerate(tokens) if word_key(t) == word]
    for r in range(R):
        x = X[r]
        pairs = [cos(x[i], x[j]) for i in range(N) for j in range(N) if i != j]
        b = np.mean(pairs)
        out["anis"].append(b)
        intra = []
        ents, angles = [], []
        for k in texts:
            idx = [i for i in range(N) if text_index[i] == k]
            m = x[idx].mean(0)
            intra.append(np.mean([cos(x[i], m) for i in idx]))
            Z = x[idx]
            s = np.linalg.svd(Z, compute_uv=False) ** 2
            lam = s / s.sum()
            lam = lam[lam > 1e-15]
            ents.append(-(lam * np.log(lam)).sum() / math.log(len(idx)))
            for t in range(len(idx) - 2):
                v1, v2 = Z[t + 1] - Z[t], Z[t + 2] - Z[t + 1]
                angles.append(math.degrees(math.acos(np.clip(cos(v1, v2), -1, 1))))
        out["intra"].append(np.mean(intra) - b)
        out["ent"].append(np.mean(ents))
        out["curv"].append(np.mean(angles))
        cross = [cos(x[i], x[j]) for i, j in itertools.combinations(occ, 2) if text_index[i] != text_index[j]]
        out["self"].append(np.mean(cross) - b)
        s = np.linalg.svd(x[occ], compute_uv=False) ** 2
        out["mev"].append(s[0] / s.sum())
        s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
        out["pc1"].append(s[0] / s.sum())
        if r:
            out["ratio"].append(np.mean(np.linalg.norm(x, axis=1) / np.linalg.norm(X[r - 1], axis=1)))
    Un = X / np.linalg.norm(X, axis=-1, keepdims=True)
    out["layer_sim"] = np.array([[np.mean([Un[i, n] @ Un[j, n] for n in range(N)]) for j in range(R)]
                                 for i in range(R)])
    return {k: np.asarray(v) for k, v in out.items()}


def check_against_reference(g, ref, atol):
    np.testing.assert_allclose(g.anisotropy, ref["anis"], atol=atol)
    np.testing.assert_allclose(g.intra_similarity, ref["intra"], atol=atol)
    np.testing.assert_allclose(g.self_similarity, ref["self"], atol=atol)
    np.testing.assert_allclose(g.word_mev, ref["mev"], atol=atol)
    np.testing.assert_allclose(g.pc1_share, ref["pc1"], atol=atol)
    np.testing.assert_allclose(g.prompt_entropy, ref["ent"], atol=atol)
    np.testing.assert_allclose(g.curvature, ref["curv"], atol=1e3 * atol)
    np.testing.assert_allclose(g.norm_ratio[1:], ref["ratio"], rtol=atol)
    np.testing.assert_allclose(g.layer_similarity, ref["layer_sim"], atol=atol)


def test_metrics_match_explicit_loops_on_a_random_corpus():
    tokens = [" the", " bank", " was", " Bank", " of", " a", "##bank", " river", " x"]
    text_index = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    X = RNG.normal(size=(4, 9, 12)) + RNG.normal(size=12)  # a shared offset: a positive baseline
    g = geometry_points(points(X, tokens, text_index), GeometryOptions(word="bank"))
    assert g.word_count == 3 and g.word_texts == 3 and g.word == "bank"
    check_against_reference(g, reference_metrics(X, tokens, text_index, "bank"), atol=1e-5)
    assert (g.anisotropy > 0.1).all()


def test_word_problems_are_clear_errors():
    X = RNG.normal(size=(2, 6, 8))
    pts = points(X, [" the", " cat", " sat", " the", " dog", " ran"], [0, 0, 0, 1, 1, 1])
    with pytest.raises(LensError, match="'zebra' does not occur.*repeat here: the"):
        geometry_points(pts, GeometryOptions(word="zebra"))
    with pytest.raises(LensError, match="'cat' occurs 1 time in one text"):
        geometry_points(pts, GeometryOptions(word="cat"))
    single = points(X, [" the", " cat", " sat", " the", " dog", " ran"])
    g = geometry_points(single, GeometryOptions(word="the"))  # one text: pairs of positions
    assert g.self_similarity_raw[0] == pytest.approx(cos(X[0, 0], X[0, 3]), abs=1e-6)
    with pytest.raises(LensError, match="at least twice"):
        geometry_points(single, GeometryOptions(word="dog"))


# ---------------------------------------------------------------- bundled models


@pytest.fixture(scope="module")
def smol():
    return local_backend(load_model("smollm2-135m"))


def hidden(lm, text: str) -> np.ndarray:
    """[L+1, T, d] from transformers' hidden states; the last block's raw output by our own hook."""
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    last = {}
    h = lm.model.model.layers[-1].register_forward_hook(lambda m, a, o: last.setdefault("x", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            out = lm.model(ids, output_hidden_states=True)
    finally:
        h.remove()
    return torch.stack([x[0] for x in out.hidden_states[:-1]] + [last["x"].reshape(ids.shape[1], -1)]).double().numpy()


def test_bundled_geometry_against_an_independent_computation(smol):
    word, sentences = CORPORA["bank: river or money"]
    texts = sentences[:4]
    g = smol.geometry(texts, GeometryOptions(word=word))
    Hs = [hidden(smol.loaded, t)[:, 1:] for t in texts]  # first token left out; SmolLM2 adds no special tokens
    X = np.concatenate(Hs, axis=1)
    tokens = [as_shown(smol.loaded.tokenizer, i) for t in texts for i in smol.loaded.tokenizer(t)["input_ids"][1:]]
    text_index = [k for k, H in enumerate(Hs) for _ in range(H.shape[1])]
    assert g.tokens == tokens and g.text_index == text_index and g.word_count == 4
    check_against_reference(g, reference_metrics(X, tokens, text_index, word), atol=2e-4)
    first = np.mean([np.linalg.norm(hidden(smol.loaded, t)[:, 0], axis=-1) for t in texts], axis=0)
    np.testing.assert_allclose(g.first_token_norm, first, rtol=1e-3)
    # The sink: from some layer on, the first token's vector dwarfs the others (why it is left out).
    assert (g.first_token_norm / g.norm_mean).max() > 20


def test_encoder_geometry_and_self_similarity(tmp_path):
    backend = local_backend(load_model("minilm-l6"))
    word, sentences = CORPORA["bank: river or money"]
    g = backend.geometry(sentences, GeometryOptions(word=word))
    assert len(g.layers) == 7 and g.word_count == 6 and g.word_texts == 6
    assert "[CLS]" not in g.tokens and "[SEP]" not in g.tokens
    assert np.isfinite(g.self_similarity).all() and np.isfinite(g.curvature).all()
    # Contextualisation: "bank" is least alike across contexts at the top (Ethayarajh's finding).
    assert g.self_similarity_raw[-1] < g.self_similarity_raw[0]


def test_cli_geometry_json(capsys):
    out = lens_command("geometry", "--model", "tiny-gpt2", "--prompt", "the cat and the dog", "--word", "a", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    S = np.array(data["layer_similarity"])
    assert S.shape == (4, 4) and np.allclose(np.diag(S), 1, atol=1e-5) and np.allclose(S, S.T, atol=1e-6)
    assert len(data["anisotropy"]) == 4 and data["norm_ratio"][0] is None
    for key in ("intra_similarity", "prompt_entropy", "curvature", "pc1_share", "norm_mean", "self_similarity"):
        assert len(data[key]) == 4, key
    from lens.cli import main

    assert main(["geometry", "--model", "tiny-gpt2", "--prompt", "the cat", "--word", "zebra", "--no-cache"]) == 2
    got = capsys.readouterr()
    assert "does not occur" in got.err and got.out == ""
    assert main(["geometry", "--model", "tiny-gpt2", "--prompt", "the cat sat", "--no-cache"]) == 0
    assert "anisotropy" not in capsys.readouterr().err  # the table goes to stdout
