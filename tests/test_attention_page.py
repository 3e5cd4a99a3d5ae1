"""The attention-flow page in-process (AppTest) with the bundled model and the encoder."""
import json
import re

import pytest

from streamlit.testing.v1 import AppTest

PROMPT = "The capital of France is"


def open_page(repo_root, **params):
    at = AppTest.from_file(str(repo_root / "app.py"), default_timeout=240)
    at.query_params["prompt"] = params.pop("prompt", PROMPT)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("pages/attention.py").run()
    assert not at.exception, at.exception
    return at


def charts(at):
    return at.get("plotly_chart")


def test_routes_view_and_drill_down(repo_root):
    at = open_page(repo_root)
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Attention flow"
    assert len(charts(at)) == 2  # the route graph and the drill-down bars
    assert any("Logit lens of this node" in m.value for m in at.markdown)
    heads = at.dataframe[0].value
    assert len(at.dataframe) == 1 and len(heads) == 9 and "head" in heads.columns  # SmolLM2: 9 heads
    assert list(heads["importance"]) == sorted(heads["importance"], reverse=True)
    edges_before = next(c.value for c in at.caption if "edges;" in c.value)

    # Another node: the MLP of layer 10 at position 3.
    at.number_input(key="node_layer").set_value(10)
    at.selectbox(key="node_pos").set_value("3")
    at.query_params["node_block"] = "MLP"
    at.session_state["node_block"] = "MLP"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    neurons = at.dataframe[0].value
    assert "neuron" in neurons.columns and "activation" in neurons.columns and len(neurons) == 10
    bars = json.loads(charts(at)[1].proto.spec)["data"][0]
    assert list(bars["x"][:2]) == ["residual", "MLP"] and "MLP at position 3" in json.loads(
        charts(at)[1].proto.spec)["layout"]["title"]["text"]

    # A higher threshold keeps fewer edges.
    at.slider(key="threshold").set_value(0.08).run()
    assert not at.exception and not at.error
    edges_after = next(c.value for c in at.caption if "edges;" in c.value)
    n_edges = lambda caption: int(re.search(r"(\d+) edges;", caption).group(1))  # noqa: E731
    assert n_edges(edges_after) < n_edges(edges_before)


def test_rollout_and_flow_view(repo_root):
    at = open_page(repo_root, view="Rollout & flow")
    assert not at.error, [e.value for e in at.error]
    assert len(charts(at)) == 1
    at.toggle(key="flow").set_value(True).run()
    assert not at.exception and not at.error
    assert len(charts(at)) == 2


def spec(chart) -> dict:
    return json.loads(chart.proto.spec)


def test_heads_view(repo_root):
    """One layer's heads; every head's score once a score is picked (the tour's link names one)."""
    import numpy as np

    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import HeadOptions
    from plotly_json import array

    backend = local_backend(load_model("smollm2-135m"), None)
    at = open_page(repo_root, view="Heads", head_layer="3", head="2")  # a head by its number, as a hand-made link
    assert not at.error, [e.value for e in at.error]
    assert [c.key for c in charts(at)] == ["head-grid", "head-pattern"]  # no score picked: no summary
    pats = backend.head_patterns(PROMPT, HeadOptions(3))
    np.testing.assert_allclose(array(spec(charts(at)[1])["data"][0]["z"]), pats.attention[2], atol=1e-6)
    assert at.query_params["head"] in ("head 2", ["head 2"])  # the link now names it as the box does
    at.selectbox(key="head_metric").set_value("prev_token").run()
    assert not at.exception and not at.error
    summary = backend.head_summary(PROMPT)
    np.testing.assert_allclose(array(spec(charts(at)[2])["data"][0]["z"]), summary.prev_token, atol=1e-6)
    # The tour's link: the induction score of every head.
    at = open_page(repo_root, view="Heads", head_metric="induction")
    assert [c.key for c in charts(at)] == ["head-grid", "head-pattern", "head-summary"]
    np.testing.assert_allclose(array(spec(charts(at)[2])["data"][0]["z"]), summary.induction, atol=1e-6)


def test_presenting_the_scores_take_the_layers_place(repo_root):
    at = open_page(repo_root, view="Heads", present="1")
    assert [c.key for c in charts(at)] == ["head-grid", "head-pattern"]
    at = open_page(repo_root, view="Heads", head_metric="induction", present="1")
    assert [c.key for c in charts(at)] == ["head-summary", "head-pattern"]
    assert at.pills(key="head").value == "0"


def test_presenting_a_link_naming_a_node_opens_its_drill_down(repo_root):
    at = open_page(repo_root, present="1")
    assert [c.key for c in charts(at)] == ["route-graph"]  # the drill-down waits for a click
    at = open_page(repo_root, present="1", node_layer="10", node_pos="3", node_block="MLP")
    assert [c.key for c in charts(at)] == ["node-bars"]  # in the graph's place, with a way back
    assert "Layer 10 MLP at position 3" in spec(charts(at)[0])["layout"]["title"]["text"]
    assert len(at.dataframe[0].value) == 10
    at.button(key="drill-down-close").click().run()
    assert [c.key for c in charts(at)] == ["route-graph"]


@pytest.mark.parametrize("params, message", [
    (dict(position="999"), "position 999 is past the prompt's 5 tokens: showing the last position, 4."),
    (dict(view="Heads", head_layer="99"), "layer 99 is past the model's 30 layers: showing layer 1."),
    (dict(view="Heads", head="99"), "head 99 is past layer 1's 9 heads: showing head 0."),
    (dict(node_layer="99"), "layer 99 is past the model's 30 layers: showing layer 30."),
    (dict(view="Heads", head_metric="attention"), "score attention is not one of the scores entropy, previous "
                                                  "token, induction: showing none."),
])
def test_a_link_value_out_of_range_is_named_with_what_is_shown(repo_root, params, message):
    at = open_page(repo_root, **params)
    assert any(message in c.value for c in at.caption), [c.value for c in at.caption]
    assert charts(at)


def test_flow_limit_is_stated_for_long_prompts(repo_root):
    long = " ".join(["word"] * 60)
    at = open_page(repo_root, view="Rollout & flow", prompt=long)
    assert not at.exception
    assert any("too long for attention flow" in i.value for i in at.info)
    assert len(charts(at)) == 1  # rollout still shown


def test_encoder_marks_routes_as_not_applicable(repo_root):
    at = open_page(repo_root, model="minilm-l6")  # an encoder opens on rollout, which applies to it
    assert not at.error and not at.warning and len(charts(at)) >= 1
    at = open_page(repo_root, model="minilm-l6", view="Routes")
    assert any("Routes do not apply to minilm-l6" in w.value and "post-LN" in w.value for w in at.warning)
    at2 = open_page(repo_root, model="minilm-l6", view="Heads", head_metric="entropy")
    assert not at2.error and len(charts(at2)) == 3
    at3 = open_page(repo_root, model="minilm-l6", view="Rollout & flow")
    assert not at3.error and len(charts(at3)) >= 1


# ---------------------------------------------------------------- Save run and code under every chart
TINY = "tiny-llama"  # 3 layers, 4 heads, byte tokens: fast


@pytest.fixture(scope="module")
def tiny_backend():
    """A backend of the test's own: a view drawn again from the saved options shares nothing with the page's."""
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    return local_backend(load_model(TINY), None)


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    """Runs saved in a file of the test's own; the tiny model offered in the sidebar's box."""
    from saved_views import offer_in_model_box

    monkeypatch.setenv("LAYERLENS_RUNS", str(tmp_path / "runs.sqlite"))
    offer_in_model_box(monkeypatch, TINY)


def downloads(at) -> set[str]:
    return {b.proto.label for b in at.get("download_button")}


def test_routes_saved_and_exported_with_the_pages_options(repo_root, runs, tiny_backend):
    from saved_views import check_saved

    at = open_page(repo_root, model=TINY, prompt="the cat sat on")
    at.selectbox(key="position").set_value("9")
    at.slider(key="threshold").set_value(0.07).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"Python script (prints the numbers)", "Jupyter notebook"} <= downloads(at)
    graph = spec(charts(at)[0])
    ring = [i for i, t in enumerate(graph["data"]) if (t.get("marker") or {}).get("symbol") == "circle-open"]
    assert len(ring) == 1  # the drill-down's node, ringed on the page only
    run = check_saved(at, "route-graph", graph, tiny_backend, "routes", leave_out=ring)
    assert (run.params["position"], run.params["threshold"]) == (9, 0.07)


def test_rollout_and_flow_saved_with_the_first_token_left_out_and_the_flows_layer(repo_root, runs, tiny_backend):
    """60 tokens: flow affords only the last layer's row (plan_flow), which the saved run keeps."""
    from lens.analysis.flow_plan import plan_flow
    from plotly_json import array
    from saved_views import check_saved

    prompt = "the cat sat on the mat and the dog sat on the rug by the door"
    plan = plan_flow(3, len(prompt), len(prompt) - 1)
    assert plan.feasible and plan.layers == [3]
    at = open_page(repo_root, model=TINY, prompt=prompt, view="Rollout & flow")
    at.toggle(key="rollout_skip_first").set_value(True)
    at.toggle(key="flow").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    roll, flow = (spec(c) for c in charts(at))
    assert len(roll["data"][0]["x"]) == len(prompt) - 1  # the first token's column left out
    run = check_saved(at, "rollout", roll, tiny_backend, "rollout")
    assert run.params["skip_first"] is True
    run = check_saved(at, "flow-chart", flow, tiny_backend, "flow")
    assert run.params["layers"] == [3] and run.params["skip_first"] is True
    assert len(array(flow["data"][0]["z"])) == 1  # one row: the last layer's


def test_heads_saved_with_the_layer_and_the_score_shown(repo_root, runs, tiny_backend):
    from saved_views import check_saved

    at = open_page(repo_root, model=TINY, prompt="the cat sat on", view="Heads", head_layer="2",
                   head_metric="prev_token")
    assert not at.error, [e.value for e in at.error]
    shown = {c.key: spec(c) for c in charts(at)}
    run = check_saved(at, "head-grid", shown["head-grid"], tiny_backend, "heads")
    assert run.params["layer"] == 2
    run = check_saved(at, "head-summary", shown["head-summary"], tiny_backend, "heads")
    assert (run.params["layer"], run.params["metric"]) == (None, "prev_token")
