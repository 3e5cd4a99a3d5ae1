"""A view exported as code runs as it is: the script prints the same JSON as the command's --json, from
another folder; the notebook's cells, run top to bottom, print the same numbers and draw the figure."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "the cat's “quote” sat\non the mat"  # quotes, a non-ASCII character and a new line, written as literals


def lens(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "lens", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=_env())


def _env():
    # As an installed LayerLens (pip install -e .) would be found from any folder.
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(path: Path) -> dict | list:
    run = subprocess.run([sys.executable, path.name], cwd=path.parent, capture_output=True, text=True, timeout=300,
                         env=_env())
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


CASES = [
    ("logit-lens", ["--metric", "kl", "--target", " the"], ["logit-lens", "--target", " the"]),
    ("rollout", ["--position", "-2"], ["rollout", "--position", "-2"]),
    ("heads", [], ["heads"]),
]


@pytest.mark.parametrize("view,export_args,command", CASES, ids=[c[0] for c in CASES])
def test_the_script_prints_what_the_command_prints(tmp_path, view, export_args, command):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    script = folder / "run.py"
    made = lens("export", "--view", view, "--model", "tiny-llama", "--prompt", PROMPT, *export_args, "--out",
                str(script))
    assert made.returncode == 0, made.stderr
    direct = lens(*command, "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--no-cache")
    assert direct.returncode == 0, direct.stderr
    assert _run(script) == json.loads(direct.stdout)


def test_the_bundled_model_script_and_notebook(tmp_path):
    script, book = tmp_path / "run.py", tmp_path / "lens.ipynb"
    for out in (script, book):
        made = lens("export", "--view", "logit-lens", "--prompt", "The capital of France is", "--out", str(out))
        assert made.returncode == 0 and made.stdout.strip() == str(out), made.stderr
    direct = json.loads(lens("logit-lens", "--prompt", "The capital of France is", "--json").stdout)
    printed = _run(script)
    assert printed["top_tokens"] == direct["top_tokens"] and printed["final_prediction"][-1] == " Paris"
    # The notebook, cell after cell in one fresh Python (as a kernel runs it), the figure drawn to a file.
    cells = json.loads(book.read_text(encoding="utf-8"))["cells"]
    assert [c["cell_type"] for c in cells][:2] == ["markdown", "code"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    code = code.replace("figure.show()", "figure.write_json('figure.json')")
    (tmp_path / "cells.py").write_text(code, encoding="utf-8")
    from_book = _run(tmp_path / "cells.py")
    assert from_book["top_probs"] == printed["top_probs"]
    assert json.loads((tmp_path / "figure.json").read_text())["data"][0]["type"] == "heatmap"


def test_a_code_export_refuses_what_it_cannot_write(tmp_path):
    bad = lens("export", "--view", "logit-lens", "--prompt", "hi", "--out", str(tmp_path / "x.docx"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and ".py or .ipynb" in bad.stderr
    wrong = lens("export", "--view", "logit-lens", "--prompt", "hi", "--format", "rust", "--out", str(tmp_path / "x"))
    assert wrong.returncode != 0 and "invalid choice" in wrong.stderr
