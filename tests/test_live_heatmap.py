"""The lens page's live heatmap (ui/live): what the browser draws for each metric is the tested figure
(``logit_lens_figure``), a clicked cell opens "Show the work" on it, the metric the browser reports is what the
page (and so the URL and the exports) then uses; and, in a real Chromium, switching the metric recolours the
chart without a script run, the URL then names the metric, and a click opens the clicked cell's work."""
import json
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from lens.engine_backend import local_backend
from lens.figures.logit_lens import METRICS, live_figure, live_payload, logit_lens_figure
from lens.figures.style import for_slides
from lens.model.loading import load_model
from lens.options import LensOptions

sys.path.insert(0, str(Path(__file__).parent))

from apptest import live_heatmap_data, live_heatmaps, send_live  # noqa: E402
from browser import POLL_MS  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PROMPT = "abcabcab"


@pytest.fixture(scope="module")
def result():
    return local_backend(load_model("tiny-llama"), None).logit_lens(PROMPT, LensOptions(top_k=3, target="b"))


def plain(fig: dict) -> dict:
    """A figure's JSON with its numpy arrays (plotly.py's {"dtype", "bdata"}) as nested lists, as the browser's
    rows of them are."""
    from browser import _decoded

    def walk(v):
        if isinstance(v, dict):
            return _decoded(v).tolist() if "bdata" in v else {k: walk(x) for k, x in v.items()}
        return [walk(x) for x in v] if isinstance(v, list) else v
    return walk(fig)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("exits", [False, True])
def test_one_payload_draws_each_metric_at_each_stride_as_the_tested_figure(result, stride, exits):
    payload = live_payload(result, stride=5, show_exit=not exits)  # the page's stride and marks do not matter
    assert set(payload["figures"]) == set(METRICS)
    assert set(payload["strides"]) == {str(s) for s in range(1, len(result.layers))}
    for m in METRICS:
        want = json.loads(logit_lens_figure(result, metric=m, stride=stride, show_exit=exits).to_json())
        assert plain(live_figure(payload, m, stride, exits)) == plain(want), m
    # Sent once: the cell texts and hovers are the same for every metric.
    assert payload["shared"]["customdata"] and all("customdata" not in f["data"][0]
                                                   for f in payload["figures"].values())


@pytest.fixture(scope="module")
def with_alternatives():
    """The default target's lens with the final top-3 followed too, and those three as its targets."""
    from lens.analysis.retarget import retarget

    base = local_backend(load_model("tiny-llama"), None).logit_lens(PROMPT, LensOptions(top_k=3, alternatives=3))
    return base, {t: retarget(base, t) for t in base.alternative_tokens}


@pytest.mark.parametrize("stride", [1, 3])
def test_one_payload_draws_every_target_as_the_tested_figure(with_alternatives, stride):
    """Each target the payload offers, drawn from it at each metric, is ``logit_lens_figure`` of the lens with that
    target: the target metrics' colours and every cell's hover (its rank, probability and token)."""
    base, others = with_alternatives
    payload = live_payload(base, targets=others)
    assert set(payload["targets"]) == set(base.alternative_tokens)
    for t, other in others.items():
        for m in METRICS:
            want = json.loads(logit_lens_figure(other, metric=m, stride=stride, show_exit=True).to_json())
            assert plain(live_figure(payload, m, stride, True, target=t)) == plain(want), (t, m)
    # A target away from the default changes something a reader sees (else this test could not fail).
    t = base.alternative_tokens[1]
    assert plain(live_figure(payload, "target_rank", target=t)) != plain(live_figure(payload, "target_rank"))


def test_presenter_payload_draws_every_target_as_the_tested_figure(with_alternatives):
    base, others = with_alternatives
    style = lambda f: for_slides(f, 450)  # noqa: E731
    payload = live_payload(base, stride=2, style=style, targets=others)
    for t, other in others.items():
        for m in METRICS:
            want = json.loads(style(logit_lens_figure(other, metric=m, stride=2)).to_json())
            assert plain(live_figure(payload, m, target=t)) == plain(want), (t, m)


def test_a_window_too_wide_for_cell_texts_is_sent_as_its_figure():
    """Past MAX_CELL_TEXT_COLUMNS columns the figure has no cell texts: neither has the payload."""
    from lens.figures.logit_lens import MAX_CELL_TEXT_COLUMNS

    wide = local_backend(load_model("tiny-llama"), None).logit_lens("abcab" * 11, LensOptions(top_k=2))
    assert len(wide.positions) > MAX_CELL_TEXT_COLUMNS
    payload = live_payload(wide)
    assert "text" not in payload["shared"]
    for m in ("probability", "kl"):
        want = json.loads(logit_lens_figure(wide, metric=m, stride=2).to_json())
        assert plain(live_figure(payload, m, 2)) == plain(want), m


def test_the_exit_marks_and_the_colour_scale_hold_at_every_stride(result):
    """Columns with an exit layer get a mark at every stride; the colour scale (KL's top, the rank's ticks) is
    that of every layer, so a stride changes no cell's colour."""
    assert any(e for e in result.exit_layer), result.exit_layer  # the tiny model's prompt has exits to mark
    for m in METRICS:
        scale = {k: v for k, v in logit_lens_figure(result, m).to_plotly_json()["data"][0].items()
                 if k in ("zmin", "zmax", "colorbar")}
        for stride in (2, 3):
            fig = logit_lens_figure(result, m, stride=stride, show_exit=True)
            assert {k: v for k, v in fig.to_plotly_json()["data"][0].items() if k in scale} == scale, (m, stride)
            assert len(fig.layout.shapes) == sum(1 for e in result.exit_layer if e), (m, stride)


def test_presenter_styling_is_applied_to_each_figure(result):
    payload = live_payload(result, stride=2, style=lambda f: for_slides(f, 450))
    for m in METRICS:
        want = json.loads(for_slides(logit_lens_figure(result, metric=m, stride=2), 450).to_json())
        assert live_figure(payload, m) == want, m


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_rows_and_columns_name_the_clicked_cell(result, stride):
    """A click at (row i, column j) of the drawn figure names layer ``layers[i]`` (0: the embeddings) and
    position ``positions[j]``: the row's and column's labels say the same."""
    payload = live_payload(result)
    fig = live_figure(payload, "probability", stride)
    y, x = fig["data"][0]["y"], fig["data"][0]["x"]
    rows = payload["strides"][str(stride)]["rows"]  # the row drawn i-th is the layer row rows[i]
    assert len(rows) == len(y) and len(payload["layers"]) == len(result.layers) and len(payload["positions"]) == len(x)
    for layer, label in zip([payload["layers"][r] for r in rows], y):
        assert label == ("emb" if layer == 0 else f"L{layer}")
    for pos, label in zip(payload["positions"], x):
        assert label.startswith(f"{pos}·")


# ---------------------------------------------------------------- the page, in process
@pytest.fixture(autouse=True)
def live_in_process(monkeypatch):
    """The live chart in an in-process run (which, having no browser, gets the plain chart otherwise); the tiny
    model offered in the sidebar's box (else AppTest cannot send the page's widget states back)."""
    import ui.live
    from saved_views import offer_in_model_box

    monkeypatch.setattr(ui.live, "available", lambda: True)
    offer_in_model_box(monkeypatch, "tiny-llama")


def charts(at) -> list[dict]:
    """The live heatmap as the figure it draws for the metric it was sent (no plain charts on the lens page)."""
    return [live_figure(d, d["metric"], *drawn_options(d)) for d in map(live_heatmap_data, at.get("bidi_component"))
            if d]


def drawn_options(data: dict) -> tuple:
    """The stride, the exit choice and the target a live heatmap's data asks the browser to draw (None, False,
    None: it has no such options)."""
    o = data.get("options") or {}
    return (int(o["stride"]) if "stride" in o else None), o.get("exits") == "on", o.get("target") or None


def page(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/logit_lens.py")
    at.query_params.update(model="tiny-llama", prompt=PROMPT, **params)
    return at


def heatmap_element(at):
    return live_heatmaps(at)[0]


def send(at, **values):
    return send_live(at, heatmap_element(at), **values)


def test_the_page_sends_every_metric_and_draws_the_linked_one():
    at = page(metric="kl", stride="2").run()
    assert not at.exception and not at.error
    assert not at.get("plotly_chart")  # the live chart replaces it
    data = live_heatmap_data(heatmap_element(at))
    assert data["metric"] == "kl" and set(data["figures"]) == set(METRICS)
    assert "colour: KL to final (nats)" in charts(at)[0]["layout"]["title"]["text"]
    assert data["options"] == {"stride": "2", "exits": "off", "target": ""}  # the link's stride, drawn by the browser
    assert len(charts(at)[0]["data"][0]["y"]) == len(data["strides"]["2"]["rows"]) < len(data["layers"])


def test_a_stride_and_the_exit_marks_switched_in_the_browser_come_back_to_the_boxes_and_the_url(
        widget_state_warnings):
    at = page().run()
    sent = live_heatmap_data(heatmap_element(at))
    at = send(at, stride="3", exits="on")
    assert not at.exception and not at.error
    assert at.number_input(key="stride").value == 3 and at.toggle(key="exits").value is True
    assert at.query_params.get("stride") in ("3", ["3"]) and str(at.query_params.get("exits")).lower() in (
        "true", "['true']"), at.query_params
    data = live_heatmap_data(heatmap_element(at))
    assert data["options"] == {"stride": "3", "exits": "on", "target": ""}
    assert data["signature"] == sent["signature"]  # one payload for every stride: nothing rebuilt
    # What the exports are made from follows: the figure the page exports at these options is the one drawn.
    want = json.loads(logit_lens_figure(at.session_state["_lens_result_for_tests"] if False else
                                        local_backend(load_model("tiny-llama"), None).logit_lens(
                                            PROMPT, LensOptions(top_k=5)), "probability", stride=3,
                                        show_exit=True).to_json())
    assert plain(charts(at)[0]) == plain(want)
    # Values the page cannot take are ignored; no box warns of a value set through session state.
    at = send(at, stride="99", exits="maybe")
    assert not at.exception and at.number_input(key="stride").value == 3 and at.toggle(key="exits").value is True
    assert not widget_state_warnings, widget_state_warnings


def test_a_target_switched_in_the_browser_comes_back_to_the_box_and_the_url(widget_state_warnings, monkeypatch):
    """The page offers the final top tokens as targets the browser draws at once; one it reports comes back to the
    box and the link with nothing rebuilt, and what the page then draws (and exports) is the lens with that
    target. A target typed that is none of them is computed by the server and offered from then on."""
    import lens.figures.logit_lens as figures
    from apptest import live_controls

    built = []
    monkeypatch.setattr(figures, "live_payload", lambda *a, **k: built.append(1) or live_payload(*a, **k))
    at = page().run()
    sent = live_heatmap_data(heatmap_element(at))
    before = len(built)
    lens = local_backend(load_model("tiny-llama"), None)
    base = lens.logit_lens(PROMPT, LensOptions(top_k=5, alternatives=5))
    assert list(sent["targets"]) == base.alternative_tokens and sent["options"]["target"] == ""
    box = [c for c in live_controls(at) if c.get("option") == "target"]
    assert len(box) == 1 and list(box[0]["options"]) == base.alternative_tokens
    second = base.alternative_tokens[1]
    at = send(at, target=second, metric="target_rank")
    assert not at.exception and not at.error
    assert at.text_input(key="target").value == second
    assert at.query_params.get("target") in (second, [second]), at.query_params
    data = live_heatmap_data(heatmap_element(at))
    assert data["signature"] == sent["signature"] and data["options"]["target"] == second
    assert len(built) == before  # the same payload: nothing rebuilt on the server
    want = lens.logit_lens(PROMPT, LensOptions(top_k=5, target=second))
    assert plain(charts(at)[0]) == plain(json.loads(logit_lens_figure(want, "target_rank").to_json()))
    # Typed, another target: computed on the server, drawn, and offered with the others.
    at = send(at, target="b")
    data = live_heatmap_data(heatmap_element(at))
    assert "b" in data["targets"] and data["options"]["target"] == "b" and len(built) == before + 1
    want = lens.logit_lens(PROMPT, LensOptions(top_k=5, target="b"))
    assert plain(charts(at)[0]) == plain(json.loads(logit_lens_figure(want, "target_rank").to_json()))
    assert not widget_state_warnings, widget_state_warnings


def test_a_clicked_cell_opens_show_the_work_on_it(caplog):
    import logging

    from streamlit.elements.lib import policies

    at = page().run()
    assert not at.exception
    policies._shown_default_value_warning = False  # Streamlit warns once per process: make this run count
    with caplog.at_level(logging.WARNING):
        at = send(at, cell={"layer": 1, "position": 3})
    assert not [r for r in caplog.records if "default value" in r.getMessage()], caplog.text
    assert not at.exception and not at.error
    assert at.session_state["cell_layer"] == 1 and at.session_state["cell_pos"] == 3
    assert at.session_state["panel"] == "work"
    assert at.number_input(key="cell_layer").value == 1 and at.number_input(key="cell_pos").value == 3
    assert any(m.value.startswith("**Layer 1, position 3**") for m in at.markdown)
    assert str(at.query_params.get("panel")) in ("work", "Show the work", "['Show the work']"), at.query_params
    assert at.query_params.get("cell_layer") in ("1", ["1"]) and at.query_params.get("cell_pos") in ("3", ["3"])
    # A second click with the panel open moves it to the new cell.
    at = send(at, cell={"layer": 0, "position": 5})
    assert [at.number_input(key=k).value for k in ("cell_layer", "cell_pos")] == [0, 5]
    assert any(m.value.startswith("**The embeddings, position 5**") for m in at.markdown)
    assert at.query_params.get("cell_layer") in ("0", ["0"])  # the embeddings too: in the link


def test_the_metric_the_browser_shows_comes_back_to_the_box_and_the_url():
    at = page().run()
    at = send(at, metric="entropy")
    assert not at.exception
    assert at.selectbox(key="metric").value == "entropy"
    qp = at.query_params.get("metric")
    assert "entropy" in (qp if isinstance(qp, list) else [qp]), at.query_params
    assert live_heatmap_data(heatmap_element(at))["metric"] == "entropy"
    # What the exports are made from follows: the chart read back from the page is the entropy figure.
    assert charts(at)[0]["layout"]["title"]["text"].endswith("colour: entropy (nats)")
    # A value the page does not know is ignored (the box keeps its metric).
    at = send(at, metric="bogus")
    assert not at.exception and at.selectbox(key="metric").value == "entropy"


def test_without_the_live_chart_the_plain_chart_and_its_box_work(monkeypatch):
    """The fallback (no browser in process, or no plotly.js file): Streamlit's chart, redrawn by the server, with
    the same figure, and no component on the page."""
    import ui.live

    monkeypatch.setattr(ui.live, "available", lambda: False)
    at = page(metric="entropy").run()
    assert not at.exception and not at.get("bidi_component")
    shown = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "colour: entropy (nats)" in shown["layout"]["title"]["text"]


# ---------------------------------------------------------------- heads and rollout, in process
ATT_PROMPT = "abcab"


def attention_page(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/attention.py")
    at.query_params.update(model="tiny-llama", prompt=ATT_PROMPT, **params)
    return at.run()


@pytest.fixture(scope="module")
def tiny_backend():
    return local_backend(load_model("tiny-llama"), None)


@pytest.mark.parametrize("present", [False, True])
def test_every_head_score_is_sent_as_the_tested_figure(tiny_backend, present):
    from lens.figures.attention import SCORES, head_summary_figure
    from ui.present import SCREEN_CHART, SCREEN_WIDTH

    at = attention_page(view="Heads", head_metric="induction", **({"present": "1"} if present else {}))
    assert not at.exception and not at.error
    (element,) = live_heatmaps(at)
    data = live_heatmap_data(element)
    summary = tiny_backend.head_summary(ATT_PROMPT)  # computed here, on its own
    assert data["metric"] == "induction" and set(data["figures"]) == set(SCORES)
    for m in SCORES:
        fig = head_summary_figure(summary, m, height=SCREEN_CHART if present else None)
        if present:
            fig = for_slides(fig, SCREEN_CHART, width=int(SCREEN_WIDTH * 0.5))
        assert data["figures"][m] == json.loads(fig.to_json()), m
    # Each row is a layer (from 1), each column a head: what a click names.
    assert data["layers"] == list(range(1, summary.n_layers + 1)) and data["positions"] == list(range(summary.n_heads))
    # The scores' plain chart gives way (the layer's grid and the enlarged head stay plain charts).
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert not [t for t in titles if t.startswith("Per-head")], titles


def test_a_score_switched_or_cleared_in_the_browser_comes_back_and_a_clicked_head_opens(tiny_backend):
    at = attention_page(view="Heads", head_metric="induction")
    at = send_live(at, live_heatmaps(at)[0], metric="entropy")
    assert not at.exception and at.selectbox(key="head_metric").value == "entropy"
    assert live_heatmap_data(live_heatmaps(at)[0])["metric"] == "entropy"
    assert "entropy" in str(at.query_params.get("head_metric"))
    at = send_live(at, live_heatmaps(at)[0], cell={"layer": 2, "position": 1})  # layer 2, head 1
    assert not at.exception
    assert at.number_input(key="head_layer").value == 2 and at.session_state["head"] == "1"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("Layer 2, head 1") for t in titles), titles
    # "none": the scores go, and with them the live chart (Streamlit's box is back).
    at = send_live(at, live_heatmaps(at)[0], metric="")
    assert not at.exception and at.selectbox(key="head_metric").value is None and not live_heatmaps(at)
    # A value the page does not know is ignored.
    at = attention_page(view="Heads", head_metric="prev_token")
    at = send_live(at, live_heatmaps(at)[0], metric="bogus")
    assert at.selectbox(key="head_metric").value == "prev_token"


def test_rollout_and_flow_send_both_sink_choices_and_one_switch_turns_both(tiny_backend):
    from lens.figures.attention import rollout_figure
    from lens.options import FlowOptions, RolloutOptions

    at = attention_page(view="Rollout & flow", flow="true")
    assert not at.exception and not at.error
    shown = live_heatmaps(at)
    assert len(shown) == 2
    position = len(tiny_backend.tokenize(ATT_PROMPT)) - 1
    roll = tiny_backend.rollout(ATT_PROMPT, RolloutOptions(position))
    flow = tiny_backend.attention_flow(ATT_PROMPT, FlowOptions(position, None))
    for element, result in zip(shown, (roll, flow)):
        data = live_heatmap_data(element)
        assert data["metric"] == "off" and data["channel"] == live_heatmap_data(shown[0])["channel"]
        for value, skip in (("off", False), ("on", True)):
            assert data["figures"][value] == json.loads(rollout_figure(result, skip_first=skip).to_json()), value
        assert data["layers"] == []  # a click on these cells opens nothing
    at = send_live(at, shown[0], metric="on")
    assert not at.exception and at.toggle(key="rollout_skip_first").value is True
    assert all(live_heatmap_data(e)["metric"] == "on" for e in live_heatmaps(at))
    assert "true" in str(at.query_params.get("rollout_skip_first")).lower()


# ---------------------------------------------------------------- in a real Chromium
BROWSER_PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    from browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, streamlit_server

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw, streamlit_server(env={"LAYERLENS_WARM": "home"}) as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        browser.base_url = url
        new_page = browser.new_page

        def counting_page(**kw):  # each page counts its script runs from its websocket (COUNT_RUNS reads them)
            from bench.browser import count_runs

            pg = new_page(**kw)
            count_runs(pg)
            return pg
        browser.new_page = counting_page
        yield browser
        browser.close()


def test_in_the_browser_the_metric_switches_without_a_rerun_and_a_click_opens_the_cell(chromium):
    from bench.browser import COUNT_RUNS, _cell, _switch
    from browser import ARTIFACTS, charts, clipped_labels, settle

    pg = chromium.new_page(viewport={"width": 1600, "height": 1000})
    requests = []
    pg.on("request", lambda r: requests.append(r.url))
    try:
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(BROWSER_PROMPT)}")
        settle(pg)
        pg.wait_for_selector(".ll-live-plot .js-plotly-plot .main-svg", timeout=120_000)
        assert not pg.locator(".st-key-metric").is_visible()  # Streamlit's box gives way to the live one
        mark = pg.locator(".ll-live-control[data-option=metric] .ll-help")  # with the "?" of Streamlit's boxes, and its help
        assert mark.count() == 1 and mark.is_visible() and "How sure the layer is" in mark.get_attribute("title")
        before = charts(pg)
        assert len(before) == 1 and "colour: top-1 probability" in before[0]["title"]
        assert clipped_labels(pg) == []
        # The other metrics are drawn ahead, held out of the page: it still has one chart.
        n_metrics = len(pg.evaluate("() => [...document.querySelectorAll('.ll-live-control[data-option=metric] option')]"))
        pg.wait_for_function("(n) => document.querySelectorAll('.ll-live-plot .ll-layer').length === n",
                             arg=n_metrics, timeout=30_000, polling=POLL_MS)
        draws = pg.evaluate("() => Number(document.querySelector('.ll-live-plot').dataset.draws)")
        assert draws == n_metrics and len(charts(pg)) == 1
        pg.evaluate(COUNT_RUNS)
        _switch(pg, "entropy")  # until the colour bar says entropy
        assert pg.evaluate("() => window.__runs") == 0  # recoloured by the browser alone
        after = charts(pg)
        assert len(after) == 1 and "colour: entropy (nats)" in after[0]["title"]
        assert after[0]["data"][0]["z"] != before[0]["data"][0]["z"]
        assert after[0]["data"][0]["customdata"] == before[0]["data"][0]["customdata"]  # the same cells
        pg.evaluate("() => { document.querySelector('.ll-live-plot .js-plotly-plot').__kept = true; }")
        # A moment later the server hears of it: the URL names the metric, the chart is not drawn again.
        pg.wait_for_function("() => location.search.includes('metric=entropy')", timeout=30_000, polling=POLL_MS)
        settle(pg)
        assert pg.evaluate("() => window.__runs") == 1
        assert pg.evaluate("() => document.querySelector('.ll-live-plot .js-plotly-plot').__kept === true")
        # Switching between drawn layers draws nothing.
        _switch(pg, "top-1 probability")
        assert charts(pg)[0]["title"] == before[0]["title"]
        assert pg.evaluate("() => Number(document.querySelector('.ll-live-plot').dataset.draws)") == draws
        _switch(pg, "entropy")
        pg.wait_for_function("() => location.search.includes('metric=entropy')", timeout=30_000, polling=POLL_MS)
        settle(pg)
        # A copied link shows the same chart.
        other = chromium.new_page(viewport={"width": 1600, "height": 1000})
        other.goto(pg.url)
        settle(other)
        other.wait_for_selector(".ll-live-plot .main-svg", timeout=120_000)
        assert charts(other)[0]["title"] == after[0]["title"]
        other.close()
        # A cell: Show the work opens on it, and the link names it.
        _cell(pg, 25, 2, "Layer 25, position 2")
        settle(pg)
        assert "panel=Show+the+work" in pg.url and "cell_layer=25" in pg.url and "cell_pos=2" in pg.url
        pg.screenshot(path=str(ARTIFACTS / "live-heatmap-clicked.png"))
        # plotly.js came from this server, nothing from the network.
        assert not [u for u in requests if not u.startswith((chromium.base_url, "data:", "blob:"))]
        assert any(u.endswith("/_stcore/bidi-components/layerlens.plotlyjs/plotly.min.js") for u in requests)
    finally:
        pg.close()


def test_in_the_browser_the_stride_and_the_exit_marks_switch_without_a_rerun(chromium, backend):
    """The live stride box and exit switch redraw in the browser alone, as the tested figure at that stride and with
    those marks (the bundled model's lens, computed here); a moment later the URL names them, and a copied link
    draws the same."""
    from bench.browser import COUNT_RUNS
    from browser import charts, clipped_labels, settle

    result = backend.logit_lens(BROWSER_PROMPT, LensOptions())
    shapes = "() => (document.querySelector('.ll-live-plot .js-plotly-plot').layout.shapes || []).map(s => [s.x0, s.y0])"
    height = "() => document.querySelector('.ll-live-plot .js-plotly-plot').layout.height"

    def same_as(pg, stride: int, exits: bool) -> None:
        want = json.loads(logit_lens_figure(result, "probability", stride=stride, show_exit=exits).to_json())
        shown = charts(pg)
        assert len(shown) == 1 and shown[0]["title"] == want["layout"]["title"]["text"]
        assert shown[0]["data"][0]["y"] == want["data"][0]["y"]
        assert same_charts([{k: shown[0]["data"][0][k] for k in ("z", "text", "customdata")}],
                           [{k: want["data"][0][k] for k in ("z", "text", "customdata")}])
        assert pg.evaluate(height) == want["layout"]["height"]
        assert pg.evaluate(shapes) == [[s["x0"], s["y0"]] for s in want["layout"].get("shapes", [])]
        assert clipped_labels(pg) == []

    from browser import same_charts

    pg = chromium.new_page(viewport={"width": 1600, "height": 1000})
    try:
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(BROWSER_PROMPT)}")
        settle(pg)
        pg.wait_for_selector(".ll-live-plot .js-plotly-plot .main-svg", timeout=120_000)
        assert not pg.locator(".st-key-stride").is_visible() and not pg.locator(".st-key-exits").is_visible()
        same_as(pg, 1, False)
        pg.evaluate(COUNT_RUNS)
        box = pg.locator(".ll-live-control[data-option=stride] input")
        assert box.get_attribute("aria-label") == "Layer stride" and box.input_value() == "1"
        # Each switch is redrawn by the browser alone: no script run when the redraw is seen. (Read at that moment:
        # the server hears of a switch 0.7 s after it, and under a loaded machine the checks between two switches
        # may take longer than that.)
        redrawn = "([key, value]) => document.querySelector('.ll-live-plot').dataset[key] === value && [window.__runs]"
        box.fill("3")
        assert pg.wait_for_function(redrawn, arg=["stride", "3"], timeout=30_000, polling=POLL_MS).json_value() == [0]
        same_as(pg, 3, False)
        pg.wait_for_function("() => location.search.includes('stride=3')", timeout=30_000, polling=POLL_MS)
        settle(pg)  # the server has heard of the stride (its run over): the next switch's count starts clean
        runs = pg.evaluate("() => window.__runs")
        pg.locator(".ll-live-control[data-option=exits] .ll-toggle").click()
        assert pg.wait_for_function(redrawn, arg=["exits", "on"], timeout=30_000, polling=POLL_MS).json_value() == [runs]
        same_as(pg, 3, True)
        box.fill("")  # a box being typed into draws nothing yet; left empty, it shows the stride drawn
        box.press("Tab")
        assert box.input_value() == "3"
        # A moment later the server hears of both: the URL names them, and a copied link draws the same.
        pg.wait_for_function("() => location.search.includes('stride=3') && location.search.includes('exits=true')",
                             timeout=30_000, polling=POLL_MS)
        settle(pg)
        same_as(pg, 3, True)
        other = chromium.new_page(viewport={"width": 1600, "height": 1000})
        other.goto(pg.url)
        settle(other)
        other.wait_for_selector(".ll-live-plot .main-svg", timeout=120_000)
        same_as(other, 3, True)
        assert other.locator(".ll-live-control[data-option=stride] input").input_value() == "3"
        other.close()
    finally:
        pg.close()


def test_in_the_browser_an_offered_target_switches_without_a_rerun(chromium, backend):
    """The target box offers the final top tokens; one typed or picked there recolours the target metrics and every
    hover in the browser alone, as the tested figure of the lens with that target; the URL then names it and a
    copied link draws the same. A target it does not offer goes to the server on Enter and is drawn when
    computed."""
    from bench.browser import COUNT_RUNS, _offered
    from browser import ARTIFACTS, charts, clipped_labels, same_charts, settle

    base = backend.logit_lens(BROWSER_PROMPT, LensOptions(alternatives=5))
    second = base.alternative_tokens[1]
    other = next(t for t in (" London", " Rome", " dog") if t not in base.alternative_tokens)

    def same_as(pg, target: str) -> None:
        lens = backend.logit_lens(BROWSER_PROMPT, LensOptions(target=target))
        want = json.loads(logit_lens_figure(lens, "target_rank").to_json())
        shown = charts(pg)
        assert len(shown) == 1 and shown[0]["title"] == want["layout"]["title"]["text"]
        assert same_charts([{k: shown[0]["data"][0][k] for k in ("z", "text", "customdata")}],
                           [{k: want["data"][0][k] for k in ("z", "text", "customdata")}]), target
        assert clipped_labels(pg) == []

    redrawn = "(value) => document.querySelector('.ll-live-plot').dataset.target === value && [window.__runs]"
    pg = chromium.new_page(viewport={"width": 1600, "height": 1000})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(BROWSER_PROMPT)}&metric=target_rank")
        settle(pg)
        assert not pg.locator(".st-key-target").is_visible()  # Streamlit's box gives way to the live one
        box = pg.get_by_role("combobox", name="Target token")
        assert box.is_visible() and box.input_value() == ""
        assert _offered(pg) == base.alternative_tokens
        same_as(pg, "")
        pg.evaluate(COUNT_RUNS)
        box.fill(second)  # typed: nothing yet (typing on, " Paris" to " Parisian", would pass through it)
        pg.wait_for_timeout(300)
        assert pg.evaluate("() => document.querySelector('.ll-live-plot').dataset.target") == ""
        box.press("Enter")  # committed: drawn by the browser
        assert pg.wait_for_function(redrawn, arg=second, timeout=30_000, polling=POLL_MS).json_value() == [0]
        same_as(pg, second)
        pg.screenshot(path=str(ARTIFACTS / "live-heatmap-target.png"))
        pg.wait_for_function("(t) => new URLSearchParams(location.search).get('target') === t", arg=second,
                             timeout=30_000, polling=POLL_MS)
        settle(pg)
        same_as(pg, second)
        fresh = chromium.new_page(viewport={"width": 1600, "height": 1000})
        fresh.goto(pg.url)
        settle(fresh)
        same_as(fresh, second)
        assert fresh.get_by_role("combobox", name="Target token").input_value() == second
        fresh.close()
        # Not offered: nothing happens as it is typed; Enter sends it to the server, which computes and draws it.
        box.fill(other)
        pg.wait_for_timeout(300)
        assert pg.evaluate("() => document.querySelector('.ll-live-plot').dataset.target") == second
        box.press("Enter")
        pg.wait_for_function(redrawn, arg=other, timeout=60_000, polling=POLL_MS)
        settle(pg)
        same_as(pg, other)
        assert other in _offered(pg)
        # Picked from the list (the input event a pick sends): drawn at once, no Enter.
        third = base.alternative_tokens[2]
        box.evaluate("(e, t) => { e.value = t; e.dispatchEvent(new InputEvent('input', "
                     "{inputType: 'insertReplacementText', bubbles: true})); }", third)
        pg.wait_for_function(redrawn, arg=third, timeout=30_000, polling=POLL_MS)
        same_as(pg, third)
        # Emptied, the default target (each position's final top-1) is back at once.
        box.fill("")
        box.press("Enter")
        pg.wait_for_function(redrawn, arg="", timeout=30_000, polling=POLL_MS)
        same_as(pg, "")
        # A text that names a property every JavaScript object has is no target offered: it too goes to the server.
        box.fill("constructor")
        box.press("Enter")
        pg.wait_for_function(redrawn, arg="constructor", timeout=60_000, polling=POLL_MS)
        settle(pg)
        same_as(pg, "constructor")
        assert errors == []
    finally:
        pg.close()


def test_presenter_mode_fits_with_the_live_chart(chromium):
    from browser import charts, clipped_labels, overflow, settle, small_text

    pg = chromium.new_page(viewport={"width": 1280, "height": 720})
    try:
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(BROWSER_PROMPT)}&present=1")
        settle(pg)
        pg.wait_for_selector(".ll-live-plot .main-svg", timeout=120_000)
        settle(pg)
        assert len(charts(pg)) == 1
        assert clipped_labels(pg) == [] and small_text(pg, 18) == []
        assert overflow(pg) == {"down": 0, "across": 0}
        assert pg.evaluate("() => parseFloat(getComputedStyle(document.querySelector('.ll-select')).fontSize)") >= 18
    finally:
        pg.close()


TWO_LIVE = """() => [...document.querySelectorAll('.ll-live-plot .js-plotly-plot')]
  .filter(p => p.querySelector('.main-svg')).length === 2"""


def test_in_chromium_a_head_score_and_the_sink_switch_redraw_without_a_rerun(chromium):
    from bench.browser import COUNT_RUNS
    from browser import charts, settle

    titles = "() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(e => e.textContent)"
    pg = chromium.new_page(viewport={"width": 1600, "height": 1000})
    try:
        pg.goto(f"{chromium.base_url}/attention?prompt={quote(BROWSER_PROMPT)}&view=Heads&head_metric=induction")
        settle(pg)
        pg.wait_for_selector(".ll-live-plot .js-plotly-plot .main-svg", timeout=120_000)
        settle(pg)
        assert not pg.locator(".st-key-head_metric").is_visible()  # the live box stands in for it
        pg.evaluate(COUNT_RUNS)
        pg.locator("select.ll-select").select_option("entropy")
        pg.wait_for_function(f"() => ({titles})().includes('Per-head attention entropy (nats)')", timeout=10_000,
                             polling=POLL_MS)
        assert pg.evaluate("() => window.__runs") == 0  # recoloured by the browser alone
        pg.wait_for_function("() => location.search.includes('head_metric=entropy')", timeout=30_000, polling=POLL_MS)
        settle(pg)
        # A click on layer 5's head 2 enlarges that head.
        plot = pg.locator(".ll-live-plot .js-plotly-plot").first
        plot.evaluate("e => e.scrollIntoView({block: 'center'})")
        pg.wait_for_timeout(300)
        area = plot.locator(".nsewdrag").first.bounding_box()
        n_layers, n_heads = 30, 9  # the bundled model
        pg.mouse.click(area["x"] + area["width"] * 2.5 / n_heads, area["y"] + area["height"] * (1 - 4.5 / n_layers))
        pg.wait_for_function("() => location.search.includes('head_layer=5')", timeout=30_000, polling=POLL_MS)
        settle(pg)
        assert "Layer 5, head 2: who reads whom" in pg.evaluate(titles)
        # Rollout and flow: one switch turns both charts, in the browser; the link keeps it.
        pg.goto(f"{chromium.base_url}/attention?prompt={quote(BROWSER_PROMPT)}&view=Rollout+%26+flow&flow=true")
        settle(pg)
        pg.wait_for_function(TWO_LIVE, timeout=120_000, polling=POLL_MS)
        settle(pg)
        assert not pg.locator(".st-key-rollout_skip_first").is_visible()
        mark = pg.locator(".ll-live-control .ll-help")
        assert mark.count() == 1 and mark.is_visible() and "first token" in mark.get_attribute("title")
        pg.evaluate(COUNT_RUNS)
        pg.locator(".ll-toggle").click()
        pg.wait_for_function(f"() => ({titles})().filter(t => t.includes('first token left out')).length === 2",
                             timeout=10_000, polling=POLL_MS)
        assert pg.evaluate("() => window.__runs") == 0
        pg.wait_for_function("() => location.search.includes('rollout_skip_first=true')", timeout=30_000,
                             polling=POLL_MS)
        settle(pg)
        shown = charts(pg)
        other = chromium.new_page(viewport={"width": 1600, "height": 1000})
        other.goto(pg.url)
        settle(other)
        other.wait_for_function(TWO_LIVE, timeout=120_000, polling=POLL_MS)
        assert [c["title"] for c in charts(other)] == [c["title"] for c in shown]
        other.close()
    finally:
        pg.close()


def test_a_clicked_head_sets_the_layer_box_without_a_widget_warning(tiny_backend, widget_state_warnings):
    at = attention_page(view="Heads", head_metric="induction")
    at = send_live(at, live_heatmaps(at)[0], cell={"layer": 3, "position": 0})
    assert not at.exception and at.number_input(key="head_layer").value == 3
    assert not [w for w in widget_state_warnings if "head_layer" in w], widget_state_warnings


def test_a_prompt_seen_again_is_shown_without_a_redraw(chromium):
    """The chart keeps the layer it showed for the last few prompts: going back to one shows that layer again, as it
    was drawn (no Plotly draw), and the page never holds more than those few."""
    from bench.browser import _submit, prompt_for
    from browser import charts, settle

    shown = "() => document.querySelector('.ll-live-plot .js-plotly-plot').dataset.draw"
    pg = chromium.new_page(viewport={"width": 1600, "height": 1000})
    try:
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(prompt_for('apple'))}")
        settle(pg)
        pg.wait_for_selector(".ll-live-plot .js-plotly-plot .main-svg", timeout=120_000)
        first, first_draw = charts(pg), pg.evaluate(shown)
        assert first_draw is not None  # each layer says which Plotly draw was its (plot() sets it every time)
        _submit(pg, prompt_for("river"), "river", "apple")
        settle(pg)
        assert charts(pg) != first
        _submit(pg, prompt_for("apple"), "apple", "river")
        settle(pg)
        assert charts(pg) == first and pg.evaluate(shown) == first_draw  # the same layer, not drawn again
        n_metrics = len(pg.evaluate("() => [...document.querySelectorAll('.ll-live-control[data-option=metric] "
                                    "option')]"))
        prev = "apple"
        for word in ("garden", "window", "silver", "orange", "forest"):
            _submit(pg, prompt_for(word), word, prev)
            settle(pg)
            prev = word
        # this prompt's layers (one per metric), one kept for each of the last 3 prompts, a spare to draw into
        assert pg.evaluate("() => document.querySelectorAll('.ll-live-plot .ll-layer').length") <= n_metrics + 3 + 1
        _submit(pg, prompt_for("apple"), "apple", "forest")  # long gone: drawn again, the same chart
        settle(pg)
        assert charts(pg) == first and pg.evaluate(shown) != first_draw
    finally:
        pg.close()



def test_a_prompt_typed_is_computed_while_the_person_pauses(chromium, bundled):
    """Typing in the sidebar's prompt box and pausing starts the lens page's computation of the text so far on the
    model worker (its result lands in the results cache) with nothing on the page redrawn; Ctrl+Enter then draws it.
    Text typed and run at once is not computed ahead."""
    import os
    import time

    from bench.browser import _submit, prompt_for
    from browser import charts, settle
    from lens.cache import ResultCache
    from lens.engine_backend import local_backend
    from lens.options import LensOptions
    from lens.views.logit_lens import LIVE_ALTERNATIVES

    cached = local_backend(bundled, ResultCache(Path(os.environ["LAYERLENS_CACHE"]) / "results"))

    def computed(prompt: str) -> bool:  # the lens the page asks for this prompt, in the cache the worker writes
        key = {"prompt": prompt, "options": LensOptions(alternatives=LIVE_ALTERNATIVES).key(), "lens_id": None}
        return cached.results.has("lens", key)

    pg = chromium.new_page(viewport={"width": 1600, "height": 1000})
    try:
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(prompt_for('candle'))}")
        settle(pg)
        shown = charts(pg)
        typed = prompt_for("lantern")
        assert not computed(typed)
        box = pg.get_by_role("textbox", name="Prompt", exact=True)
        box.fill(typed[:-6])
        box.press_sequentially(typed[-6:], delay=40)  # the last keys as a person types them, then a pause
        deadline = time.monotonic() + 60
        while not computed(typed) and time.monotonic() < deadline:
            pg.wait_for_timeout(100)
        assert computed(typed), "the pause did not start the prompt's computation"
        assert not computed(typed[:-6]), "a text filled in at once was computed ahead"
        assert charts(pg) == shown  # nothing redrawn meanwhile
        assert "lantern" not in pg.url
        _submit(pg, typed, "lantern", "candle")  # Ctrl+Enter: the lens drawn, from the result computed ahead
        settle(pg)
        assert "lantern" in pg.url and charts(pg) != shown
    finally:
        pg.close()


# Each message the page sends, with the browser's clock, and the moment of the last paste into the page.
RECORD_SENDS = """
window.__sent = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? data : null;
  window.__sent.push([performance.now(), bytes ? new TextDecoder().decode(bytes) : String(data)]);
  return send.call(this, data);
};
document.addEventListener("paste", () => { window.__pastedAt = performance.now(); }, true);
"""


def test_a_pasted_prompt_is_computed_at_once_without_waiting_for_a_pause(chromium, bundled):
    """A text pasted into the prompt box is computed ahead at once: its look-ahead leaves the browser sooner than the
    pause a typed key waits for (ui/lookahead.PAUSE_MS, which a timer never beats), and lands in the worker's cache
    with the chart untouched."""
    import os
    import time

    from bench.browser import prompt_for
    from browser import charts, settle
    from lens.cache import ResultCache
    from lens.engine_backend import local_backend
    from lens.options import LensOptions
    from lens.views.logit_lens import LIVE_ALTERNATIVES
    from ui.lookahead import PAUSE_MS

    cached = local_backend(bundled, ResultCache(Path(os.environ["LAYERLENS_CACHE"]) / "results"))
    ctx = chromium.new_context(viewport={"width": 1600, "height": 1000},
                               permissions=["clipboard-read", "clipboard-write"])
    ctx.add_init_script(RECORD_SENDS)
    pasted = prompt_for("compass")
    key = {"prompt": pasted, "options": LensOptions(alternatives=LIVE_ALTERNATIVES).key(), "lens_id": None}
    try:
        pg = ctx.new_page()
        pg.goto(f"{chromium.base_url}/logit_lens?prompt={quote(prompt_for('anchor'))}")
        settle(pg)
        shown = charts(pg)
        assert not cached.results.has("lens", key)
        pg.evaluate("t => navigator.clipboard.writeText(t)", pasted)
        box = pg.get_by_role("textbox", name="Prompt", exact=True)
        box.click()
        box.press("Control+A")
        box.press("Control+V")
        assert box.input_value() == pasted
        deadline = time.monotonic() + 60
        while not cached.results.has("lens", key) and time.monotonic() < deadline:
            pg.wait_for_timeout(100)
        assert cached.results.has("lens", key), "the pasted text was not computed ahead"
        pasted_at, sent = pg.evaluate("[window.__pastedAt, window.__sent]")
        after = [t - pasted_at for t, text in sent if pasted in text and t >= pasted_at]
        assert after and after[0] < PAUSE_MS, (after, PAUSE_MS)
        assert charts(pg) == shown and "compass" not in pg.url  # nothing run: only computed ahead
    finally:
        ctx.close()
