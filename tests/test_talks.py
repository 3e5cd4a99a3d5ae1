"""Talk files (lens/talks/): save → load gives the same scenes, a broken file is refused in one line, the shipped
tour's scenes draw exactly the tour's charts, a pasted link becomes a scene, and the exported deck holds each
scene's chart as the registry draws it, with no request leaving the file; the talk command's bad input."""
from __future__ import annotations

import json
import re

import pytest

from lens.errors import LensError
from lens.talks import (MAX_SCENES, Scene, Talk, load_named, load_talk, page_link, parse_talk, resolve, save_named,
                        save_talk, saved_talks, scene_from_url, talks_dir, tour_talk)
from lens.tour import STEPS, chart_params, link_query
from lens.views import PAGES, VIEWS

TINY = {"model": "tiny-llama"}


def five_scenes() -> Talk:
    return Talk("Inside a tiny model", (
        Scene("logit_lens", {**TINY, "prompt": "abcab", "metric": "entropy"}, "Entropy", "Read bottom to top."),
        Scene("attention", {**TINY, "prompt": "abcab", "view": "Heads", "head_metric": "prev_token"}, "Heads",
              question="Which layer has the previous-token head?", answer="The first one."),
        Scene("logit_lens", {**TINY, "prompt": "abcab", "metric": "target_rank", "target": "b"}, "Rank of b"),
        Scene("attention", {**TINY, "prompt": "abcab", "view": "Rollout & flow"}, "Rollout", "ünïcode ✓ notes"),
        Scene("patching", {**TINY, "clean": "abcab", "corrupt": "abdab", "patch_target": "c", "foil": "d"},
              "Patching"),
    ))


def test_round_trip_save_load_same_scenes(tmp_path):
    talk = five_scenes()
    path = save_talk(talk, tmp_path / "t.json")
    again = load_talk(path)
    assert again == talk and again.scenes[3].notes == "ünïcode ✓ notes"
    assert json.loads(path.read_text("utf-8")) == talk.to_dict()  # the file is the plain format
    assert set(talk.to_dict()["scenes"][0]) == {"title", "view", "params", "notes", "question", "answer"}
    assert save_talk(again, tmp_path / "t2.json").read_bytes() == path.read_bytes()


def test_edits_reorder_delete_add():
    talk = five_scenes()
    moved = talk.moved(1, -1)
    assert [s.title for s in moved.scenes][:2] == ["Heads", "Entropy"]
    assert talk.moved(0, -1) == talk and talk.moved(4, 1) == talk  # the ends do not move further
    assert [s.title for s in talk.deleted(2).scenes] == ["Entropy", "Heads", "Rollout", "Patching"]
    assert talk.edited(0, notes="new").scenes[0].notes == "new"


def test_saved_talks_live_beside_the_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("LAYERLENS_TALKS", raising=False)
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "data" / "runs.sqlite"))
    assert talks_dir() == tmp_path / "data" / "talks"
    save_named(five_scenes(), "My talk!")
    assert saved_talks() == ["My-talk"] and load_named("My-talk") == five_scenes()
    assert (tmp_path / "data" / "talks" / "My-talk.json").exists()
    with pytest.raises(LensError, match="no saved talk named 'other'"):
        load_named("other")


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400, text
    return text


def good() -> dict:
    return five_scenes().to_dict()


@pytest.mark.parametrize("data, says", [
    ("{not json", "not valid JSON (line 1, column 2"),
    (b"\xff\xfe\x00", "not UTF-8"),
    ("[1, 2]", "a talk is an object"),
    ({"title": "t", "scenes": {}}, "scenes must be a list"),
    ({"title": 5, "scenes": []}, "title must be text, not int"),
    ({"title": "t", "scenes": [], "extra": 1}, "no field 'extra'"),
    ({"title": "t", "scenes": [{"view": "nowhere"}]}, "scene 1: unknown view 'nowhere'"),
    ({"title": "t", "scenes": [{"view": "runs"}]}, "unknown view 'runs'"),
    ({"title": "t", "scenes": [{"title": "x"}]}, "scene 1 names no view"),
    ({"title": "t", "scenes": [{"view": 3}]}, "view must be text, not int"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "params": {"stride": 5}}]},
     "URL parameter 'stride' must be text, not int"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "params": ["a"]}]}, "params must be an object"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "notes": ["a"]}]}, "notes must be text, not list"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "answer": "x"}]}, "has an answer but no question"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "colour": "x"}]}, "no field 'colour'"),
    ({"title": "t", "scenes": [{"view": "logit_lens"}, "x"]}, "scene 2 must be an object"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "params": {"stride": "five"}}]},
     "scene 1: URL parameter stride: 'five' is not an integer"),
    ({"title": "t", "scenes": [{"view": "logit_lens", "params": {"metric": "colourfulness"}}]},
     "URL parameter metric: 'colourfulness' is not one of top-1 probability, entropy"),
    ({"title": "t", "scenes": [{"view": "attention", "params": {"view": "Nothing"}}]},
     "view='Nothing' opens no view of the attention page"),
    ({"title": "t", "scenes": [{"view": "projection", "params": {"method": "tsne"}}]}, "'tsne' is not one of"),
    ({"title": "t", "scenes": [{"view": "logit_lens"}] * (MAX_SCENES + 1)}, f"at most {MAX_SCENES}"),
    ({"title": "x" * 3_000_000, "scenes": []}, "a talk file is at most 2 MB"),
    ({"title": "t", "scenes": [{"view": "suites"}]}, "reads a suite file"),
    ({"title": "t", "scenes": [{"view": "patching", "params": {"clean": "a", "corrupt": "b", "patch_target": ""}}]},
     "need a target token"),
    ({"title": "t", "scenes": [{"view": "generate", "params": {"tab": "Sampling on the spot"}}]},
     "“Sampling on the spot” tab is a live panel of controls and a table: a talk draws its Lens, token by token, "
     "Where each token looked tabs"),
    ({"title": "t", "scenes": [{"view": "patching", "params": {"tab": "cell"}}]},
     "“Patch one cell” tab has no exported view"),
    ({"title": "t", "scenes": [{"view": "anatomy", "params": {"tab": "Bones"}}]},
     "tab='Bones' is not one of the Layer anatomy page's tabs: Norms & change, Skip & swap"),
    ({"title": "t", "scenes": [{"view": "neurons", "params": {"top": "1.5"}}]},
     "URL parameter top: '1.5' is not an integer"),
])
def test_bad_files_one_line(tmp_path, data, says):
    path = tmp_path / "bad.json"
    path.write_bytes(data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode())
    with pytest.raises(LensError) as exc:
        load_talk(path)
    text = _one_line(exc)
    assert says in text and text.startswith("bad.json"), text


def test_missing_file_and_refused_save(tmp_path):
    with pytest.raises(LensError, match="cannot read"):
        load_talk(tmp_path / "none.json")
    with pytest.raises(LensError, match="unknown view"):  # a talk that would not load again is not written
        save_talk(Talk("t", (Scene("nowhere"),)), tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_shipped_tour_scenes_draw_the_tour_charts():
    talk = tour_talk()
    shows = [(step, s) for step in STEPS for s in step.shows]
    assert len(talk.scenes) == len(shows) >= 9
    for scene, (step, shown) in zip(talk.scenes, shows):
        assert scene.view in PAGES and scene.params == link_query(shown)  # the page's own URL query
        r = resolve(scene)
        assert r.view == shown.view and r.view in VIEWS and VIEWS[r.view].path == scene.view
        assert r.texts == (list(shown.texts) if isinstance(shown.texts, tuple) else shown.texts)
        assert r.params == chart_params(shown) and r.unused == ()
        assert step.title in scene.title and step.notice in scene.notes
    assert parse_talk(talk.to_json()) == talk


def test_a_pasted_link_becomes_a_scene():
    s = scene_from_url("http://localhost:8501/attention?view=Heads&head_metric=prev_token&prompt=Hi+there"
                       "&present=1&talk=x&scene=2&head=L1H2", "Heads")
    assert s.view == "attention" and s.title == "Heads"
    assert s.params == {"view": "Heads", "head_metric": "prev_token", "prompt": "Hi there", "head": "L1H2"}
    r = resolve(s)
    assert (r.view, r.texts, r.params["metric"], r.params["layer"]) == ("heads", "Hi there", "prev_token", None)
    assert r.unused == ("head",)  # the page's own highlight: kept in the scene, not part of the view's drawing
    assert resolve(scene_from_url("/logit-lens?stride=3")).params["stride"] == 3
    assert resolve(scene_from_url("attention?view=Rollout+%26+flow&flow=true")).view == "flow"
    corpus = resolve(scene_from_url("/projection?source=Corpus&corpus=one+bank%0Atwo+banks&corpus_word=bank"
                                    "&method=UMAP&rms=true"))
    assert (corpus.texts, corpus.params["word"], corpus.params["method"], corpus.params["rms_scale"]) == (
        ["one bank", "two banks"], "bank", "umap", True)
    # Every page's settings are read (tests/test_talk_links.py holds each page to its boxes).
    r = resolve(scene_from_url("/generate?prompt=abc&gen_stride=3&tab=Where+each+token+looked&decoding=Sampled"))
    assert (r.view, r.texts, r.unused) == ("generate", "abc", ())
    assert (r.params["stride"], r.params["chart"], r.params["temperature"]) == (3, "attention", 0.8)
    # A multi-choice box's repeated key: kept one value per line, given back to the page as the repeated key.
    s = scene_from_url("/patching?tab=noise&noise_on=2%C2%B7c&noise_on=3%C2%B7a")
    assert s.params["noise_on"] == "2·c\n3·a" and resolve(s).params["subject"] == (2, 3)
    assert page_link(s).count("noise_on=") == 2
    # A clicked lens cell opens Show the work under the heatmap: the scene is the heatmap, the cell named as not drawn.
    r = resolve(scene_from_url("/logit_lens?metric=KL+to+final&panel=Show+the+work&cell_layer=3&cell_pos=2"))
    assert (r.view, r.params["metric"], r.unused) == ("logit-lens", "kl", ("cell_layer", "cell_pos"))
    for url, says in (("", "paste a LayerLens link"), ("http://localhost:8501/", "home page"),
                      ("http://localhost:8501/nowhere?x=1", "unknown view 'nowhere'"),
                      ("/logit_lens?top_k=many", "is not an integer")):
        with pytest.raises(LensError, match=says):
            scene_from_url(url)


# ---------------------------------------------------------------- the deck

@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    """The five-scene talk exported with the command, and the same scenes drawn through the registry."""
    from lens.cli import main
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.talks import draw

    folder = tmp_path_factory.mktemp("deck")
    save_talk(five_scenes(), folder / "talk.json")
    assert main(["talk", "export", str(folder / "talk.json"), "--out", str(folder / "deck.html"), "--no-cache"]) == 0
    loaded = load_model("tiny-llama")
    backend = local_backend(loaded, None)
    return (folder / "deck.html").read_text("utf-8"), [draw(backend, s)[0] for s in five_scenes().scenes], loaded


def plain(value):
    """A figure's array as numbers: plotly writes numpy arrays as base64 ("bdata") for plotly.js to decode."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return a.reshape([int(n) for n in str(value["shape"]).split(",")]) if "shape" in value else a
    return np.asarray(value, dtype=object) if value is not None else None


def _figures(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="deck-figures">(.*?)</script>', html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_deck_holds_every_scene_drawn_from_its_numbers(deck):
    import plotly.io as pio

    html, rendered, loaded = deck
    figs = _figures(html)
    assert len(figs) == 5 and html.count('<section class="scene"') == 5
    for i, (scene, view) in enumerate(zip(five_scenes().scenes, rendered)):
        fig = figs[f"fig-{i}"]
        want = json.loads(pio.to_json(view.figures[0], validate=False))
        assert [t["type"] for t in fig["data"]] == [t["type"] for t in want["data"]]
        for got, exp in zip(fig["data"], want["data"]):  # the same numbers as the view on its page
            for key in ("z", "x", "y", "text"):
                a, b = plain(got.get(key)), plain(exp.get(key))
                assert (a is None) == (b is None) and (a is None or (a.shape == b.shape and (a == b).all())), (
                    scene.title, key)
        assert f"<h1>{scene.title}</h1>" in html and f'data-view="{view.view.name}"' in html
    # The entropy scene's cells are the lens's own entropies (tiny-llama, independent of the figure code).
    lens = rendered[0].results[0]
    import numpy as np

    import torch

    z = plain(figs["fig-0"]["data"][0]["z"]).astype(float)
    assert z.shape == np.shape(lens.entropy) and np.allclose(z, np.asarray(lens.entropy, float), atol=1e-5)
    # Its top row is the model's own output: the entropy of HF's softmax at every position.
    with torch.no_grad():
        ids = torch.tensor([loaded.tokenizer("abcab")["input_ids"]])
        logp = torch.log_softmax(loaded.model(ids).logits[0].double(), -1)
    assert np.allclose(z[-1], -(logp.exp() * logp).sum(-1).numpy(), atol=1e-4)
    assert "Which layer has the previous-token head?" in html
    assert '<div class="answer" hidden><b>Answer.</b> The first one.</div>' in html
    assert '<aside class="notes" hidden><b>Notes.</b> Read bottom to top.</aside>' in html


def test_deck_makes_no_network_request(deck):
    html, _, _ = deck
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I)
    assert "Plotly.newPlot" in html and "plotly.js v" in html.lower() or "plotly.js" in html  # inlined, offline
    assert len(html) > 3_000_000  # plotly.js itself is in the file


@pytest.mark.parametrize("args, says", [
    (["talk", "export", "missing.json", "--out", "d.html"], "no talk file missing.json"),
    (["talk", "export", "tour", "--out", "deck.pdf"], "name a .html file"),
    (["talk", "show", "no-such-talk"], "no talk 'no-such-talk'"),
])
def test_talk_command_bad_input_one_line_exit_2(cli, tmp_path, args, says, monkeypatch):
    monkeypatch.setenv("LAYERLENS_TALKS", str(tmp_path))
    out = cli(*args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr, out.stderr


def test_a_scene_that_cannot_be_drawn_is_named(cli, tmp_path):
    talk = Talk("t", (five_scenes().scenes[0], Scene("patching", {**TINY, "clean": "abcab", "corrupt": "abcabc",
                                                                  "patch_target": "c"}, "Two lengths")))
    save_talk(talk, tmp_path / "t.json")
    out = cli("talk", "export", str(tmp_path / "t.json"), "--out", str(tmp_path / "d.html"), "--no-cache")
    assert out.returncode == 2 and not (tmp_path / "d.html").exists()
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: scene 2 (Two lengths): ") and "tokens" in last, out.stderr


def test_talk_command_bad_file_and_show_json(cli, tmp_path):
    (tmp_path / "bad.json").write_text('{"title": "t", "scenes": [{"view": "nowhere"}]}')
    out = cli("talk", "show", str(tmp_path / "bad.json"))
    assert out.returncode == 2 and "scene 1: unknown view 'nowhere'" in out.stderr and out.stderr.count("\n") == 1
    save_talk(five_scenes(), tmp_path / "t.json")
    out = cli("talk", "show", str(tmp_path / "t.json"), "--json")
    got = json.loads(out.stdout)
    assert out.returncode == 0 and got["title"] == "Inside a tiny model"
    assert [s["draws"]["view"] for s in got["scenes"]] == ["logit-lens", "heads", "logit-lens", "rollout", "patch"]
    assert got["scenes"][4]["draws"]["texts"] == ["abcab", "abdab"] and got["scenes"][0]["draws"]["model"] == "tiny-llama"
