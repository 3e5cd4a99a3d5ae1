"""What the pages used to compute themselves, now in lens/figures: route clicks, the drill-down table,
the home page's prediction bars, the heatmap's cell text, and the flow plan."""
from lens.options import NodeOptions, RouteOptions
import numpy as np
import pytest

from lens.analysis.flow_plan import FLOW_WORK_LIMIT, flow_work, plan_flow
from lens.analysis.rollout import attention_flow
from lens.errors import LensError
from lens.figures.attention import clicked_node, node_table, route_figure
from lens.figures.logit_lens import MAX_CELL_TEXT_COLUMNS, logit_lens_figure, prediction_figure
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.model.tokens import visible
from lens.options import LensOptions

PROMPT = "hello there, the end; see me here"


@pytest.fixture(scope="module")
def backend():
    return local_backend(load_model("tiny-llama"), None)


def test_a_click_on_a_route_node_names_that_node(backend):
    g = backend.route_graph(PROMPT, RouteOptions(None, 0.05))
    fig = route_figure(g)
    nodes = next(t for t in fig.data if t.name == "nodes")
    for cd in nodes.customdata:
        got = clicked_node([{"customdata": list(cd), "x": 0}])
        if cd[2] == "emb":
            assert got is None  # the embeddings have no drill-down
        else:
            assert got == (int(cd[0]), int(cd[1]), cd[2])
    for junk in ([], None, [{}], [{"customdata": None}], [{"customdata": [1, 2]}], [{"customdata": ["x", 2, "attn"]}],
                 [{"customdata": [1, 2, "head"]}], ["not a point"]):
        assert clicked_node(junk) is None


def test_drill_down_table_rows(backend):
    d = backend.node_detail(PROMPT, NodeOptions(2, 7, "attn", top_k=4))
    rows = node_table(d)
    assert [r["head"] for r in rows] == sorted(range(len(d.items)), key=lambda h: -d.items[h]["importance"])
    top = max(d.items, key=lambda it: it["importance"])
    assert rows[0]["importance"] == round(top["importance"], 4)
    assert rows[0]["promotes"] == " ".join(visible(t) for t in top["promoted"][:6])
    j, w = top["top_sources"][0]
    assert rows[0]["reads from"].startswith(f"{j}·{visible(d.tokens[j])} ({w:.3f})")
    m = backend.node_detail(PROMPT, NodeOptions(2, 7, "mlp", top_k=4))
    mrows = node_table(m)
    assert {"neuron", "activation"} <= set(mrows[0]) and "head" not in mrows[0]
    assert [r["neuron"] for r in mrows] == [it["neuron"] for it in sorted(m.items, key=lambda it: -it["importance"])]


def test_prediction_bars_are_the_final_rows_top_k(backend):
    r = backend.logit_lens(PROMPT, LensOptions(top_k=6))
    bar = prediction_figure(r).data[0]
    np.testing.assert_allclose(np.asarray(bar.x)[::-1], r.top_probs[-1, -1], rtol=1e-6)
    assert [y.strip() for y in bar.y][::-1] == [f"{i + 1}. {visible(t)}" for i, t in enumerate(r.top_tokens[-1][-1])]
    assert len(set(bar.y)) == len(bar.y)  # tokens that look alike still get a bar each


def test_cell_text_only_while_it_can_be_read():
    lm = local_backend(load_model("tiny-gpt2"), None)
    r = lm.logit_lens("x" * 100, LensOptions(top_k=2))
    narrow = logit_lens_figure(r, columns=(0, MAX_CELL_TEXT_COLUMNS)).data[0]
    wide = logit_lens_figure(r, columns=(0, MAX_CELL_TEXT_COLUMNS + 1)).data[0]
    assert narrow.texttemplate and not wide.texttemplate


def fill(template: str, point: dict) -> str:
    """Plotly's hover template filled the way the browser does it (the subset the figures use)."""
    import re

    def one(m):
        name, index, fmt = m.group(1), m.group(2), m.group(3)
        value = point[name] if index is None else point[name][int(index)]
        return format(value, fmt[1:]) if fmt else str(value)

    return re.sub(r"%\{(\w+)(?:\[(\d+)\])?(:[^}]*)?\}", one, template).replace("<extra></extra>", "")


def test_heatmap_hover_states_each_cells_numbers():
    """The hover is filled in the browser from per-cell values: filled in here the same way, it
    states the top-k, entropy, KL and target of the cell under the pointer, read from the result."""
    r = local_backend(load_model("tiny-gpt2"), None).logit_lens(PROMPT, LensOptions(top_k=3))
    heat = logit_lens_figure(r, "kl", stride=2).data[0]
    rows = list(range(0, len(r.layers), 2)) + ([len(r.layers) - 1] if (len(r.layers) - 1) % 2 else [])
    assert len(heat.customdata) == len(rows) == len(heat.y)
    for i, row in enumerate(rows):
        for c, pos in enumerate(r.positions):
            shown = fill(heat.hovertemplate, {"y": heat.y[i], "customdata": heat.customdata[i][c]})
            lines = shown.split("<br>")
            assert lines[0] == (f"<b>layer {heat.y[i]}</b>, position {pos} (after "
                                f"{visible(r.tokens[pos]).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')})")
            for j in range(3):
                token, prob = lines[1 + j][3:].rsplit("  ", 1)
                assert lines[1 + j].startswith(f"{j + 1}. ")
                assert abs(float(prob) - r.top_probs[row, c, j]) <= 5e-4
            assert lines[4] == f"entropy {r.entropy[row, c]:.3f} nats · KL→final {r.kl_to_final[row, c]:.3f}"
            rank, p = lines[5].rsplit(": rank ", 1)[1].split(", p=")
            assert int(rank) == r.target_rank[row, c]
            assert float(p) == pytest.approx(float(r.target_prob[row, c]), rel=5e-3, abs=1e-12)  # 3 significant digits


def random_attention(L, T, seed=0):
    g = np.random.default_rng(seed)
    a = np.tril(g.random((L, T, T))) + 1e-3 * np.tril(np.ones((T, T)))
    import torch

    return torch.tensor(a / a.sum(-1, keepdims=True), dtype=torch.float32)


def test_flow_plan_matches_what_the_backend_accepts():
    L = 4
    plan = plan_flow(L, n_tokens=100, position=99)
    assert plan.sources == 100 and not plan.feasible
    assert flow_work(plan.limit_all, list(range(1, L + 1))) <= FLOW_WORK_LIMIT < flow_work(plan.limit_all + 1, list(range(1, L + 1)))
    assert flow_work(plan.limit_last, [L]) <= FLOW_WORK_LIMIT < flow_work(plan.limit_last + 1, [L])
    assert plan.limit_last >= plan.limit_all
    A = random_attention(L, plan.limit_last + 1)
    tokens = list("x" * (plan.limit_last + 1))
    with pytest.raises(LensError, match="limited to"):  # one past the plan's limit: refused
        attention_flow(A, tokens, position=plan.limit_last, layers=[L])
    short = plan_flow(L, n_tokens=plan.limit_all, position=plan.limit_all - 1)
    assert short.feasible and short.layers is None  # every layer's row
    mid = plan_flow(L, n_tokens=plan.limit_all + 1, position=plan.limit_all)
    assert mid.feasible and mid.layers == [L]  # only the last layer's row
    got = attention_flow(random_attention(L, 8), list("abcdefgh"), position=7, layers=mid.layers)
    assert got.layers == [str(L)] and got.flow.shape == (1, 8)
    assert plan_flow(L, n_tokens=10, position=3, causal=False).sources == 10  # an encoder reads every token


def test_kl_colour_scale_leaves_out_the_embeddings_row():
    r = local_backend(load_model("tiny-gpt2"), None).logit_lens(PROMPT, LensOptions(top_k=2))
    heat = logit_lens_figure(r, "kl").data[0]
    assert heat.zmax == pytest.approx(float(np.nanmax(r.kl_to_final[1:])))
    fig = logit_lens_figure(r, "kl")
    if np.nanmax(r.kl_to_final[0]) > heat.zmax:
        assert "emb row" in fig.layout.title.text and "beyond the scale" in fig.layout.title.text
    assert logit_lens_figure(r, "entropy").data[0].zmax is None  # other measures keep their full range


def test_rollout_can_leave_out_the_sink_column(backend):
    from lens.figures.attention import rollout_figure

    roll = backend.rollout(PROMPT)
    full, cut = rollout_figure(roll).data[0], rollout_figure(roll, skip_first=True).data[0]
    assert len(cut.x) == len(full.x) - 1 and list(cut.x) == list(full.x)[1:]
    np.testing.assert_allclose(np.asarray(cut.z), np.asarray(full.z)[:, 1:])  # not renormalised
    assert "first token left out" in rollout_figure(roll, skip_first=True).layout.title.text


def test_a_target_without_its_space_gets_a_hint(bundled):
    r = local_backend(bundled, None).logit_lens("The capital of France is", LensOptions(target="Paris"))
    assert "' Paris'" in r.target_note
    assert local_backend(bundled, None).logit_lens("The capital of France is",
                                                  LensOptions(target=" Paris")).target_note == ""


def test_slide_style_sets_every_label_to_at_least_18_px(backend):
    from lens.figures.attention import route_figure
    from lens.figures.style import SLIDE_FONT, for_slides

    lens_fig = for_slides(logit_lens_figure(backend.logit_lens(PROMPT, LensOptions(top_k=2)), "kl"), 480)
    routes = for_slides(route_figure(backend.route_graph(PROMPT, RouteOptions(None, 0.05))), 300)
    for fig in (lens_fig, routes):
        assert fig.layout.font.size >= SLIDE_FONT and fig.layout.title.font.size >= SLIDE_FONT
        assert fig.layout.xaxis.tickfont.size >= SLIDE_FONT and fig.layout.yaxis.tickfont.size >= SLIDE_FONT
        assert fig.layout.height <= 480
    assert lens_fig.data[0].colorbar.tickfont.size >= SLIDE_FONT
    # 300 px of route graph hold only so many 18 px layer labels: the rest are thinned out.
    room = 300 - routes.layout.margin.t - routes.layout.margin.b
    assert len(routes.layout.yaxis.tickvals) <= max(2, room // (SLIDE_FONT * 1.5))


def test_clicked_points_read_customdata_as_streamlit_sends_it():
    """Streamlit hands a point's customdata row to the page as a dict keyed "0", "1", …: clicks on route
    nodes and on patching cells are read either way."""
    from lens.figures.attention import clicked_node
    from lens.figures.patching import clicked_cell

    assert clicked_node([{"customdata": {"0": 3, "1": 4, "2": "mlp"}}]) == (3, 4, "mlp")
    assert clicked_node([{"customdata": [3, 4, "attn"]}]) == (3, 4, "attn")
    assert clicked_node([{"customdata": {"0": 3, "1": 4, "2": "emb"}}]) is None
    assert clicked_cell([{"customdata": {"0": 5, "1": 2, "2": 0.83, "3": 2.4}}]) == (5, 2)
    assert clicked_cell([{"x": 1}]) is None
