"""The Runs page, run in-process: saved runs are listed, opened from their numbers (no model loads), compared."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from plotly_json import charts

from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.runs import RunStore, save_view
from lens.views import render_view

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def saved(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    backend = local_backend(load_model("tiny-llama"), None)
    store = RunStore()
    a = save_view(store, backend, "logit-lens", "the cat sat on the mat", {"metric": "kl"}, name="cat", note="late")
    b = save_view(store, backend, "logit-lens", "the dog sat on the mat", {"metric": "kl"}, name="dog")
    c = save_view(store, backend, "rollout", "the dog sat on the mat", {}, name="roll")
    return backend, store, a, b, c


def runs_page(*run_ids, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/runs.py")
    if run_ids:
        at.query_params["run"] = [str(i) for i in run_ids]
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_one_run_opens_from_its_saved_numbers(saved, monkeypatch):
    backend, store, a, b, c = saved
    import ui.backends

    asked = set(ui.backends._loaded) | set(ui.backends._loading)
    at = runs_page(a.id)
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    # No model was loaded or asked for: the chart comes from the saved numbers.
    assert set(ui.backends._loaded) | set(ui.backends._loading) == asked
    shown = charts(at)
    expected = render_view(backend, "logit-lens", "the cat sat on the mat", metric="kl").figures[0]
    assert shown[0]["data"][0]["type"] == "heatmap"
    assert shown[0]["layout"]["title"]["text"] == expected.layout.title.text
    assert at.text_area[0].value == "late"
    assert "cat" in " ".join(s.value for s in at.subheader)


def test_two_runs_side_by_side_with_their_difference(saved):
    import numpy as np

    backend, store, a, b, c = saved
    at = runs_page(a.id, b.id)
    assert not at.exception, at.exception
    figs = charts(at)
    assert len(figs) == 3  # both lenses, then first − second
    za = np.asarray(render_view(backend, "logit-lens", "the cat sat on the mat", metric="kl").figures[0].data[0].z)
    zb = np.asarray(render_view(backend, "logit-lens", "the dog sat on the mat", metric="kl").figures[0].data[0].z)
    from plotly_json import array

    got = array(figs[2]["data"][0]["z"])
    assert np.allclose(got, za - zb, equal_nan=True)
    # Another view: no difference, and the page says why.
    at = runs_page(a.id, c.id)
    assert len(charts(at)) == 2 and "No difference is drawn" in " ".join(x.value for x in at.caption)


def test_filters_and_the_empty_list(saved, tmp_path, monkeypatch):
    at = runs_page(runs_view="rollout")
    assert "1 of 3 saved runs" in " ".join(x.value for x in at.caption)
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "none.sqlite"))
    at = runs_page()
    assert not at.exception and "No saved run yet" in at.info[0].value


def test_save_run_under_a_chart_keeps_the_view_as_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/logit_lens.py")
    at.query_params.update(prompt="The capital of France is", metric="kl", stride="2")
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    at.text_input(key="save-name-lens-heatmap").input("my cat")
    at.text_area(key="save-note-lens-heatmap").input("KL falls late")
    at.button(key="save-lens-heatmap").click().run()
    assert not at.exception, at.exception
    (saved,) = RunStore().list()
    run = RunStore().get(saved["id"])
    assert (run.name, run.view, run.model, run.note) == ("my cat", "logit-lens", "smollm2-135m", "KL falls late")
    assert run.params["metric"] == "kl" and run.params["stride"] == 2
