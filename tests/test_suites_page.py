"""The Prompt suites page and its numbers: the lines, bands and exit bars against a plain recomputation from the
per-prompt numbers; the per-prompt table's filter, grouping and links; every source (example, file, pasted list,
template, counterfactual pairs) and bad input as one message; the page in-process with the bundled model."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import array, charts

from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.figures.suites import exit_figure, pair_grid_figure, suite_lines_figure
from lens.model.loading import load_model
from lens.suites.aggregate import aggregate
from lens.suites.suite import (example, fillers_from_csv, from_template, parse_jsonl, parse_lines,
                               suite_from_bytes)
from lens.suites.table import csv_text, lens_csv, prompt_rows, single_prompt_query
from lens.views import render_view

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def bundled_backend():
    return local_backend(load_model("smollm2-135m"), None)


@pytest.fixture(scope="module")
def capitals(bundled_backend):
    return bundled_backend.lens_suite(example("capitals"))


def _y(trace) -> np.ndarray:
    return array(trace["y"]) if isinstance(trace["y"], dict) else np.asarray(trace["y"], float)


def test_the_lines_are_the_plain_mean_and_the_band_a_bootstrap_of_it(capitals):
    by = "continent"
    groups = aggregate(capitals, by)
    fig = json.loads(suite_lines_figure(groups, "target_logprob", capitals).to_json())
    lines = [t for t in fig["data"] if t.get("name")]
    bands = [t for t in fig["data"] if t.get("fill") == "toself"]
    values = np.asarray(capitals.target_logprob, np.float64)
    continents = capitals.labels[by]
    assert [t["name"].split(" (")[0] for t in lines] == list(dict.fromkeys(continents))
    rng_draws = 1000
    for line, band in zip(lines, bands):
        rows = [i for i, c in enumerate(continents) if c == line["name"].split(" (")[0]]
        assert line["name"].endswith(f"(n={len(rows)})")
        # The line: the plain mean over the group's prompts, layer by layer.
        np.testing.assert_allclose(_y(line), values[rows].mean(0), rtol=1e-9)
        # The band: the 2.5th and 97.5th percentiles of 1000 resampled means, drawn here one resample at a time.
        draws = np.random.default_rng(0).integers(0, len(rows), size=(rng_draws, len(rows)))
        means = np.array([values[rows][d].mean(0) for d in draws])
        lo, hi = np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)
        R = len(capitals.layers)
        y = _y(band)
        np.testing.assert_allclose(y[:R], hi, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(y[R:], lo[::-1], rtol=1e-9, atol=1e-9)
        assert (y[:R] >= y[R:][::-1] - 1e-12).all()
    # Behind them, each prompt's own line, its hover naming it.
    grey = [t for t in fig["data"] if not t.get("name") and t.get("fill") != "toself"]
    assert len(grey) == len(capitals.prompts)
    np.testing.assert_allclose(_y(grey[3]), values[3])


def test_the_median_line_and_the_exit_bars_count_the_prompts(capitals):
    groups = aggregate(capitals)
    fig = json.loads(suite_lines_figure(groups, "target_rank", capitals, "median").to_json())
    line = next(t for t in fig["data"] if t.get("name"))
    np.testing.assert_allclose(_y(line), np.median(np.asarray(capitals.target_rank, float), 0))
    assert fig["layout"]["yaxis"]["type"] == "log"
    bars = json.loads(exit_figure(groups).to_json())["data"][0]
    R = len(capitals.layers)
    expected = [sum(1 for e in capitals.exit_layer if e == r) for r in range(R)]
    expected.append(sum(1 for e in capitals.exit_layer if e is None))
    assert list(_y(bars).astype(int)) == expected and sum(expected) == len(capitals.prompts)


def test_the_per_prompt_table_filters_groups_and_links(capitals):
    rows = prompt_rows(capitals)
    assert [r["#"] for r in rows] == list(range(len(capitals.prompts)))
    wrong = prompt_rows(capitals, wrong_only=True)
    assert {r["#"] for r in wrong} == {i for i in range(len(rows)) if not capitals.correct[i]}
    assert all(r["right"] is False for r in wrong) and len(wrong) == 5
    # Australia: the model says " Sydney", at rank 1; the target " Canberra" is further down.
    aus = prompt_rows(capitals, text="AUSTRALIA")
    assert len(aus) == 1 and aus[0]["answer"] == " Sydney" and aus[0]["rank at output"] > 1
    i = aus[0]["#"]
    p = capitals.target_prob[i, -1]
    assert aus[0]["p(target) at output"] == pytest.approx(float(p))
    # Another lens row: that row's numbers.
    at5 = prompt_rows(capitals, row=5, text="australia")[0]
    assert at5["rank at L5"] == int(capitals.target_rank[i, 5])
    # Grouped: the label column first, rows together by value, in the order the values appear.
    grouped = prompt_rows(capitals, by="continent")
    assert list(grouped[0])[2] == "continent"
    seen = [r["continent"] for r in grouped]
    assert seen == sorted(seen, key=list(dict.fromkeys(capitals.labels["continent"])).index)
    # A row opens its prompt in the logit lens, with its target.
    q = single_prompt_query(capitals, i, "target_rank")
    assert q == {"prompt": "The capital of Australia is", "lens": "logit", "metric": "target_rank",
                 "target": " Canberra"}


def test_the_csv_holds_every_prompt_and_layer(capitals):
    header, rows = lens_csv(capitals)
    text = csv_text(header, rows)
    assert text.splitlines()[0].startswith("index,where,prompt,target")
    assert len(rows) == len(capitals.prompts) * len(capitals.layers)
    k = header.index("target_prob")
    assert float(rows[7 * len(capitals.layers) + 3][k]) == float(capitals.target_prob[7, 3])


def test_every_source_reads_the_same_items():
    jsonl = '{"prompt": "The capital of France is", "target": " Paris", "continent": "Europe"}\n'
    from_file = suite_from_bytes(jsonl.encode("utf-8-sig"), "mine.jsonl")
    csv = suite_from_bytes(b"prompt,target,continent\nThe capital of France is, Paris,Europe\n", "mine.csv")
    pasted = parse_lines("The capital of France is\t Paris\n")
    filled = from_template("The capital of {country} is",
                           fillers_from_csv("country,target,continent\nFrance, Paris,Europe\n"))
    for s in (from_file, csv, pasted, filled):
        assert s.items[0].prompt == "The capital of France is" and s.items[0].target == " Paris"
    assert from_file.items[0].label("continent") == csv.items[0].label("continent") == "Europe"
    assert parse_jsonl(from_file.to_jsonl(), "again").items[0].key() == from_file.items[0].key()


@pytest.mark.parametrize("data, name, message", [
    (b"", "empty.csv", "empty"),
    (b"\xff\xfe\x00", "bad.jsonl", "not UTF-8"),
    (b'{"prompt": "a"}\n{oops\n', "bad.jsonl", "line 2 is not valid JSON"),
    (b"text,answer\nhello,world\n", "bad.csv", "no 'prompt' column"),
    (b"prompt\nhi\n", "suite.exe", "ends in .jsonl"),
])
def test_a_bad_upload_is_one_message(data, name, message):
    with pytest.raises(LensError, match=message):
        suite_from_bytes(data, name)


def test_fillers_need_a_header_and_a_value_for_every_slot():
    with pytest.raises(LensError, match="empty"):
        fillers_from_csv("  \n")
    with pytest.raises(LensError, match=r"no value for the slot \{city\}"):
        from_template("{city} is in", fillers_from_csv("country,target\nFrance, Paris\n"))


def test_the_patching_grid_over_pairs_is_the_mean_of_the_pairs(bundled_backend):
    pairs = parse_jsonl(example("indirect-object").to_jsonl(), "io")
    few = type(pairs)(name="io", items=pairs.items[:3])
    r = bundled_backend.patch_suite(few)
    fig = json.loads(pair_grid_figure(r).to_json())
    z = array(fig["data"][0]["z"])
    grids = [np.asarray(bundled_backend.patch(i.clean, i.corrupt, _patch_options(i)).patch, float) for i in few.items]
    np.testing.assert_allclose(z, np.mean(grids, 0), rtol=1e-5, atol=1e-6)
    assert fig["layout"]["xaxis"]["type"] == "category" and fig["data"][0]["x"][-1].startswith("-1")


def _patch_options(item):
    from lens.options import PatchOptions

    return PatchOptions(target=item.target, foil=item.foil)


# ---------------------------------------------------------------- the page, run in-process

def suites_page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/suites.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_the_page_draws_the_suite_as_its_view_does(bundled_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    at = suites_page(suite="capitals", by="continent", measure="target_prob")
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    shown = charts(at)
    view = render_view(bundled_backend, "suite", example("capitals").to_jsonl(), suite="capitals", by="continent",
                       measure="target_prob")
    expected = json.loads(view.figures[0].to_json())
    assert len(shown[0]["data"]) == len(expected["data"])
    for mine, theirs in zip(shown[0]["data"], expected["data"]):
        np.testing.assert_allclose(_y(mine), _y(theirs), rtol=1e-6)
    assert "27 of 32" in " ".join(c.value for c in at.caption)
    # Save run: the run reopens with the same chart, from its numbers.
    from lens.runs import RunStore, open_view

    at.text_input(key="save-name-suite-lines").set_value("capitals by continent")
    at.button(key="save-suite-lines").click().run()
    runs = RunStore().list()
    assert [r["name"] for r in runs] == ["capitals by continent"] and runs[0]["view"] == "suite"
    again = open_view(RunStore().get(runs[0]["id"]))
    for mine, theirs in zip(json.loads(again.figures[0].to_json())["data"], expected["data"]):
        np.testing.assert_allclose(_y(mine), _y(theirs), rtol=1e-6)


def test_the_table_tab_and_a_bad_link(capitals):
    at = suites_page(suite="nonesuch", tab="Each prompt", wrong="true")
    assert not at.exception and not at.error
    said = " ".join(c.value for c in at.caption)
    assert "nonesuch" in said and "5 of 32 prompts" in said
    wrong = [p for p, right in zip(capitals.prompts, capitals.correct) if not right]
    assert list(at.dataframe[0].value["prompt"]) == wrong


def test_a_template_of_pairs_lists_what_it_left_out(bundled_backend):
    at = suites_page(source="Template", as_pairs="true", template="The capital of {country} is",
                     fillers="country,target\nFrance, Paris\nthe Czech Republic, Prague\nItaly, Rome\n",
                     tab="Patching over pairs")
    assert not at.exception and not at.error, [e.value for e in at.error]
    said = " ".join(c.value for c in at.caption)
    assert "left out" in said and "tokens" in said
    assert any("Patch all 1 pairs" in t.label for t in at.toggle)


def test_a_bad_pasted_line_is_one_message_in_the_page():
    at = suites_page(source="Paste", pasted="a\tb\tc\td\n")
    assert not at.exception
    assert at.error and "4 tab-separated parts" in at.error[0].value
