"""python -m lens anatomy / contrastive: the --json numbers against hooks of the tests' own (tiny model), bad input in
one line with exit code 2, and a saved run read back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lens.model.loading import load_model
from test_anatomy import PROMPT, hooked_pass, kl


@pytest.fixture(scope="module")
def loaded():
    return load_model("tiny-llama")


def test_anatomy_json_matches_hooks(cli, loaded):
    out = cli("anatomy", "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--no-cache", "--swap")
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    ids = loaded.tokenizer(PROMPT)["input_ids"]
    h, _, _, logits = hooked_pass(loaded, ids)
    L = loaded.n_layers
    x = h[:, 1:]
    assert len(j["norm"]) == L + 1 and len(j["block_change"]) == L and len(j["skip_kl"]) == L
    assert len(j["swap_kl"]) == L - 1 and np.asarray(j["cka"]).shape == (L + 1, L + 1)
    np.testing.assert_allclose(j["norm"], np.linalg.norm(x, axis=-1).mean(1), rtol=1e-4)
    np.testing.assert_allclose(j["max_abs"], np.abs(x).max((1, 2)), rtol=1e-4)
    assert j["max_dim"] == [int(np.argmax(np.abs(r).max(0))) for r in x]
    np.testing.assert_allclose(j["skip_kl"], [kl(logits, hooked_pass(loaded, ids, skip=l)[3]) for l in range(1, L + 1)],
                               rtol=1e-3, atol=1e-6)
    assert j["rows"] == ["emb", *(f"L{l}" for l in range(1, L + 1))]


def test_anatomy_text_and_contrastive_json(cli):
    out = cli("anatomy", "--model", "tiny-llama", "--prompt", PROMPT, "--no-cache")
    assert out.returncode == 0 and "first token left out" in out.stdout and "matters most" in out.stdout
    out = cli("contrastive", "--model", "tiny-llama", "--prompt", PROMPT, "--amateur-layer", "1", "--top-k", "4",
              "--max-new-tokens", "3", "--json", "--no-cache")
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    assert j["amateur_layer"] == 1 and len(j["plain_ids"]) == 4 and len(j["contrast_new_ids"]) <= 3
    assert all(p >= 0.1 * j["plain_prob"][0] - 1e-12 for p in j["contrast_prob"])  # only plausible tokens
    assert j["contrast_score"] == sorted(j["contrast_score"], reverse=True)


@pytest.mark.parametrize("args, says", [
    (["anatomy", "--prompt", "ab"], "at least three tokens"),
    (["anatomy", "--prompt", PROMPT, "--top-dims", "0"], "top dimensions"),
    (["contrastive", "--prompt", PROMPT, "--amateur-layer", "3"], "amateur layer must be a whole number from 1 to 2"),
    (["contrastive", "--prompt", PROMPT, "--amateur-layer", "1", "--alpha", "2"], "alpha"),
    (["anatomy"], "give a prompt"),
])
def test_bad_input_one_line_exit_2(cli, args, says):
    out = cli(*args, "--model", "tiny-llama", "--no-cache")
    assert out.returncode == 2 and says in out.stderr and out.stderr.count("\n") == 1 and not out.stdout


def test_saved_run_reads_back(cli, tmp_path):
    from lens.runs.store import RunStore

    out = cli("anatomy", "--model", "tiny-llama", "--prompt", PROMPT, "--json", "--no-cache", "--save", "a",
              env={"LAYERLENS_RUNS": tmp_path / "runs.sqlite"})
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    r = RunStore(tmp_path / "runs.sqlite").get(1).results[0]
    np.testing.assert_allclose(r.skip_kl, j["skip_kl"])
    np.testing.assert_allclose(r.cka, j["cka"])
    assert r.top_dims == j["top_dims"]


def test_both_views_save_and_open_again_without_the_model(tmp_path):
    from lens.engine_backend import local_backend
    from lens.runs import RunStore, open_view, save_view
    from lens.views import render_view

    store = RunStore(tmp_path / "runs.sqlite")
    b = local_backend(load_model("tiny-llama"), None)
    for view, params in (("anatomy", {"swap": True}), ("contrastive", {"amateur_layer": 2, "max_new_tokens": 3})):
        run = save_view(store, b, view, PROMPT, params)
        again = open_view(store.get(run.id))  # from the saved results: no model
        fresh = render_view(b, view, PROMPT, **params)
        assert again.caption == fresh.caption and len(again.figures) == len(fresh.figures)
        for mine, theirs in zip(again.figures, fresh.figures):
            assert mine.to_json() == theirs.to_json()


def test_anatomy_over_a_shipped_suite(cli, loaded):
    """--suite NAME: every prompt's numbers (skip KL against hooks of the tests' own), their number, and per row
    the mean and spread over them."""
    from lens.suites.suite import example

    out = cli("anatomy", "--model", "tiny-llama", "--suite", "multilingual", "--json", "--no-cache")
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    prompts = [i.prompt for i in example("multilingual").items]
    assert j["n_prompts"] == len(prompts) == 12 and j["prompts"] == prompts and j["suite"] == "multilingual"
    L = loaded.n_layers
    each = []
    for p in prompts:
        ids = loaded.tokenizer(p)["input_ids"]
        logits = hooked_pass(loaded, ids)[3]
        each.append([kl(logits, hooked_pass(loaded, ids, skip=l)[3]) for l in range(1, L + 1)])
    each = np.array(each)
    np.testing.assert_allclose(j["skip_kl"], each, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(j["mean"]["skip_kl"], each.mean(0), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(j["sd"]["skip_kl"], each.std(0, ddof=1), rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose([j["p10"]["skip_kl"], j["p90"]["skip_kl"]], np.percentile(each, [10, 90], axis=0),
                               rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(j["mean"]["norm"], np.mean(j["norm"], 0), rtol=1e-12)
    assert np.asarray(j["cka_mean"]).shape == (L + 1, L + 1) and len(j["outlier"]["row_dim"]) == L + 1
    text = cli("anatomy", "--model", "tiny-llama", "--suite", "multilingual")  # cached now
    assert text.returncode == 0 and "Across the 12 prompts, block" in text.stdout and "12 prompts" in text.stdout


def test_anatomy_over_a_suite_file_saved_and_read_back(cli, tmp_path):
    from lens.runs.store import RunStore

    f = tmp_path / "mine.txt"
    f.write_text("hello there world\nthe cat sat on the mat\n", encoding="utf-8")
    out = cli("anatomy", "--model", "tiny-llama", "--prompts-file", str(f), "--swap", "--json", "--no-cache",
              "--save", "s", env={"LAYERLENS_RUNS": tmp_path / "runs.sqlite"})
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    assert j["suite"] == "mine.txt" and j["n_prompts"] == 2 and np.asarray(j["swap_kl"]).shape == (2, 2)
    run = RunStore(tmp_path / "runs.sqlite").get(1)
    assert run.view == "anatomy-suite" and run.params == {"suite": "mine.txt", "swap": True}
    np.testing.assert_allclose(run.results[0].skip_kl, j["skip_kl"])


@pytest.mark.parametrize("args, says", [
    (["--suite", "no-such-suite"], "no shipped suite 'no-such-suite'"),
    (["--suite", "capitals", "--prompt", PROMPT], "give one of --prompt, --prompt-file, --suite or --prompts-file"),
    (["--prompts-file", "/nonexistent/suite.jsonl"], "cannot read /nonexistent/suite.jsonl"),
    (["--prompts-file", "{short}"], "line 2: the prompt is 2 tokens"),
])
def test_bad_suite_input_one_line_exit_2(cli, tmp_path, args, says):
    short = tmp_path / "short.txt"
    short.write_text("hello there world\nab\n", encoding="utf-8")
    out = cli("anatomy", *[a.replace("{short}", str(short)) for a in args], "--model", "tiny-llama", "--no-cache")
    assert out.returncode == 2 and says in out.stderr and out.stderr.count("\n") == 1 and not out.stdout, out.stderr
