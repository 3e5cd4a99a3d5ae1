"""The research workbench as a user meets it, in a real browser: upload a CSV of prompts, see the answer's
probability per layer with its interval, pick an outlier to open it in the logit lens, save the run, find it on
the Saved runs page (in a new browser session, as the next day), and download a script that prints, run by
itself in another folder, the same numbers as the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, settle, streamlit_server

ROOT = Path(__file__).resolve().parent.parent
CSV = "prompt,target,kind\n" + "".join(
    f"The capital of {c} is,{t},{k}\n" for c, t, k in [
        ("France", " Paris", "europe"), ("Italy", " Rome", "europe"), ("Germany", " Berlin", "europe"),
        ("Spain", " Madrid", "europe"), ("Japan", " Tokyo", "asia"), ("China", " Beijing", "asia"),
        ("Egypt", " Cairo", "africa"), ("Kenya", " Nairobi", "africa"), ("Peru", " Lima", "americas"),
        ("Canada", " Ottawa", "americas"), ("Australia", " Canberra", "oceania"), ("India", " Delhi", "asia"),
        ("Greece", " Athens", "europe"), ("Poland", " Warsaw", "europe"), ("Cuba", " Havana", "americas"),
        ("Chile", " Santiago", "americas"), ("Norway", " Oslo", "europe"), ("Austria", " Vienna", "europe"),
        ("Ireland", " Dublin", "europe"), ("Russia", " Moscow", "europe")])


@pytest.fixture(scope="module")
def workbench(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs") / "runs.sqlite"
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env={"LAYERLENS_RUNS": str(runs), "LAYERLENS_WARM": "home"}) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser, url, runs
        browser.close()


def test_a_csv_suite_from_upload_to_saved_run_and_script(workbench, tmp_path):
    browser, url, runs = workbench
    suite = tmp_path / "capitals.csv"
    suite.write_text(CSV, encoding="utf-8")
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.goto(f"{url}/suites?source=File&by=kind")
    settle(pg)
    pg.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(suite))
    pg.wait_for_selector(".js-plotly-plot .main-svg", timeout=240_000)
    settle(pg)
    # One line and band per kind of country, each prompt's own line behind them.
    names = pg.eval_on_selector_all(".js-plotly-plot .legendtext", "els => els.map(e => e.textContent)")
    assert "europe (n=10)" in names and "asia (n=3)" in names, names
    said = pg.locator("[data-testid=stCaptionContainer]").all_inner_texts()
    assert any("20 prompts" in s for s in said), said
    pg.screenshot(path=str(ARTIFACTS / "workbench-suite.png"))

    # Save the run, named, with a note.
    pg.get_by_role("button", name="Save run").first.click()
    pg.get_by_role("textbox", name="Name").fill("capitals by kind")
    pg.get_by_role("textbox", name="Note").fill("Australia is the odd one out")
    pg.get_by_role("button", name="Save", exact=True).click()
    pg.wait_for_timeout(1500)
    settle(pg)

    # The script: downloaded from the Export menu, run by itself in another folder.
    pg.keyboard.press("Escape")
    pg.get_by_role("button", name="Export").first.click()
    with pg.expect_download() as got:
        pg.get_by_role("button", name="Python script (prints the numbers)").click()
    script = tmp_path / "elsewhere" / "suite_script.py"
    script.parent.mkdir()
    script.write_text(Path(got.value.path()).read_text(encoding="utf-8"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    printed = subprocess.run([sys.executable, script.name], cwd=script.parent, env=env, capture_output=True,
                             text=True, timeout=600)
    assert printed.returncode == 0, printed.stderr[-2000:]
    (script.parent / "suite.jsonl").write_text(_suite_jsonl(script), encoding="utf-8")
    command = subprocess.run([sys.executable, "-m", "lens", "suite", "--prompts-file", "suite.jsonl", "--by", "kind",
                              "--json", "--no-cache"], cwd=script.parent, env=env, capture_output=True, text=True,
                             timeout=600)
    assert command.returncode == 0, command.stderr[-2000:]
    assert json.loads(printed.stdout) == json.loads(command.stdout)

    # An outlier: Australia (the model says " Sydney"); picking its row opens it in the logit lens.
    pg.goto(f"{url}/suites?source=File&tab=Each+prompt&wrong=true&find=Australia")
    settle(pg)
    pg.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(suite))
    pg.wait_for_selector("[data-testid=stDataFrame]", timeout=240_000)
    settle(pg)
    grid = pg.locator("[data-testid=stDataFrame]").first.bounding_box()
    pg.mouse.click(grid["x"] + 15, grid["y"] + 52)  # the first row's selection box
    pg.wait_for_url("**/logit_lens?**", timeout=60_000)
    settle(pg)
    assert "Australia" in pg.url and "target=+Canberra" in pg.url, pg.url
    assert pg.get_by_role("textbox", name="Prompt", exact=True).input_value() == "The capital of Australia is"
    # (the box a person sees: the live chart's own, where it stands in for Streamlit's)
    assert pg.get_by_label("Target token", exact=True).filter(visible=True).first.input_value() == " Canberra"
    assert pg.evaluate("() => document.querySelector('.ll-live-plot').dataset.target") == " Canberra"
    ctx.close()

    # The next day: a new browser session finds the run and opens it from its saved numbers.
    later = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = later.new_page()
    pg.goto(f"{url}/runs")
    settle(pg)
    pg.get_by_role("combobox", name="Open runs by id (pick two to compare)").click()
    pg.get_by_role("option", name="1", exact=True).click()
    pg.keyboard.press("Escape")
    settle(pg)
    assert pg.get_by_role("heading", name="capitals by kind").count() == 1
    assert pg.get_by_role("textbox", name="Note").input_value() == "Australia is the odd one out"
    names = pg.eval_on_selector_all(".js-plotly-plot .legendtext", "els => els.map(e => e.textContent)")
    assert "europe (n=10)" in names, names
    pg.screenshot(path=str(ARTIFACTS / "workbench-run.png"))
    later.close()


def _suite_jsonl(script: Path) -> str:
    """The suite the script holds (its SUITE literal), as the file its docstring's command reads."""
    import ast

    source = script.read_text(encoding="utf-8")
    start = source.index("SUITE = (") + len("SUITE = ")
    end = source.index("\n)\n", start) + 2
    return ast.literal_eval(source[start:end])


def test_the_anatomy_page_measures_an_uploaded_suite(workbench, tmp_path, backend):
    """Layer anatomy over a suite file of one's own: uploaded, read as data, every prompt measured, the mean norm
    curve the backend's for the same file; a file that is no suite is one message, and the page stays usable."""
    from urllib.parse import quote

    import numpy as np

    from browser import _decoded, charts
    from lens.anatomy.spread import spread
    from lens.anatomy.options import AnatomyOptions
    from lens.suites.suite import suite_from_bytes

    browser, url, _ = workbench
    data = "".join(json.dumps({"prompt": p}) + "\n" for p in
                   ["The capital of France is", "Water boils at one hundred", "She opened the door and"])
    mine = tmp_path / "mine.jsonl"
    mine.write_text(data, encoding="utf-8")
    want = backend.anatomy_suite(suite_from_bytes(data.encode(), "mine.jsonl"), AnatomyOptions())
    pg = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        pg.goto(f"{url}/anatomy?source=suite&suite={quote('your own file…')}")
        settle(pg)
        assert pg.get_by_text("Upload a suite file").is_visible()
        pg.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(mine))
        pg.wait_for_selector(".js-plotly-plot .main-svg", timeout=240_000)
        settle(pg)
        norm = charts(pg)[0]
        np.testing.assert_allclose(np.asarray(_decoded(norm["data"][1]["y"]), float), spread(want.norm)["mean"],
                                   rtol=1e-5)
        said = " ".join(pg.locator("[data-testid=stCaptionContainer]").all_inner_texts())
        assert "3 prompts of mine" in said, said
        bad = tmp_path / "bad.csv"
        bad.write_text("text,answer\nhello,world\n", encoding="utf-8")
        pg.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(bad))
        pg.wait_for_function("() => document.body.innerText.includes(\"no 'prompt' column\")", timeout=60_000)
        settle(pg)
        assert not pg.locator("[data-testid=stException]").count()
        pg.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(mine))
        pg.wait_for_selector(".js-plotly-plot .main-svg", timeout=240_000)
        settle(pg)
        assert len(charts(pg)) >= 2
    finally:
        pg.close()
