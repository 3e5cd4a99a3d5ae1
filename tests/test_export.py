"""Views by name (lens.views) and their exports: one self-contained HTML file that carries the
numbers and opens with the network off, SVG / PNG images drawn by kaleido and the local Chromium,
and ``python -m lens export`` with one-line errors."""
from __future__ import annotations

import base64
import json
import re
from html import escape

import numpy as np
import pytest

from command import lens_command
from lens.errors import LensError
from lens.export import export_view, html_page, view_page
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.serialize import to_json_dict
from lens.views import VIEWS, render_view
from lens.views.entry import SUITE, TEXTS, TWO_PROMPTS

PROMPT = "hello there, the end; see me here"
CORPUS = ["the bank of the river", "money in the bank"]


@pytest.fixture(scope="module")
def backend():
    return local_backend(load_model("tiny-llama"), None)


def numbers_in(html: str) -> list:
    blocks = re.findall(r'<script type="application/json" id="numbers-\d+">(.*?)</script>', html, re.S)
    return [json.loads(b.replace("<\\/", "</")) for b in blocks]


@pytest.mark.parametrize("name", list(VIEWS))
def test_every_view_renders_and_exports_its_numbers(backend, name, tmp_path):
    reads = VIEWS[name].reads
    suite = ('{"clean": "The cat sat on", "corrupt": "The dog ran on", "target": "t", "foil": "a"}\n'
             '{"clean": "A cat sat by", "corrupt": "A dog ran by", "target": "e", "foil": "o"}\n')  # one-char targets
    texts = {TEXTS: CORPUS, TWO_PROMPTS: ["The cat sat on", "The dog ran on"], SUITE: suite}.get(reads, PROMPT)
    rendered = render_view(backend, name, texts, **({"target": "t", "foil": "a"} if reads == TWO_PROMPTS else {}))
    assert rendered.figures and rendered.results and rendered.view.about
    out = export_view(rendered, tmp_path / f"{name}.html")
    html = out[0].read_text(encoding="utf-8")
    # The numbers in the file are the result's own, field by field.
    (numbers,) = numbers_in(html)
    expected = json.loads(json.dumps([to_json_dict(r) for r in rendered.results], allow_nan=True))
    assert numbers == expected
    assert "<script src" not in html and "<link" not in html  # nothing fetched from elsewhere
    assert html.count("Plotly.newPlot") == len(rendered.figures)
    for paragraph in rendered.view.about:
        assert escape(paragraph) in html


def test_view_options_are_checked(backend):
    with pytest.raises(LensError, match="unknown view"):
        render_view(backend, "spectrum", PROMPT)
    with pytest.raises(LensError, match="no option threshold"):
        render_view(backend, "rollout", PROMPT, threshold=0.1)
    with pytest.raises(LensError, match="unknown colour metric"):
        render_view(backend, "logit-lens", PROMPT, metric="loudness")
    with pytest.raises(LensError, match="one prompt"):
        render_view(backend, "routes", CORPUS)


def test_the_lens_export_states_what_the_heatmap_shows(backend, tmp_path):
    rendered = render_view(backend, "logit-lens", PROMPT, metric="entropy", top_k=3)
    r = rendered.results[0]
    html = view_page(rendered)
    (numbers,) = numbers_in(html)
    np.testing.assert_allclose(np.array(numbers[0]["entropy"]), r.entropy, rtol=1e-6)
    fig = json.loads(re.search(r'Plotly.newPlot\(\s*"fig-0-0",\s*(\[.*?\]),\s*\{', html, re.S).group(1))
    z = fig[0]["z"]  # plotly writes arrays as typed, base64-encoded buffers
    z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape([int(n) for n in str(z["shape"]).split(",")]) if "bdata" in z else z
    np.testing.assert_allclose(np.asarray(z, float), r.entropy, rtol=1e-6)  # the colours are the entropy


def test_html_escapes_what_a_prompt_could_inject():
    page = html_page("t", [__import__("lens.export", fromlist=["Section"]).Section(
        "x", paragraphs=("a <b>",), numbers=None, prompt="</script><script>alert(1)</script>")])
    assert "<script>alert(1)" not in page and "&lt;/script&gt;" in page


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_static_images_are_drawn_by_the_local_chromium(backend, tmp_path, fmt):
    rendered = render_view(backend, "rollout", PROMPT)
    (path,) = export_view(rendered, tmp_path / f"rollout.{fmt}")
    data = path.read_bytes()
    if fmt == "svg":
        assert data.startswith(b"<svg") and b"rollout" in data.lower()
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (w, h) == (1920, 1080)  # 1600×900 at scale 1.2: slide resolution


cli = lens_command


def test_cli_export_writes_an_html_file_and_says_where(tmp_path):
    out = tmp_path / "lens.html"
    run = cli("export", "--view", "logit-lens", "--model", "tiny-gpt2", "--prompt", PROMPT, "--metric", "kl",
              "--out", str(out), "--no-cache")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert "Logit lens" in html and "hello there" in html and numbers_in(html)
    assert not list(tmp_path.glob(".*.part"))  # written in one piece


@pytest.mark.parametrize("args, message", [
    (["--view", "routes", "--model", "minilm-l6", "--prompt", "hi there", "--out", "{tmp}/r.html"],
     "routes do not apply"),
    (["--view", "rollout", "--model", "tiny-gpt2", "--prompt", "hi", "--out", "/no/such/folder/r.html"],
     "cannot write /no/such/folder/r.html"),
    (["--view", "rollout", "--model", "tiny-gpt2", "--prompt", "hi", "--out", "{tmp}/r.txt"], "name a .html"),
    (["--view", "rollout", "--model", "tiny-gpt2", "--prompt", "hi", "--threshold", "0.1", "--out", "{tmp}/r.html"],
     "takes no --threshold"),
    (["--view", "logit-lens", "--model", "tiny-gpt2", "--prompt", "  ", "--out", "{tmp}/r.html"], "white space"),
])
def test_cli_export_errors_are_one_line(tmp_path, args, message):
    run = cli("export", *[a.replace("{tmp}", str(tmp_path)) for a in args], "--no-cache")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not list(tmp_path.iterdir())
