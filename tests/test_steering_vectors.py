"""Steering vectors saved by name (lens/steering/store.py): saved and read back exactly, reused from the command line
and the backend, refused from a model of another width, a damaged or missing one named in one line, and a writer
killed in the middle of a save leaving every vector saved before it whole."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import load_model
from lens.steering.options import SteerOptions
from lens.steering.store import SavedVector, VectorStore

PROMPT = "the cat sat"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_VECTORS", str(tmp_path / "vectors.sqlite"))
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    return VectorStore()


@pytest.fixture(scope="module")
def tiny():
    lm = load_model("tiny-llama")
    return lm, local_backend(lm, None)


def vec(d=16, seed=0):
    return np.random.default_rng(seed).normal(size=d)


def hf_contrast(model, tok, pos, neg, layer):
    def last(text):
        with torch.no_grad():
            return model(input_ids=torch.tensor([tok(text)["input_ids"]]),
                         output_hidden_states=True).hidden_states[layer - 1][0, -1].double()
    return (last(pos) - last(neg)).numpy()


def test_saved_and_read_back_exactly(store):
    v = vec()
    store.save(SavedVector("love − hate L8", "m", "fp", 8, "contrast", {"positive": ["a"], "negative": ["b"]}, v))
    store.save(SavedVector("tok", "m", "fp", 2, "token", {"token": " x"}, vec(seed=1)))
    got = store.get("love − hate L8")
    assert got.vector.dtype == np.float64 and np.array_equal(got.vector, v)  # bit for bit
    assert got.layer == 8 and got.how == {"positive": ["a"], "negative": ["b"]} and got.model == "m"
    assert set(store.names()) == {"love − hate L8", "tok"}
    rows = store.list()
    assert {r["name"] for r in rows} == {"love − hate L8", "tok"} and all("error" not in r for r in rows)
    # saving a name again replaces it
    store.save(SavedVector("tok", "m", "fp", 3, "token", {"token": " y"}, vec(seed=2)))
    assert store.get("tok").layer == 3 and np.array_equal(store.get("tok").vector, vec(seed=2))
    store.delete("tok")
    assert store.names() == ["love − hate L8"]


def test_missing_damaged_and_bad_names_are_one_line(store):
    store.save(SavedVector("good", "m", "fp", 1, "contrast", {}, vec()))
    store.save(SavedVector("bad", "m", "fp", 1, "contrast", {}, vec()))
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE vectors SET vector = ? WHERE name = 'bad'", (b"\x00garbage",))
    db.close()
    for call, says in [(lambda: store.get("nope"), "no saved vector “nope”"),
                       (lambda: store.get("bad"), "is damaged"), (lambda: store.delete("nope"), "no saved vector"),
                       (lambda: store.save(SavedVector("", "m", "fp", 1, "contrast", {}, vec())), "name"),
                       (lambda: store.save(SavedVector("a/b", "m", "fp", 1, "contrast", {}, vec())), "name"),
                       (lambda: store.save(SavedVector("z", "m", "fp", 1, "contrast", {}, np.zeros(4))), "zero")]:
        with pytest.raises(LensError, match=says) as e:
            call()
        assert "\n" not in str(e.value)
    rows = {r["name"]: r for r in store.list()}
    assert "damaged" in rows["bad"]["error"] and "error" not in rows["good"]
    assert np.array_equal(store.get("good").vector, vec())


def test_a_writer_killed_mid_save_leaves_the_saved_vectors_whole(store):
    store.save(SavedVector("kept", "m", "fp", 1, "contrast", {}, vec()))
    # A writer that dies (SIGKILL) inside its transaction, after writing its row, before committing it.
    code = (f"import os, sqlite3\ndb = sqlite3.connect({str(store.path)!r}, isolation_level=None)\n"
            "db.execute('PRAGMA journal_mode=WAL')\ndb.execute('BEGIN')\n"
            "db.execute(\"DELETE FROM vectors\")\n"
            "db.execute(\"INSERT INTO vectors VALUES ('half', 'm', 'fp', 4, 1, 'contrast', '{}', 1.0, x'00', 0)\")\n"
            "os.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == -9
    assert VectorStore().names() == ["kept"] and np.array_equal(VectorStore().get("kept").vector, vec())


def test_cli_saves_reuses_lists_shows_and_deletes(store, tiny, capsys):
    lm, _ = tiny
    base = ["steer", "--model", "tiny-llama", "--prompt", PROMPT, "--coef", "6", "--max-new-tokens", "6",
            "--no-cache", "--no-dose", "--json"]
    assert main([*base, "--positive", "good", "--negative", "bad", "--layer", "2", "--save-vector", "gb"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*base, "--vector", "gb"]) == 0  # its layer, 2, from the saved vector
    again = json.loads(capsys.readouterr().out)
    assert again["layer"] == 2 and again["vector"] == "saved" and "saved “gb”" in again["vector_label"]
    assert again["steered"] == first["steered"] and again["vector_norm"] == pytest.approx(first["vector_norm"])
    assert again["target"] == first["target"]  # the default target from the texts it was made from
    assert main(["vectors", "show", "gb", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(shown["vector"], hf_contrast(lm.model, lm.tokenizer, "good", "bad", 2), atol=1e-5)
    assert shown["how"] == {"positive": ["good"], "negative": ["bad"]} and shown["model"] == "tiny-llama"
    assert main(["vectors", "list", "--json"]) == 0
    assert [v["name"] for v in json.loads(capsys.readouterr().out)] == ["gb"]
    assert main(["vectors", "delete", "gb"]) == 0
    capsys.readouterr()
    for args, says in [([*base, "--vector", "gb"], "no saved vector “gb”"),
                       (["vectors", "show", "gb"], "no saved vector"),
                       ([*base, "--vector", "x", "--token", "a", "--layer", "2"], "one steering vector"),
                       ([*base, "--positive", "a", "--negative", "b"], "--layer")]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error:") and says in err, err


def test_a_vector_of_another_width_is_refused(store, tiny):
    _, b = tiny
    store.save(SavedVector("wide", "smollm2-135m", "fp", 2, "contrast", {}, vec(576)))
    with pytest.raises(LensError, match="576 numbers .* tiny-llama's residual stream has 32: it belongs to another"):
        b.steer(PROMPT, SteerOptions(vector="saved", saved="wide", layer=2, max_new_tokens=2))


def test_saved_vector_steers_as_its_numbers_do(store, tiny):
    """A saved vector is added as it is: the same run as a token vector of the same numbers."""
    lm, b = tiny
    t = lm.tokenizer("x", add_special_tokens=False)["input_ids"][0]
    w = lm.model.get_output_embeddings().weight[t].double().detach().numpy()
    store.save(SavedVector("x-row", "tiny-llama", "fp", 2, "token", {"token": "x"}, w))
    a = b.steer(PROMPT, SteerOptions(vector="saved", saved="x-row", layer=2, coef=3.0, max_new_tokens=5, dose=False))
    ref = b.steer(PROMPT, SteerOptions(vector="token", token="x", layer=2, coef=3.0, max_new_tokens=5, dose=False))
    assert a.steered_ids == ref.steered_ids and a.target == ref.target == "x"
    np.testing.assert_allclose(a.grid_difference, ref.grid_difference, atol=1e-6)
    # saved again under the same name with other numbers: not the cached run of the old numbers
    store.save(SavedVector("x-row", "tiny-llama", "fp", 2, "token", {"token": "x"}, -w))
    flipped = b.steer(PROMPT, SteerOptions(vector="saved", saved="x-row", layer=2, coef=3.0, max_new_tokens=5,
                                           dose=False))
    assert flipped.lens_steered[-1] < a.lens_steered[-1]


def test_steering_vector_is_what_the_run_adds(tiny):
    lm, b = tiny
    o = SteerOptions(positive=("good",), negative=("bad",), layer=3, coef=1.0)
    v = b.steering_vector(o, "n")
    np.testing.assert_allclose(v.vector, hf_contrast(lm.model, lm.tokenizer, "good", "bad", 3), atol=1e-5)
    assert v.layer == 3 and v.source == "contrast" and v.model == "tiny-llama"


def test_vectors_live_beside_the_saved_runs(tmp_path, monkeypatch):
    from lens.runs.store import default_runs_path
    from lens.steering.store import default_vectors_path

    monkeypatch.delenv("LAYERLENS_VECTORS", raising=False)
    for runs in (None, str(tmp_path / "elsewhere" / "runs.sqlite")):
        if runs:
            monkeypatch.setenv("LAYERLENS_RUNS", runs)
        else:
            monkeypatch.delenv("LAYERLENS_RUNS", raising=False)
            monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        assert default_vectors_path() == default_runs_path().with_name("vectors.sqlite")
        assert "cache" not in default_vectors_path().parts
