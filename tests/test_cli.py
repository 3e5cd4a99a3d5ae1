"""``python -m lens`` as a user runs it: real subprocesses, JSON checked against an
independent computation in this process."""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from lens.cli.common import read_prompt as _read_prompt
from lens.model.tiny import tiny_model
from shown import as_shown

PROMPT = "hello there"
ODD = "héllo 👋🏽 e\u0301 שלום עולם\n\tend\u200f"
JSON_KEYS = {"model", "n_layers", "tokens", "layers", "top_tokens", "top_probs", "entropy",
             "kl_to_final", "final_prediction"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-files")
    odd = d / "odd.txt"
    odd.write_bytes(ODD.encode("utf-8"))
    binary = d / "binary.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81\xc3\x28 not utf-8 \x80")
    return {"dir": d, "odd": odd, "binary": binary, "missing": d / "no-such-file.txt"}


LENS = ["logit-lens", "--model", "tiny-llama"]


def _cases(f):
    ok = {
        "hello-json": LENS + ["--prompt", PROMPT, "--json"],
        "odd-file": LENS + ["--prompt-file", str(f["odd"]), "--json"],
        "models": ["models"],
        "alternatives-json": LENS + ["--prompt", PROMPT, "--json", "--alternatives", "3"],
    }
    bad = {
        "empty prompt": LENS + ["--prompt", ""],
        "too long": LENS + ["--prompt", "x" * 200],
        "unknown model": ["logit-lens", "--model", "no-such-model-xyz", "--prompt", "hi"],
        "missing file": LENS + ["--prompt-file", str(f["missing"])],
        "directory": LENS + ["--prompt-file", str(f["dir"])],
        "binary file": LENS + ["--prompt-file", str(f["binary"])],
        "both": LENS + ["--prompt", "hi", "--prompt-file", str(f["odd"])],
        "top-k 0": LENS + ["--prompt", "hi", "--top-k", "0"],
        "alternatives 21": LENS + ["--prompt", "hi", "--alternatives", "21"],
        # Options are checked before the model loads: the bad option is named, not the unknown model.
        "top-k before loading": ["logit-lens", "--model", "no-such-model-xyz", "--prompt", "hi", "--top-k", "-3"],
        "invalid utf-8 argv": [*LENS, "--prompt", b"ab\xff\xfe"],
    }
    return ok, bad


@pytest.fixture(scope="module")
def runs(files, run_cli, tmp_path_factory):
    """Every CLI invocation of this module, run concurrently once; each with its own cache."""
    ok, bad = _cases(files)
    jobs = {**ok, **bad}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_cli, args, tmp_path_factory.mktemp("cache"))
                   for name, args in jobs.items()}
        return {name: fut.result() for name, fut in futures.items()}


def strict_json(text: str):
    def reject(const):
        raise ValueError(f"not JSON: {const}")

    return json.loads(text, parse_constant=reject)


def lens_json(runs, name):
    proc = runs[name]
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    out = proc.stdout.decode("utf-8")
    assert out.endswith("\n") and out.count("\n") == 1, "expected exactly one line of JSON"
    return strict_json(out)


def independent(prompt: str, k: int = 5):
    """The lens computed without lens.engine/adapters: HF hidden states, norm, lm_head, float64."""
    model, tok = tiny_model("llama")
    ids = tok(prompt).input_ids
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
        L = model.config.num_hidden_layers
        rows = [model.lm_head(model.model.norm(out.hidden_states[l][0])) for l in range(L)]
        logits = torch.stack(rows + [out.logits[0]]).double()
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    top_p, top_i = p.topk(k, -1)
    return {
        "tok": tok, "ids": ids, "L": L,
        "entropy": (-(p * logp).sum(-1)).numpy(),
        "kl": (p[-1] * (logp[-1] - logp)).sum(-1).numpy(),
        "top_p": top_p.numpy(), "top_i": top_i.numpy(), "p": p.numpy(),
        "final": [as_shown(tok, int(i)) for i in out.logits[0].argmax(-1)],
    }


@pytest.mark.parametrize("name, prompt", [("hello-json", PROMPT), ("odd-file", ODD)], ids=["prompt", "prompt-file"])
def test_logit_lens_json_matches_independent_computation(runs, name, prompt):
    data = lens_json(runs, name)
    assert JSON_KEYS <= set(data)
    ref = independent(prompt)
    tok, L = ref["tok"], ref["L"]
    T = len(ref["ids"])
    assert data["model"] == "tiny-llama"
    assert data["n_layers"] == L == 3
    assert data["tokens"] == [as_shown(tok, i) for i in tok(prompt).input_ids]
    assert data["token_ids"] == ref["ids"]
    assert data["layers"] == ["emb", "1", "2", "3"]
    top_probs = np.array(data["top_probs"], dtype=np.float64)
    assert top_probs.shape == (L + 1, T, 5)
    assert len(data["top_tokens"]) == L + 1
    assert all(len(row) == T and all(len(cell) == 5 for cell in row) for row in data["top_tokens"])
    np.testing.assert_allclose(top_probs, ref["top_p"], atol=1e-5)
    np.testing.assert_allclose(np.array(data["entropy"]), ref["entropy"], atol=1e-4)
    np.testing.assert_allclose(np.array(data["kl_to_final"]), ref["kl"], atol=1e-4)
    expected_tokens = [[[as_shown(tok, int(i)) for i in cell] for cell in row] for row in ref["top_i"]]
    assert data["top_tokens"] == expected_tokens
    assert data["final_prediction"] == ref["final"]
    # NaN (no next token at the end) is written as null, not as the non-JSON NaN.
    loss = data["next_token_loss"]
    assert all(row[-1] is None for row in loss)
    assert all(v is not None for row in loss for v in row[:-1])


def test_models_lists_the_bundled_model(runs):
    proc = runs["models"]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("utf-8")
    names = [line[2:].split()[0] for line in out.splitlines() if line[:1] in ("*", " ") and line.strip()
             and not line.startswith("Also")]
    assert "smollm2-135m" in names and "tiny-llama" in names and "tiny-gemma2" in names
    (default,) = [line for line in out.splitlines() if line.startswith("*")]
    assert default.split()[1] == "smollm2-135m"


BAD = ["empty prompt", "too long", "unknown model", "missing file", "directory", "binary file", "both",
       "alternatives 21", "top-k 0", "invalid utf-8 argv"]


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_on_stderr(runs, name):
    proc = runs[name]
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "unexpected" not in lines[0], "a known bad input reached the last-resort handler"
    assert proc.stdout == b""


def test_bad_input_messages_say_why(runs, files):
    def msg(name):
        return runs[name].stderr.decode("utf-8", "replace")

    assert "empty" in msg("empty prompt")
    assert "200" in msg("too long") and "128" in msg("too long")
    assert "no-such-model-xyz" in msg("unknown model")
    assert str(files["missing"]) in msg("missing file")
    assert str(files["dir"]) in msg("directory")
    assert "UTF-8" in msg("binary file")
    assert "not both" in msg("both")
    assert "top-k" in msg("top-k 0")
    assert "alternative targets" in msg("alternatives 21") and "20" in msg("alternatives 21")
    assert "top-k" in msg("top-k before loading") and "no-such-model" not in msg("top-k before loading")


def test_prompt_file_is_read_byte_for_byte(tmp_path):
    """--prompt-file must give the same prompt as --prompt with the file's text: a CRLF or a
    lone CR in the file is part of the prompt (the lens shows tokens, so they must be the
    file's tokens)."""
    text = "line one\r\nline two\rthree\n"
    path = tmp_path / "crlf.txt"
    path.write_bytes(text.encode("utf-8"))
    args = argparse.Namespace(prompt=None, prompt_file=str(path))
    assert _read_prompt(args) == text


def test_an_error_after_progress_starts_on_its_own_line(capsys, monkeypatch):
    """A failure while a progress line is open (e.g. a conversion) does not glue the error onto it."""
    import lens.cli as cli
    from lens.cli.common import terminal_progress
    from lens.errors import LensError

    def failing(args):
        terminal_progress(0.2, "converting")
        raise LensError("disk full")

    monkeypatch.setattr(cli.models, "cmd_models", failing)
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert "converting" in err and err.endswith("\nerror: disk full\n"), repr(err)


# ------------------------------------------------------------------ start-up: a command run again loads no model

def _lens_again(cache, *extra: str) -> list[str]:
    """``logit-lens`` in a fresh process; its output lines, then whether torch or transformers were imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = ("import sys\nfrom lens.cli import main\n"
            f"rc = main(['logit-lens', '--prompt', 'The capital of France is', '--json', *{list(extra)!r}])\n"
            "print('HEAVY' if {'torch', 'transformers'} & set(sys.modules) else 'LIGHT', rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(root), "LAYERLENS_CACHE": str(cache)})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout.splitlines()


def test_a_command_run_again_is_answered_from_the_cache_without_torch(tmp_path):
    from lens.model.registry import default_cache_root

    (tmp_path / "models").symlink_to(default_cache_root().resolve() / "models", target_is_directory=True)
    first = _lens_again(tmp_path)
    again = _lens_again(tmp_path)
    fresh = _lens_again(tmp_path, "--no-cache")
    assert first[-1] == "HEAVY 0" and again[-1] == "LIGHT 0" and fresh[-1] == "HEAVY 0"
    assert again[0] == first[0] == fresh[0]  # byte for byte the JSON computed with the model
    assert json.loads(again[0])["final_prediction"][-1] == " Paris"


def test_recalled_calls_load_the_model_only_on_a_miss(tmp_path):
    from lens.cache import ResultCache
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import LensOptions
    from lens.recall import Recalling

    loads = []

    def load():
        loads.append(1)
        return local_backend(load_model("tiny-llama"))

    cache = ResultCache(tmp_path)
    first = Recalling(load, cache, "model-identity-a").logit_lens("hello", LensOptions(top_k=3))
    assert len(loads) == 1
    again = Recalling(load, cache, "model-identity-a")
    second = again.logit_lens("hello", LensOptions(top_k=3))
    assert len(loads) == 1 and again.info().name == "tiny-llama"  # no load: its info kept from the last one
    assert second.tokens == first.tokens
    for f in ("top_probs", "entropy", "kl_to_final", "target_rank"):
        np.testing.assert_array_equal(getattr(second, f), getattr(first, f))
    again.logit_lens("hello", LensOptions(top_k=4))  # other options: computed
    assert len(loads) == 2
    other = Recalling(load, cache, "model-identity-b")  # other files: the model is loaded and fingerprinted again
    other.logit_lens("hello", LensOptions(top_k=3))
    assert len(loads) == 3
    fitted = Recalling(load, cache, "model-identity-a")
    from lens.errors import LensError

    with pytest.raises(LensError, match="tuned"):
        fitted.logit_lens("hello", LensOptions(lens="tuned"))  # a fitted lens is never recalled: asked of the model
    assert len(loads) == 4


def test_a_models_identity_follows_its_files(tmp_path):
    import os

    from lens.recall import identity, model_files

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    files = model_files(str(folder))
    assert [p.name for p in files] == ["config.json", "model.safetensors"]
    before = identity(str(folder), "cpu", files)
    assert identity(str(folder), "cpu", files) == before
    assert identity(str(folder), "cuda", files) != before
    os.utime(folder / "model.safetensors", ns=(1, 1))  # new weights: another identity
    assert identity(str(folder), "cpu", model_files(str(folder))) != before
    assert model_files("tiny-llama") is None and model_files("HuggingFaceTB/SmolLM2-135M") is None


def test_alternatives_are_the_final_top_n_with_their_probabilities_at_every_cell(runs):
    """``--alternatives 3``: the final layer's top-3 at the last position, each followed at every cell, against the
    lens computed without LayerLens's engine."""
    data = lens_json(runs, "alternatives-json")
    ref = independent(PROMPT)
    ids = np.array(data["alternative_ids"])
    np.testing.assert_allclose(ref["p"][-1, -1, ids], ref["top_p"][-1, -1, :3], atol=1e-5)
    assert data["alternative_tokens"] == [as_shown(ref["tok"], int(i)) for i in ids]
    prob = np.array(data["alternative_prob"])  # [3, rows, positions]
    np.testing.assert_allclose(prob, np.moveaxis(ref["p"][..., ids], -1, 0), atol=1e-5)
    rank = np.array(data["alternative_rank"])
    want = (ref["p"][None] > np.moveaxis(ref["p"][..., ids], -1, 0)[..., None]).sum(-1) + 1
    assert np.mean(rank == want) > 0.99 and np.all(np.abs(rank - want) <= 1)  # (float32 near-ties)
