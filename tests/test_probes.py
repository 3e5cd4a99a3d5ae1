"""Probes (lens/probes/): the logistic regression against scikit-learn's fit of the same objective and its own
optimality condition, the folds, the streams read against ``output_hidden_states``, cross-validation against a plain
loop written here, the chance band's formula; the command's JSON and bad input; the bundled model reading true vs
false and positive vs negative well above chance; a probe's direction saved and steering."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import load_model
from lens.probes.data import SHIPPED, load_set, parse_set, shipped, to_jsonl
from lens.probes.logistic import cross_validated, fit_logistic, folds_of
from lens.probes.options import ProbeOptions
from lens.probes.probe import chance_band, last_token_streams

sklearn = pytest.importorskip("sklearn.linear_model")


@pytest.fixture(scope="module")
def tiny():
    lm = load_model("tiny-llama")
    return lm, local_backend(lm, None)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    from lens.cache import ResultCache

    lm = load_model("smollm2-135m")  # its probes computed once for the module (a cache of its own)
    return lm, local_backend(lm, ResultCache(tmp_path_factory.mktemp("cache") / "results"))


def objective(X, y, w, b, lam):
    s = np.where(y > 0, 1.0, -1.0)
    return float(np.logaddexp(0, -s * (X @ w + b)).sum() + 0.5 * lam * w @ w)


# ---------------------------------------------------------------- the fit

@pytest.mark.parametrize("n, d, lam", [(60, 300, 1.0), (200, 10, 0.1), (40, 576, 10.0)])
def test_logistic_regression_matches_sklearn_and_its_optimality(n, d, lam):
    rng = np.random.default_rng(n + d)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d) + rng.normal(size=d)
    y = (X[:, 0] + X[:, 1] + rng.normal(size=n) > np.median(X[:, 0] + X[:, 1])).astype(int)
    fit = fit_logistic(X, y, lam)
    ref = sklearn.LogisticRegression(C=1.0 / lam, tol=1e-12, max_iter=100000).fit(X, y)
    w, b = ref.coef_[0], ref.intercept_[0]
    assert fit.loss == pytest.approx(objective(X, y, fit.w, fit.b, lam), rel=1e-10)
    assert fit.loss <= objective(X, y, w, b, lam) + 1e-8  # at least as low as the reference's
    np.testing.assert_allclose(fit.w, w, atol=1e-4 * max(1.0, np.abs(w).max()))
    assert fit.b == pytest.approx(b, abs=1e-4)
    # the gradient of the objective is zero at the fit
    s = np.where(y > 0, 1.0, -1.0)
    p = 1 / (1 + np.exp(s * (X @ fit.w + fit.b)))
    assert np.abs(X.T @ (-s * p) + lam * fit.w).max() < 1e-6 and abs((-s * p).sum()) < 1e-6
    assert fit_logistic(X, y, lam).w.tolist() == fit.w.tolist()  # deterministic


def test_folds_deal_each_class_evenly():
    y = np.array([1] * 10 + [0] * 7)
    f = folds_of(y, 3)
    for k in range(3):
        assert abs((y[f == k] == 1).sum() - 10 / 3) < 1 and abs((y[f == k] == 0).sum() - 7 / 3) < 1


def test_cross_validation_against_a_plain_loop():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(30, 50)), np.array([0, 1] * 15)
    X[y == 1, :3] += 1.0
    acc, per = cross_validated(X, y, 5, 1.0)
    fold, right = folds_of(y, 5), 0
    for k in range(5):
        tr, te = fold != k, fold == k
        mu, sd = X[tr].mean(0), X[tr].std(0)
        m = sklearn.LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit((X[tr] - mu) / sd, y[tr])
        hit = m.predict((X[te] - mu) / sd) == y[te]
        right += hit.sum()
        assert per[k] == pytest.approx(hit.mean())
    assert acc == pytest.approx(right / len(y))


def test_chance_band_formula():
    low, high = chance_band(0.5, 72)
    assert high == pytest.approx(0.5 + 1.96 * math.sqrt(0.25 / 72)) and low == pytest.approx(1 - high)


# ---------------------------------------------------------------- the sets

def test_a_pair_suite_probes_clean_against_corrupted():
    s = parse_set('{"clean": "a cat", "corrupt": "a dog"}\n{"clean": "the sun", "corrupt": "the moon"}\n', "p.jsonl")
    assert s.prompts == ("a cat", "a dog", "the sun", "the moon") and s.labels == (1, 0, 1, 0)
    assert s.classes == ("corrupt", "clean")


def test_shipped_sets_are_balanced_and_plain():
    for name in SHIPPED:
        s = shipped(name)
        assert 40 <= len(s.prompts) <= 80 and sum(s.labels) * 2 == len(s.labels)
        assert len(set(s.prompts)) == len(s.prompts) and s.classes[1] == SHIPPED[name][1]
        again = parse_set(to_jsonl(s), "x.jsonl")
        assert again.prompts == s.prompts and again.labels == s.labels and again.classes == s.classes


@pytest.mark.parametrize("text, says", [
    ("prompt,label\na,x\nb,y\nc,z\n", "exactly two values"),
    ("prompt,kind\na,x\nb,y\n", "no 'label' column"),
    ("prompt,label\na,x\nb,x\nc,x\nd,x\ne,y\n", "only 1 prompts labelled 'y'"),
])
def test_bad_sets_are_one_line(text, says):
    with pytest.raises(LensError, match=says):
        parse_set(text, "mine.csv")


# ---------------------------------------------------------------- the streams and the run

def test_streams_are_the_hidden_states_at_the_last_token(tiny):
    lm, b = tiny
    prompts = ["ab", "cd", "hello", "xyz", "w"]
    ids = [lm.tokenizer(p)["input_ids"] for p in prompts]
    X = last_token_streams(b.engine, ids)
    for i, t in enumerate(ids):
        with torch.no_grad():
            hs = lm.model(input_ids=torch.tensor([t]), output_hidden_states=True).hidden_states
        # rows 0..L−1 before the final norm; the last row is the output of the last block (HF's last is normed)
        for r in range(len(hs) - 1):
            np.testing.assert_allclose(X[i, r], hs[r][0, -1].double().numpy(), atol=1e-5)
    assert X.shape == (5, lm.model.config.num_hidden_layers + 1, lm.model.config.hidden_size)


def test_backend_probe_is_cross_validation_of_its_streams(tiny):
    lm, b = tiny
    s = shipped("reviews")
    r = b.probe(s, ProbeOptions(folds=4, l2=2.0))
    X = last_token_streams(b.engine, [lm.tokenizer(p)["input_ids"] for p in s.prompts])
    y = np.array(s.labels)
    for row in (1, len(r.layers) - 1):
        acc, per = cross_validated(X[:, row], y, 4, 2.0)
        assert r.accuracy[row] == pytest.approx(acc) and np.allclose(r.fold_accuracy[row], per)
    assert r.layers[0] == "emb" and len(r.layers) == lm.model.config.num_hidden_layers + 1
    assert r.chance == 0.5 and r.band == pytest.approx(chance_band(0.5, 60))
    assert r.best_layer == r.layers[int(np.argmax(r.accuracy))]
    above = [l for l, a in zip(r.layers, r.accuracy) if a > r.band[1]]
    assert r.readable_layer == (above[0] if above else None)


def test_probe_command_json_and_bad_input(tmp_path, capsys):
    csv = tmp_path / "mine.csv"
    csv.write_text("prompt,label\n" + "".join(f"nice {i},pos\nbad {i},neg\n" for i in range(6)), encoding="utf-8")
    assert main(["probe", "--model", "tiny-llama", "--set", str(csv), "--folds", "3", "--no-cache", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["neg", "pos"] and out["n"] == 12 and out["chance"] == 0.5 and out["folds"] == 3
    assert len(out["accuracy"]) == len(out["layers"]) == 4 and out["best_layer"] in out["layers"]
    assert {"band", "readable_layer", "train_accuracy", "fold_accuracy"} <= set(out)
    assert main(["probe", "--model", "tiny-llama", "--set", str(csv), "--folds", "9", "--no-cache", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["folds"] == 6 and "6 folds, not 9" in err  # one fold per prompt of a label
    for args, says in [(["--set", "nope"], "unknown probe set"), (["--set", str(csv), "--folds", "1"], "folds"),
                       (["--set", str(csv), "--prompt", "x"], "not a prompt"), ([], "give the labelled set"),
                       (["--set", str(tmp_path / "none.csv")], "cannot read"),
                       (["--set", str(csv), "--save-vector", "v"], "--layer")]:
        assert main(["probe", "--model", "tiny-llama", "--no-cache", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error:") and says in err, err


# ---------------------------------------------------------------- the bundled model

def test_bundled_model_reads_truth_and_sentiment(bundled):
    _, b = bundled
    tf = b.probe(shipped("true-false"), ProbeOptions())
    rv = b.probe(shipped("reviews"), ProbeOptions())
    print("true-false", np.round(tf.accuracy, 3).tolist(), tf.best_layer, tf.readable_layer)
    print("reviews", np.round(rv.accuracy, 3).tolist(), rv.best_layer, rv.readable_layer)
    assert tf.accuracy.max() >= 0.68 and tf.accuracy.max() > tf.band[1] + 0.05  # 72 prompts: band top 61.5 %
    assert rv.accuracy.max() >= 0.95 and rv.readable_layer is not None
    # the embeddings of the last token ('.') carry nothing: every prompt's stream there is the same
    assert tf.accuracy[0] <= tf.band[1] and np.all(tf.directions[0] == 0)


def test_probe_direction_saved_from_the_command(tiny, tmp_path, monkeypatch, capsys):
    """probe --save-vector saves row layer − 1's direction, its length the gap between the classes' mean streams
    along it."""
    from lens.steering.store import VectorStore

    monkeypatch.setenv("LAYERLENS_VECTORS", str(tmp_path / "v.sqlite"))
    lm, b = tiny
    assert main(["probe", "--model", "tiny-llama", "--set", "reviews", "--layer", "2", "--save-vector", "pos-neg",
                 "--no-cache", "--json"]) == 0
    capsys.readouterr()
    v = VectorStore().get("pos-neg")
    s = shipped("reviews")
    np.testing.assert_allclose(v.vector, b.probe(s, ProbeOptions()).directions[1])
    assert v.layer == 2 and v.source == "probe" and v.how["set"] == "reviews" and v.model == "tiny-llama"
    X = last_token_streams(b.engine, [lm.tokenizer(p)["input_ids"] for p in s.prompts])[:, 1]
    y = np.array(s.labels)
    u = v.vector / np.linalg.norm(v.vector)
    assert np.linalg.norm(v.vector) == pytest.approx((X[y == 1].mean(0) - X[y == 0].mean(0)) @ u, rel=1e-9)
    assert (X[y == 1] @ u).mean() > (X[y == 0] @ u).mean()  # it points from negative to positive


def test_bundled_probe_direction_steers(bundled):
    """Steering along the reviews probe's direction (positive − negative) raises " great" after "The food was"."""
    from lens.steering.options import SteerOptions

    _, b = bundled
    p = b.steer("The food was", SteerOptions(vector="probe", probe_set="reviews", layer=12, coef=6.0, target=" great",
                                             max_new_tokens=6, dose=False, grid=False))
    r = b.probe(shipped("reviews"), ProbeOptions())
    assert p.vector_norm == pytest.approx(float(np.linalg.norm(r.directions[11])))
    print("steered:", repr(p.plain_text), "->", repr(p.steered_text), p.lens_plain[-1], p.lens_steered[-1])
    assert p.lens_steered[-1] > p.lens_plain[-1] + 0.5
