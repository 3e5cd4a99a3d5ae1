"""Saved runs: every view saved and opened again without the model gives the same figure; the database keeps
what was saved through a killed writer, and refuses what it cannot read with one line."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import load_model
from lens.runs import RunStore, open_view, save_view
from lens.views import VIEWS, render_view

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "the cat sat on the mat and the cat"
CORRUPT = "the dog sat on the mat and the cat"


@pytest.fixture(scope="module")
def backend():
    return local_backend(load_model("tiny-llama"), None)


# A suite of two pairs, as its views read it (one-character targets: the tiny model reads characters).
SUITE_TEXT = (json.dumps({"clean": PROMPT, "corrupt": CORRUPT, "target": "t", "foil": "a", "kind": "cat"}) + "\n"
              + json.dumps({"clean": "a cat sat", "corrupt": "a dog sat", "target": " ", "foil": "t", "kind": "a"})
              + "\n")


def _texts(view):
    from lens.views.entry import SUITE, TWO_PROMPTS

    return {TWO_PROMPTS: [PROMPT, CORRUPT], SUITE: SUITE_TEXT}.get(view.reads, PROMPT)


def _prompts(view) -> list[str]:
    """The texts a saved run keeps token ids of: a suite's every prompt, a pair's both."""
    from lens.views.entry import SUITE

    if view.reads == SUITE:
        return [PROMPT, CORRUPT, "a cat sat", "a dog sat"]
    return [_texts(view)] if isinstance(_texts(view), str) else _texts(view)


def _params(name: str, backend) -> dict:
    if name in ("patch", "attribute", "circuit"):  # a target the tiny tokenizer has as one token
        target = next(t for t in backend.tokenize(PROMPT) if len(backend.token_ids(t)) == 1)
        return {"target": target}
    return {}


@pytest.mark.parametrize("name", [v for v in VIEWS if v not in ("flow",)])
def test_a_saved_view_opens_again_without_the_model_and_draws_the_same(backend, tmp_path, name):
    view = VIEWS[name]
    store = RunStore(tmp_path / "runs.sqlite")
    params = _params(name, backend)
    shown = render_view(backend, name, _texts(view), **params)
    run = save_view(store, backend, name, _texts(view), params, note="seen today")
    again = store.get(run.id)
    assert again.view == name and again.note == "seen today" and again.model == backend.info().name
    assert again.token_ids == [backend.token_ids(t) for t in _prompts(view)]
    reopened = open_view(again)  # a ReplayBackend: no model behind it
    assert [f.to_plotly_json() for f in reopened.figures] == [f.to_plotly_json() for f in shown.figures]
    assert reopened.caption == shown.caption


def test_runs_are_listed_newest_first_filtered_edited_and_deleted(backend, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    a = save_view(store, backend, "logit-lens", PROMPT, {"metric": "kl"}, name="first")
    b = save_view(store, backend, "rollout", CORRUPT, {}, name="second")
    assert [r["id"] for r in store.list()] == [b.id, a.id]
    assert [r["id"] for r in store.list(view="logit-lens")] == [a.id]
    assert [r["id"] for r in store.list(text="dog")] == [b.id]
    assert store.list(model="someone-else") == []
    store.set_note(a.id, "KL falls late")
    assert store.get(a.id).note == "KL falls late" and store.get(a.id).params["metric"] == "kl"
    store.delete(b.id)
    assert [r["id"] for r in store.list()] == [a.id]
    with pytest.raises(LensError, match="no saved run"):
        store.get(b.id)
    with pytest.raises(LensError, match="no saved run"):
        store.delete(b.id)


WRITER = """
import sys
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.runs import RunStore, save_view
store, backend = RunStore(sys.argv[1]), local_backend(load_model("tiny-llama"), None)
n = 0
while True:
    save_view(store, backend, "logit-lens", "the cat sat", {}, name=f"run {n}")
    n += 1
    print(n, flush=True)
"""


def test_a_killed_writer_loses_no_run_saved_before(tmp_path):
    path = tmp_path / "runs.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        saved = 0
        deadline = time.time() + 120
        while saved < 5 and time.time() < deadline:
            saved = int(proc.stdout.readline() or saved)
        time.sleep(0.05)  # most likely in the middle of the next save
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert saved >= 5
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    store = RunStore(path)
    runs = store.list()
    assert len(runs) >= saved  # every save that returned is there (perhaps one more that committed)
    for r in runs:
        run = store.get(r["id"])
        assert run.results and open_view(run).figures


def test_an_unreadable_database_or_result_is_one_message(tmp_path, backend):
    bad = tmp_path / "runs.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LensError, match="cannot open the saved runs"):
        RunStore(bad)
    store = RunStore(tmp_path / "ok.sqlite")
    run = save_view(store, backend, "logit-lens", PROMPT, {})
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE results SET type = 'os.system' WHERE run_id = ?", (run.id,))
    db.close()
    with pytest.raises(LensError, match="unknown type"):
        store.get(run.id)


def test_a_replayed_run_says_what_it_cannot_answer(backend, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.get(save_view(store, backend, "rollout", PROMPT, {}).id)
    run.view, run.params = "logit-lens", {}  # another view than the one saved
    with pytest.raises(LensError, match="no logit lens result"):
        open_view(run)


def test_the_default_place_is_outside_the_cache(monkeypatch, tmp_path):
    from lens.runs import default_runs_path

    monkeypatch.delenv("LAYERLENS_RUNS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_runs_path() == tmp_path / "layerlens" / "runs.sqlite"
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "mine.sqlite"))
    assert default_runs_path() == tmp_path / "mine.sqlite"
    assert "cache" not in json.dumps(str(default_runs_path()))


def _cli(*args, db):
    return subprocess.run([sys.executable, "-m", "lens", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LAYERLENS_RUNS": str(db)})


def test_save_on_the_command_line_then_list_show_and_delete(tmp_path):
    db = tmp_path / "runs.sqlite"
    plain = _cli("logit-lens", "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--no-cache", db=db)
    saved = _cli("logit-lens", "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--save", "cats", "--note",
                 "the cat again", db=db)
    assert saved.returncode == 0, saved.stderr
    assert "saved as run 1" in saved.stderr and json.loads(saved.stdout) == json.loads(plain.stdout)
    listed = json.loads(_cli("runs", "list", "--json", db=db).stdout)
    assert [(r["id"], r["name"], r["view"], r["model"]) for r in listed] == [(1, "cats", "logit-lens", "tiny-llama")]
    assert set(listed[0]) >= {"id", "name", "view", "model", "created"}
    shown = json.loads(_cli("runs", "show", "1", "--json", db=db).stdout)
    assert shown["result"] == json.loads(plain.stdout) and shown["note"] == "the cat again"
    assert shown["texts"] == PROMPT and shown["token_ids"] == [json.loads(plain.stdout)["token_ids"]]
    run = RunStore(db).get(1)  # the dashboard opens it in its view, from the saved result
    assert open_view(run).figures
    assert _cli("runs", "delete", "1", db=db).returncode == 0
    gone = _cli("runs", "show", "1", db=db)
    assert gone.returncode == 2 and gone.stderr.strip() == \
        "error: no saved run 1; `python -m lens runs list` shows the saved ones"
    lonely = _cli("models", "--note", "x", db=db)
    assert lonely.returncode != 0


def test_save_is_not_confused_by_nnsight_in_the_same_process(tmp_path, monkeypatch, cli):
    """nnsight, once imported, gives every object a ``save`` method: a command run in the same process
    afterwards must not take it for ``--save``."""
    import nnsight  # noqa: F401  (what an nnsight-backed command imports)

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    got = cli("logit-lens", "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--no-cache")
    assert got.returncode == 0, got.stderr
    assert RunStore(tmp_path / "runs.sqlite").list() == []
    saved = cli("logit-lens", "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--no-cache", "--save", "x")
    assert saved.returncode == 0 and [r["name"] for r in RunStore(tmp_path / "runs.sqlite").list()] == ["x"]


def test_a_result_holding_a_strided_view_is_saved_as_its_values():
    """A result's array may be a view into a bigger one (one neuron's column of every neuron's activations):
    what is saved is its values, not the buffer it lies in."""
    import numpy as np

    from lens.results import RolloutResult
    from lens.runs.store import _decode, _encode

    grid = np.arange(60, dtype=np.float32).reshape(5, 12)
    strided = grid[:, ::3][:2]  # [2, 4], every third column: not contiguous
    assert not strided.flags["C_CONTIGUOUS"]
    r = RolloutResult(model="m", tokens=["a", "b", "c", "d"], position=3, layers=["1", "2"], rollout=strided,
                      attention=grid[3:5, 1:12:3])
    again = _decode(*_encode(r))
    np.testing.assert_array_equal(again.rollout, strided)
    np.testing.assert_array_equal(again.attention, grid[3:5, 1:12:3])
