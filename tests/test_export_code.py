"""A view exported as code runs as it is: the script prints the same JSON as the view's command with --json, run
by itself from another folder; the notebook, run by a Jupyter kernel, prints the same numbers and draws the same
chart as the view. Every view's code is checked against its command (or, where none computes it, the view)."""
from __future__ import annotations

import ast
import json
import math
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest

from lens.cli import main
from lens.errors import LensError
from lens.engine_backend import local_backend
from lens.export_code import CODE, notebook, python_script
from lens.model.loading import load_model
from lens.serialize import to_json_dict
from lens.views import VIEWS, render_view

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "the cat's “quote” sat\non the mat"  # quotes, non-ASCII characters and a new line, written as literals
TEXTS = ["the bank of the river", "money in the bank"]
BANKS = ["We sat on the bank of the river and watched the boats.", "She went to the bank to deposit her salary.",
         "Fish gathered near the muddy bank after the rain."]  # sentences of a shipped corpus with senses
CLEAN, CORRUPT = "cat", "dog"
# A suite of two pairs with a label column (one-character targets: the tiny model reads characters).
SUITE = (json.dumps({"clean": "the cat sat", "corrupt": "the dog sat", "target": "t", "foil": "a", "g": "x"}) + "\n"
         + json.dumps({"clean": "a cat“s", "corrupt": "a dog“s", "target": " ", "foil": "t", "g": "y"}) + "\n")

# view: (texts, the view's options, the command that prints the same JSON; None: no command, the view's own result)
CASES = {
    "logit-lens": (PROMPT, {"metric": "kl", "target": " the", "top_k": 3, "exits": True},
                   ["logit-lens", "--prompt", PROMPT, "--target", " the", "--top-k", "3"]),
    "lens-comparison": (PROMPT, {}, ["compare-lenses", "--prompt", PROMPT]),
    "early-exit": (PROMPT, {}, ["logit-lens", "--prompt", PROMPT, "--top-k", "1"]),
    "language": (PROMPT, {"position": 3, "track": "cat,,mat"},
                 ["language", "--prompt", PROMPT, "--position", "3", "--track", "cat,,mat"]),
    "generate": (PROMPT, {"max_new_tokens": 4, "temperature": 0.7, "seed": 3, "stride": 1},
                 ["generate", "--prompt", PROMPT, "--max-new-tokens", "4", "--temperature", "0.7", "--seed", "3"]),
    "rollout": (PROMPT, {"position": -2}, ["rollout", "--prompt", PROMPT, "--position", "-2"]),
    "flow": ("one two", {"position": 4}, ["rollout", "--flow", "--prompt", "one two", "--position", "4"]),
    "routes": (PROMPT, {"threshold": 0.1, "position": 5},
               ["routes", "--prompt", PROMPT, "--threshold", "0.1", "--position", "5"]),
    "heads": (PROMPT, {"metric": "prev_token"}, ["heads", "--prompt", PROMPT]),
    "projection": (TEXTS, {"dims": 3, "word": "bank"}, ["project", "--corpus-file", "{corpus}", "--dims", "3"]),
    "geometry": (TEXTS, {"word": "e", "metric": "self_similarity"},
                 ["geometry", "--corpus-file", "{corpus}", "--word", "e"]),
    "suite": (SUITE, {"by": "g", "measure": "target_rank", "statistic": "median"},
              ["suite", "--prompts-file", "{suite}", "--lens", "logit", "--by", "g"]),
    "pair-suite": (SUITE, {"site": "attn"}, ["suite", "--pairs-file", "{suite}", "--site", "attn"]),
    "patch": ([CLEAN, CORRUPT], {"target": "t", "foil": "a", "site": "mlp"},
              ["patch", "--clean-prompt", CLEAN, "--corrupt-prompt", CORRUPT, "--target", "t", "--foil", "a",
               "--site", "mlp"]),
}
CASES.update({  # who writes the answer (lens/attribution/)
    "dla": (PROMPT, {"target": "t", "foil": "a", "position": -2},
            ["dla", "--prompt", PROMPT, "--target", "t", "--foil", "a", "--position", "-2"]),
    "sublayer-lens": (PROMPT, {"target": "e"}, ["sublayer-lens", "--prompt", PROMPT, "--target", "e"]),
    "knockout": (PROMPT, {"sources": "1,3-4", "window": 2, "align": "start"},
                 ["knockout", "--prompt", PROMPT, "--sources", "1,3,4", "--window", "2", "--align", "start"]),
    "neurons": (PROMPT, {"top": 5}, ["neurons", "--prompt", PROMPT, "--top", "5"]),  # the top-1's neurons
    "neuron": (PROMPT, {"layer": 2, "neuron": 7}, ["neuron", "--prompt", PROMPT, "--layer", "2", "--neuron", "7"]),
    "head-weights": (PROMPT, {"composition": "k"}, ["heads-weights", "--composition", "k"]),
})
CASES.update({  # attribution and circuits (lens/circuits/)
    "attribute": ([CLEAN, CORRUPT], {"target": "t", "foil": "a", "site": "head", "qk_fix": True, "grad_drop": True},
                  ["attribute", "--clean-prompt", CLEAN, "--corrupt-prompt", CORRUPT, "--target", "t", "--foil", "a",
                   "--site", "head", "--qk-fix", "--grad-drop", "--verify"]),
    "circuit": ([CLEAN, CORRUPT], {"target": "t", "foil": "a", "edges": 6, "ig_steps": 3, "rank": "size"},
                ["circuit", "--clean-prompt", CLEAN, "--corrupt-prompt", CORRUPT, "--target", "t", "--foil", "a",
                 "--edges", "6", "--ig-steps", "3", "--rank", "size"]),
})
CASES["noise-trace"] = (PROMPT, {"subject": "1,2", "samples": 2, "seed": 3, "site": "mlp"},  # the model's own answer
                        ["noise-trace", "--prompt", PROMPT, "--subject", "1,2", "--samples", "2", "--seed", "3",
                         "--site", "mlp"])
CASES["steer"] = (PROMPT, {"positive": "good", "negative": "bad", "layer": 2, "coef": 3.0, "unit": "raw",  # steering
                          "positions": "all", "max_new_tokens": 4},
                  ["steer", "--prompt", PROMPT, "--positive", "good", "--negative", "bad", "--layer", "2", "--coef", "3",
                   "--unit", "raw", "--max-new-tokens", "4"])
PROBE_SET = "".join(json.dumps({"prompt": p, "label": l}) + "\n" for p, l in [  # probes: two labels, six each
    ("a good day", "pos"), ("a bad day", "neg"), ("so nice", "pos"), ("so dull", "neg"), ("fun times", "pos"),
    ("sad times", "neg"), ("we won", "pos"), ("we lost", "neg"), ("great", "pos"), ("awful", "neg"), ("yes!", "pos"),
    ("no.", "neg")])
CASES["probe"] = (PROBE_SET, {"folds": 3, "l2": 2.0}, ["probe", "--prompts-file", "{suite}", "--folds", "3", "--l2", "2"])
CASES.update({  # layer anatomy (lens/anatomy/)
    "anatomy": (PROMPT, {"swap": True}, ["anatomy", "--prompt", PROMPT, "--swap"]),
    "contrastive": (PROMPT, {"amateur_layer": 1, "max_new_tokens": 3},
                    ["contrastive", "--prompt", PROMPT, "--amateur-layer", "1", "--max-new-tokens", "3"]),
})
CASES["anatomy-suite"] = (SUITE, {"swap": True}, ["anatomy", "--prompts-file", "{suite}", "--swap"])  # its clean prompts
MORE = {  # the same views with other options: another backend call, another figure builder
    "heads --layer": ("heads", PROMPT, {"layer": 2}, ["heads", "--prompt", PROMPT, "--layer", "2"]),
    "geometry senses": ("geometry", BANKS, {"word": "a", "metric": "senses"}, None),  # one byte, one token
    "projection of a prompt": ("projection", PROMPT, {"color_by": "position"}, ["project", "--prompt", PROMPT]),
    "projection of senses": ("projection", BANKS, {"word": "bank"}, ["project", "--corpus-file", "{corpus}"]),
    # Every option the pages pass, away from its default: the numbers are the command's with the same flags, the
    # figure the view's.
    "projection layer by layer": ("projection", TEXTS, {"mode": "aligned", "rms_scale": False, "skip_first": False},
                                  ["project", "--corpus-file", "{corpus}", "--mode", "aligned", "--no-rms-scale",
                                   "--include-first"]),
    "projection of some rows": ("projection", PROMPT, {"rows": [3, 1], "skip_special": False, "word": "t"},
                                ["project", "--prompt", PROMPT, "--include-special"]),
    "geometry with every token": ("geometry", TEXTS, {"skip_first": False, "skip_special": False, "word": "e"},
                                  ["geometry", "--corpus-file", "{corpus}", "--include-first", "--include-special",
                                   "--word", "e"]),
    "geometry senses with the first token": ("geometry", BANKS, {"word": "a", "metric": "senses",
                                                                 "skip_first": False}, None),
    "flow of some layers": ("flow", PROMPT, {"position": 4, "layers": [3, 2], "skip_first": True},
                            ["rollout", "--flow", "--prompt", PROMPT, "--position", "4", "--layers", "2,3"]),
    "flow of the last layer": ("flow", "one two", {"layers": 3}, ["rollout", "--flow", "--prompt", "one two",
                                                                  "--layers", "3"]),
    "rollout without the first token": ("rollout", PROMPT, {"skip_first": True}, ["rollout", "--prompt", PROMPT]),
    "generate's attention": ("generate", PROMPT, {"max_new_tokens": 3, "temperature": 0.7, "seed": 3,
                                                  "chart": "attention", "skip_first": False}, None),
    "early exit of a window": ("early-exit", PROMPT, {"positions": [3, 9]}, None),
    "neurons of a token": ("neurons", PROMPT, {"token": "a", "top": 5}, ["neurons", "--token", "a", "--top", "5"]),
}


def same(a, b, path="") -> None:
    """``a`` and ``b`` hold the same JSON, numbers equal within float32 rounding."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            if k != "seconds":  # how long a projection took to fit
                same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {len(a)} items != {b!r:.200}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def command_json(capsys, args: list[str]) -> dict:
    """``python -m lens ARGS --json``, in this process."""
    capsys.readouterr()
    code = main([*args, "--json", "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def cells(book: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(book)["cells"] if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def tiny_backend():
    return local_backend(load_model("tiny-llama"), None)


@pytest.fixture
def run_here(tmp_path, monkeypatch, capsys):
    """Run code in a fresh namespace in this process, from another folder: (what it printed, its namespace)."""
    monkeypatch.chdir(tmp_path)
    shown: list[go.Figure] = []
    monkeypatch.setattr(go.Figure, "show", lambda fig, *a, **k: shown.append(fig))

    def run(source: str):
        path = tmp_path / "code.py"
        path.write_text(source, encoding="utf-8")
        capsys.readouterr()
        scope = runpy.run_path(str(path), run_name="__main__")
        return capsys.readouterr().out, scope, shown

    return run


def test_every_view_has_its_code():
    assert set(CODE) == set(VIEWS) == set(CASES)


@pytest.mark.parametrize("name", [*CASES, *MORE])
def test_each_views_code_prints_its_commands_json_and_draws_its_chart(name, tiny_backend, run_here, tmp_path,
                                                                     capsys):
    view, texts, params, command = (name, *CASES[name]) if name in CASES else MORE[name]
    rendered = render_view(tiny_backend, view, texts, **params)
    script = python_script(rendered)
    assert script == python_script(view, "tiny-llama", texts, params)  # the page's call, without a RenderedView
    code = cells(notebook(rendered))
    # The notebook's first three cells are the script's code (one run checks both): settings, computation, print.
    assert code[1].startswith("backend = ") and code[2].startswith("print(") and code[3].rstrip().endswith(".show()")
    lines = lambda text: [line for line in text.splitlines() if line.strip()]  # noqa: E731
    assert lines(script.split('"""\n', 1)[1]) == lines("\n".join(code[:3]))
    printed, scope, shown = run_here("\n".join(code))
    if command is None:  # no command computes it: the view's own numbers (its chart's), and the script says so
        assert "No `python -m lens` command computes this measure" in script
        same(json.loads(printed), to_json_dict(rendered.results[-1]))
    else:
        corpus = tmp_path / "texts.txt"
        corpus.write_text("\n".join(texts if isinstance(texts, list) else []), encoding="utf-8")
        (tmp_path / "suite.jsonl").write_text(texts if isinstance(texts, str) else "", encoding="utf-8")
        args = [a.replace("{corpus}", str(corpus)).replace("{suite}", str(tmp_path / "suite.jsonl")) for a in command]
        same(json.loads(printed), command_json(capsys, [*args, "--model", "tiny-llama"]))
    assert len(shown) == len(rendered.figures) >= 1  # the view's figures, drawn by the same builders
    for mine, theirs in zip(shown, rendered.figures):
        same(json.loads(mine.to_json()), json.loads(theirs.to_json()))


def test_early_exit_reads_the_window_the_page_shows(tiny_backend):
    """A window of positions (the lens page's last 48 of a long prompt): each bar is the full prompt's bar at
    that position, its exit row the first row from which the lens's top-1 is the last row's to the end."""
    full = render_view(tiny_backend, "early-exit", PROMPT).results[0]
    part = render_view(tiny_backend, "early-exit", PROMPT, positions=[3, 9])
    r = part.results[0]
    assert r.positions == list(range(3, 9)) and "positions 3–8" in part.caption
    top1 = full.top_ids[:, :, 0]  # [rows, positions]
    for i, pos in enumerate(r.positions):
        rows = [k for k in range(len(full.layers)) if all(top1[j, pos] == top1[-1, pos] for j in range(k, len(top1)))]
        assert r.exit_layer[i] == full.exit_layer[pos] == rows[0]
    assert list(json.loads(part.figures[0].to_json())["data"][0]["x"]) == \
        list(json.loads(render_view(tiny_backend, "early-exit", PROMPT).figures[0].to_json())["data"][0]["x"])[3:9]
    for bad, said in (([9, 3], "outside the prompt"), ("3,9", "window [start, stop)"), ([1, 2, 3], "two whole")):
        with pytest.raises(LensError, match=re.escape(said)):
            render_view(tiny_backend, "early-exit", PROMPT, positions=bad)


def test_flow_layers_flag_prints_those_rows(capsys):
    """`rollout --flow --layers 2,3`: the rows of every layer's flow at those layers (each solved on its own);
    on a prompt too long for every row, the last layer's row alone, as the attention page asks for it."""
    every = command_json(capsys, ["rollout", "--flow", "--model", "tiny-llama", "--prompt", "one two", "--position",
                                  "4"])
    some = command_json(capsys, ["rollout", "--flow", "--model", "tiny-llama", "--prompt", "one two", "--position",
                                 "4", "--layers", "3,2"])
    assert every["layers"] == ["1", "2", "3"] and some["layers"] == ["2", "3"]
    same(some["flow"], every["flow"][1:])
    same(some["raw_flow"], every["raw_flow"][1:])
    for args, said in ((["--layers", "2"], "add --flow"), (["--flow", "--layers", "0"], "numbered from 1"),
                       (["--flow", "--layers", "two"], "separated by commas"),
                       (["--flow", "--layers", "4"], "between 1 and 3")):
        capsys.readouterr()
        assert main(["rollout", "--model", "tiny-llama", "--prompt", "one two", *args, "--json"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and said in err, err


def test_the_docstring_names_the_command_exactly():
    """Its words are the command's arguments, texts and all."""
    script = python_script("logit-lens", "tiny-llama", "Paris's “best” ", {"target": " x", "top_k": 2})
    line = command_line(script)
    assert shlex.split(line) == ["python", "-m", "lens", "logit-lens", "--model", "tiny-llama", "--prompt",
                                 "Paris's “best” ", "--top-k", "2", "--target", " x", "--lens", "logit", "--json"]


@pytest.mark.parametrize("text", ["a\\b 'c'\n\td\x07e\u200b\U0001F600", 'say """hi""" \\n\n'])
def test_the_docstring_holds_any_text(text):
    """A text with new lines, backslashes, quotes or characters that do not print: bash reads the docstring's
    $'…' word back to the text, and Python reads the script (its docstring raw, or escaped around \"\"\")."""
    script = python_script("rollout", "tiny-llama", text, {"position": -1})
    assert runpy_source(script)["PROMPT"] == text
    line = command_line(script)
    words = subprocess.run(["bash", "-c", "printf '%s\\0' " + line.split(" ", 3)[3]], capture_output=True,
                           timeout=10).stdout.decode("utf-8").split("\0")[:-1]
    assert words == ["rollout", "--model", "tiny-llama", "--prompt", text, "--position", "-1", "--json"]


def command_line(script: str) -> str:
    """The command in the script's docstring, as Python reads the docstring."""
    lines = [s.strip() for s in ast.get_docstring(ast.parse(script)).splitlines()]
    return next(s for s in lines if s.startswith("python -m lens"))


def runpy_source(source: str) -> dict:
    """The script's settings, read without running its computation."""
    scope: dict = {}
    tree = ast.parse(source)
    tree.body = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id.isupper()]
    exec(compile(tree, "script", "exec"), scope)
    return scope


def _env() -> dict:
    # No PYTHONPATH: the script finds LayerLens as an installed package (pip install -e .), as a user's would.
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_checkout_is_installed_in_place(tmp_path):
    """From another folder `import lens` is this checkout, and the model cache is its cache/ (the bundled model's
    converted weights are found there, not made again)."""
    env = {k: v for k, v in _env().items() if k != "LAYERLENS_CACHE"}
    run = subprocess.run([sys.executable, "-c", "import lens, lens.model.registry as r; print(lens.__file__); "
                          "print(r.default_cache_root())"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, f"run `make setup` or `pip install -e .`: {run.stderr[-500:]}"
    assert run.stdout.split("\n")[:2] == [str(ROOT / "lens" / "__init__.py"), str(ROOT / "cache")]


def test_the_package_carries_every_file_lens_reads():
    """What `pip install .` copies: every tracked file under lens/ that is not Python matches pyproject.toml's
    package data (a new kind of data file must be named there, or an installed copy would miss it)."""
    import fnmatch
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = [p for ps in data["package-data"].values() for p in ps]
    tracked = subprocess.run(["git", "ls-files", "lens"], cwd=ROOT, capture_output=True, text=True, check=True)
    others = [p for p in tracked.stdout.split() if not p.endswith(".py")]
    assert others and all(any(fnmatch.fnmatch(Path(p).name, pat) for pat in patterns) for p in others), others
    assert data["packages"]["find"]["include"] == ["lens", "lens.*"]  # lens.engine has no __init__.py: found too


SUBPROCESS = [  # (view, model, text, export options, the command that prints the same JSON)
    ("generate", "tiny-gpt2", PROMPT, ["--max-new-tokens", "5", "--temperature", "1.3", "--seed", "11"],
     ["generate", "--prompt", PROMPT, "--max-new-tokens", "5", "--temperature", "1.3", "--seed", "11"]),
    # Its passes as nnsight traces (here, not in this process: nnsight gives every object a `save` attribute,
    # which argparse would then take for --save's value); the numbers are those of the local backend.
    ("rollout", "tiny-llama", PROMPT, ["--position", "3", "--backend", "nnsight"],
     ["rollout", "--prompt", PROMPT, "--position", "3"]),
]


@pytest.mark.parametrize("view,model,text,options,command", SUBPROCESS, ids=[c[0] for c in SUBPROCESS])
def test_the_exported_script_runs_by_itself_from_another_folder(tmp_path, capsys, view, model, text, options,
                                                                command):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    script = folder / "run.py"
    assert main(["export", "--view", view, "--model", model, "--prompt", text, *options, "--out", str(script)]) == 0
    assert capsys.readouterr().out.strip() == str(script)
    code = script.read_text(encoding="utf-8")
    if "nnsight" in options:
        assert "backend = nnsight_backend(load_model(MODEL, device='cpu'), None)" in code
        assert command_line(code).endswith("--backend nnsight --json")
    run = subprocess.run([sys.executable, script.name], cwd=folder, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    same(json.loads(run.stdout), command_json(capsys, [*command, "--model", model]))


def test_the_bundled_model_script_and_notebook_from_another_folder(tmp_path, capsys, monkeypatch):
    """The logit lens of the bundled model: the script run by itself, the notebook run by a Jupyter kernel of this
    Python, both in another folder as a user would (no PYTHONPATH, no LAYERLENS_CACHE: the checkout's cache/, where
    the bundled model's converted weights are; the model hub cannot be reached here)."""
    import nbclient
    import nbformat

    prompt = "The capital of France is"
    script, book = tmp_path / "lens_run.py", tmp_path / "lens_run.ipynb"
    for out, fmt in ((script, []), (book, []), (tmp_path / "as_python", ["--format", "python"])):
        assert main(["export", "--view", "logit-lens", "--prompt", prompt, "--metric", "entropy", *fmt,
                     "--out", str(out)]) == 0
    assert (tmp_path / "as_python").read_text(encoding="utf-8") == script.read_text(encoding="utf-8")
    env = {k: v for k, v in _env().items() if k != "LAYERLENS_CACHE"}
    # The script runs while the kernel below runs the notebook (two processes: half the wait on two cores).
    run = subprocess.Popen([sys.executable, script.name], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        want = command_json(capsys, ["logit-lens", "--prompt", prompt])
        assert want["model"] == "smollm2-135m" and want["final_prediction"][-1] == " Paris"

        # A kernel of this very Python (a kernel spec in a folder of the test's own), run by nbclient, with the
        # environment of the script above.
        spec = tmp_path / "jupyter" / "kernels" / "layerlens-test"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "LayerLens tests", "language": "python"}), encoding="utf-8")
        nb = nbformat.reads(book.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        monkeypatch.delenv("PYTHONPATH", raising=False)
        monkeypatch.delenv("LAYERLENS_CACHE")
        monkeypatch.setenv("PLOTLY_RENDERER", "plotly_mimetype")  # the figure as JSON only (no 4 MB plotly.js)
        nbclient.NotebookClient(nb, timeout=120, kernel_name="layerlens-test",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-2000:]
        same(json.loads(out), want)
    finally:
        run.kill()  # nothing left running when a check above fails
        run.wait()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    text = "".join(o.get("text", "") for o in code[2].outputs if o.output_type == "stream")
    same(json.loads(text), want)
    figure = [o for o in code[3].outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figure) == 1, [list(o.get("data", {})) for o in code[3].outputs]
    drawn = figure[0].data["application/vnd.plotly.v1+json"]["data"][0]
    assert drawn["type"] == "heatmap" and len(drawn["x"]) == len(want["tokens"])


@pytest.mark.parametrize("args, message", [
    (["--view", "nope", "--out", "{tmp}/x.py"], "unknown view 'nope'"),
    (["--view", "logit-lens", "--format", "rust", "--out", "{tmp}/x"], "unknown format 'rust'"),
    (["--view", "logit-lens", "--format", "python", "--out", "{tmp}/x.ipynb"], "does not write a .ipynb file"),
    (["--view", "logit-lens", "--out", "{tmp}/x.docx"], ".py or .ipynb"),
    (["--view", "logit-lens", "--metric", "nope", "--out", "{tmp}/x.py"], "unknown colour metric 'nope'"),
    (["--view", "routes", "--threshold", "0.9", "--out", "{tmp}/x.ipynb"], "threshold must be between 0 and 0.5"),
    (["--view", "patch", "--corrupt-prompt", "hello", "--out", "{tmp}/x.py"], "needs a target token"),
    (["--view", "logit-lens", "--backend", "nnsight", "--remote", "--out", "{tmp}/x.py"], "leave out --remote"),
    (["--view", "logit-lens", "--save", "mine", "--out", "{tmp}/x.ipynb"], "leave out --save"),
])
def test_a_code_export_refuses_bad_input_in_one_line(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["export", "--prompt", "hi", "--model", "tiny-llama", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written
