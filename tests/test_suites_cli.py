"""``python -m lens suite``: the JSON's shape and numbers (against the backend and plain arithmetic), the CSV
file, grouping, patching over pairs, a shipped suite on the bundled model, and bad input as one line, exit 2."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

ROWS = [
    {"prompt": "hello there", "target": "e", "kind": "greeting"},
    {"prompt": "the end of it", "target": "t", "foil": "x", "kind": "ending"},
    {"prompt": "abc", "kind": "letters"},
    {"prompt": "xyz", "target": "z", "kind": "letters"},
    {"prompt": "good morning", "target": "o", "kind": "greeting"},
]


@pytest.fixture
def prompts_file(tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return f


def test_json_has_every_prompt_per_row_and_the_aggregate(cli, prompts_file):
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.suites.suite import read_suite

    r = cli("suite", "--prompts-file", str(prompts_file), "--model", "tiny-llama", "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    R = len(out["layers"])
    assert out["layers"][0] == "emb" and out["model"] == "tiny-llama" and out["lens"] == "logit"
    assert [p["prompt"] for p in out["per_prompt"]] == [row["prompt"] for row in ROWS]
    for p in out["per_prompt"]:
        assert len(p["target_rank"]) == len(p["target_prob"]) == R and p["target_rank"][-1] >= 1
        assert set(p["labels"]) == {"kind"}
    assert "logit_diff" in out["per_prompt"][1] and "logit_diff" not in out["per_prompt"][0]
    expected = local_backend(load_model("tiny-llama")).lens_suite(read_suite(prompts_file))
    np.testing.assert_allclose([p["target_prob"] for p in out["per_prompt"]], expected.target_prob, rtol=1e-6)
    agg = out["aggregate"]
    assert agg["n"] == 5 and agg["group"] == "all"
    assert len(agg["target_prob_mean"]) == len(agg["target_rank_median"]) == len(agg["target_prob_ci95"]) == R
    for row in range(R):
        probs = [p["target_prob"][row] for p in out["per_prompt"]]
        assert agg["target_prob_mean"][row] == pytest.approx(sum(probs) / 5, rel=1e-6)
        lo, hi = agg["target_prob_ci95"][row]
        assert lo <= agg["target_prob_mean"][row] <= hi
        ranks = sorted(p["target_rank"][row] for p in out["per_prompt"])
        assert agg["target_rank_median"][row] == ranks[2]
    grouped = json.loads(cli("suite", "--prompts-file", str(prompts_file), "--model", "tiny-llama", "--json",
                             "--no-cache", "--by", "kind").stdout)
    assert [(g["group"], g["n"]) for g in grouped["groups"]] == [("greeting", 2), ("ending", 1), ("letters", 2)]


def test_csv_writes_one_line_per_prompt_and_lens_row(cli, prompts_file, tmp_path):
    out_file = tmp_path / "table.csv"
    r = cli("suite", "--prompts-file", str(prompts_file), "--model", "tiny-gpt2", "--json", "--no-cache",
            "--csv", str(out_file))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    with open(out_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    R = len(out["layers"])
    assert len(rows) == 5 * R
    assert list(rows[0])[:7] == ["index", "where", "prompt", "target", "foil", "position", "kind"]
    for row in rows:
        i, r_ = int(row["index"]), out["layers"].index(row["layer"])
        p = out["per_prompt"][i]
        assert row["prompt"] == p["prompt"] and row["kind"] == p["labels"]["kind"]
        assert float(row["target_prob"]) == p["target_prob"][r_]  # repr round-trips the float
        assert int(row["target_rank"]) == p["target_rank"][r_]
        assert (row["logit_diff"] == "") == ("logit_diff" not in p)


def test_pairs_print_the_averaged_grid_with_counts(cli, tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"clean": "abcde", "corrupt": "xbcde", "target": "f", "foil": "g"}\n'
                 '{"clean": "pqre", "corrupt": "pzre", "target": "s", "foil": "t"}\n'
                 '{"clean": "lmno", "corrupt": "lmn", "target": "p", "foil": "q"}\n', encoding="utf-8")
    out_csv = tmp_path / "grid.csv"
    r = cli("suite", "--pairs-file", str(f), "--site", "resid", "--model", "tiny-gpt2", "--json", "--no-cache",
            "--csv", str(out_csv))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["columns"] == ["-5", "-4", "-3", "-2", "-1"] and out["layers"][0] == "emb"
    assert [g["where"] for g in out["left_out"]] == [f"{f.name} line 3"]
    grids = np.array([[[math.nan if v is None else v for v in row] for row in g] for g in out["grids"]])
    for r_ in range(len(out["layers"])):
        for c in range(5):
            vals = [v for v in grids[:, r_, c] if not math.isnan(v)]
            assert out["count"][r_][c] == len(vals) == (1 if c == 0 else 2)
            assert out["mean"][r_][c] == pytest.approx(sum(vals) / len(vals), rel=1e-5, abs=1e-6)
    with open(out_csv, newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == int(np.sum(out["count"]))
    table = cli("suite", "--pairs-file", str(f), "--model", "tiny-gpt2", "--no-cache")
    assert table.returncode == 0 and "left out: " in table.stdout and "pairs" in table.stdout


def test_a_shipped_suite_on_the_bundled_model(cli):
    r = cli("suite", "--example", "capitals", "--json", "--resamples", "200")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["aggregate"]["n"] == len(out["per_prompt"]) >= 20
    assert out["per_prompt"][0]["prompt"] == "The capital of France is" and out["per_prompt"][0]["target"] == " Paris"
    assert out["aggregate"]["n_correct"] >= 0.8 * out["aggregate"]["n"]
    assert out["per_prompt"][0]["target_rank"][-1] == 1
    table = cli("suite", "--example", "capitals", "--by", "continent")
    assert table.returncode == 0 and "the final answer is the target for" in table.stdout
    assert "continent = Europe" in table.stdout


@pytest.mark.parametrize("files, args, match", [
    ({"c.csv": "text,target\nhello, x\n"}, ["--prompts-file", "c.csv"], "c.csv has no 'prompt' column"),
    ({"b.jsonl": '{"prompt": "a"}\n{"prompt": \n'}, ["--prompts-file", "b.jsonl"], "b.jsonl line 2 is not valid JSON"),
    ({"e.jsonl": ""}, ["--prompts-file", "e.jsonl"], "e.jsonl is empty"),
    ({"t.jsonl": '{"prompt": "abc", "target": "xy"}\n'}, ["--prompts-file", "t.jsonl"],
     "t.jsonl line 1: the target 'xy' is 2 tokens here"),
    ({}, ["--example", "nope"], "no shipped suite 'nope'"),
    ({"p.jsonl": '{"prompt": "a"}\n'}, ["--prompts-file", "p.jsonl", "--example", "capitals"], "give one of"),
    ({"p.jsonl": '{"prompt": "a"}\n'}, ["--prompts-file", "p.jsonl", "--site", "mlp"], "--site goes with --pairs-file"),
    ({"p.jsonl": '{"prompt": "a"}\n'}, ["--prompts-file", "p.jsonl", "--by", "colour"], "no column 'colour'"),
    ({"p.jsonl": '{"prompt": "a"}\n'}, ["--prompts-file", "p.jsonl", "--csv", "no/such/folder/x.csv"],
     "its folder does not exist"),
    ({"p.jsonl": '{"prompt": "a"}\n'}, ["--pairs-file", "p.jsonl"], "holds no clean/corrupt pairs"),
])
def test_bad_input_is_one_line_on_stderr_exit_2(cli, tmp_path, monkeypatch, files, args, match):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    r = cli("suite", *args, "--model", "tiny-llama", "--no-cache")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], r.stderr
    assert r.stdout == ""
