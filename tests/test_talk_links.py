"""A talk's scene reads every page's link as the page does (lens/talks/urls.py, lens/talks/links.py).

For each page: open it in-process (AppTest) on a link that sets its boxes away from their defaults, record what the
page passes to its charts' exports (``export={"view", "params"}``), and check that the link, and the URL the page
then writes, resolve to that view with those options (the view's defaults filled in as the page fills them). And
every URL-bound box the page draws is either read by the table or named here as the page's own (a highlight, a
panel a talk does not draw): a page that gains a box the table does not know fails here. Last, the tour's way round
(lens.tour.link_query → the links reader) gives back every view's options, for every view a link can carry.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lens.talks import Scene, resolve
from lens.talks.links import SHARED, page_params
from lens.talks.urls import NO_BOX, PAIR_KEYS, choices, url_keys
from lens.views import VIEWS, view_named
from lens.views.registry import view_params

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TINY = {"model": "tiny-llama", "prompt": "abcab"}
PAIR = {"clean": "abcab", "corrupt": "abdab", "patch_target": "c", "foil": "d"}
N_LAYERS = 3  # tiny-llama's blocks

# The URL-bound boxes a page draws that no view's chart reads: the page's own highlights and tables, or tabs and
# panels a talk does not draw (their keys stay in a scene, so the page shows them when opened from the talk).
PAGE_ONLY = {
    "generate": {"s_temp", "s_top_k", "s_top_p", "s_seed"},  # sampling on the spot: a panel of controls and a table
    "attribution": {"dla_head"},  # a head picked for its attention and tokens
    "neurons": {"head", "copies", "n_pos"},  # a head's partners; the copy filter; the neuron explained at a position
    "steering": set(),
    "circuits": set(),
    "anatomy": {"other_model"},  # CKA with a second model: the scene shows this model's CKA
    "patching": {"cell_row", "cell_pos", "ablate_heads", "ablate_mlp", "ablate_skip", "ablate_swap", "ablate_mode",
                 "other_model", "models_show"},
    "logit_lens": {"window", "cell_layer", "cell_pos"},  # a long prompt's stretch; show the work's cell
    "attention": {"head", "node_layer", "node_pos", "node_block", "w_query", "w_key"},
}


@pytest.fixture
def exports(monkeypatch):
    """Every export a page passes to ui.widgets.chart in a run: [(view, params)]."""
    import ui.widgets

    seen: list[tuple[str, dict]] = []
    chart = ui.widgets.chart

    def recording(fig, key, *args, export=None, **kw):
        if export is not None:
            seen.append((export["view"], dict(export["params"])))
        return chart(fig, key, *args, export=export, **kw)

    monkeypatch.setattr(ui.widgets, "chart", recording)
    if hasattr(ui.widgets, "export_controls"):  # a chart drawn another way (the lens page's live heatmap)
        controls = ui.widgets.export_controls

        def recording_controls(fig, key, export, *args, **kw):
            seen.append((export["view"], dict(export["params"])))
            return controls(fig, key, export, *args, **kw)

        monkeypatch.setattr(ui.widgets, "export_controls", recording_controls)
    return seen


def bound_keys(node, out: set) -> set:
    """The URL keys of every bound widget drawn in the run (their protos carry ``query_param_key``)."""
    proto = getattr(node, "proto", None)
    if proto is not None:
        try:
            if proto.HasField("query_param_key"):
                out.add(proto.query_param_key)
        except ValueError:
            pass
    children = getattr(node, "children", None)
    for child in (children.values() if isinstance(children, dict) else []):
        bound_keys(child, out)
    return out


def read_keys(page: str) -> set:
    """The URL keys a talk reads for ``page``: its views' boxes, its choice key, its texts."""
    keys = {b.key for v in VIEWS.values() if v.path == page for b in url_keys().get(v.name, {}).values()}
    keys |= {b.when[0] for v in VIEWS.values() if v.path == page for b in url_keys().get(v.name, {}).values()
             if b.when}
    keys |= {k for v in VIEWS.values() if v.path == page for k in v.query}
    if page in choices():
        keys.add(choices()[page][0])
    return (keys | set(PAIR_KEYS) | {"source", "corpus", "corpus_word", "lang_example"} | set(SHARED)) - {NO_BOX}


# Page-computed values where a view's default is None ("the page's own"): the same formulas the views use.
def computed(view: str, option: str):
    from lens.views.anatomy import default_amateur
    from lens.views.steering import default_layer

    return {("steer", "layer"): default_layer(N_LAYERS), ("knockout", "window"): min(9, N_LAYERS),
            ("contrastive", "amateur_layer"): default_amateur(N_LAYERS)}.get((view, option))


_TINY_BACKEND = []


def tiny():
    """tiny-llama's backend, for what a page computes from the tokens (noise tracing's subject)."""
    if not _TINY_BACKEND:
        from lens.engine_backend import local_backend
        from lens.model.loading import load_model

        _TINY_BACKEND.append(local_backend(load_model("tiny-llama"), None))
    return _TINY_BACKEND[0]


def page_form(params: dict) -> dict:
    """An export's options as the view takes them: noise tracing's subject exported as "2,3"."""
    if isinstance(params.get("subject"), str):
        params = {**params, "subject": tuple(int(p) for p in params["subject"].split(","))}
    return params


def same(view: str, got: dict, exported: dict) -> bool:
    """The heads view draws a layer's patterns when given a layer, whatever its metric (the page exports none)."""
    if view == "heads" and got.get("layer") is not None:
        return got["layer"] == exported["layer"]
    return got == exported


def open_page(page: str, query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.switch_page(f"pages/{page}.py")
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def check(page: str, query: dict, exports: list, want_view: str, figures=None) -> None:
    """``query`` on ``page``: the page's export of ``want_view`` is what the link resolves to, and so is the URL
    the page writes back; every box the page drew is read or the page's own."""
    at = open_page(page, query)
    drawn = [(v, p) for v, p in exports if v == want_view]
    assert drawn, (want_view, exports, [c.value for c in at.caption], [e.value for e in at.error], [i.value for i in at.info])
    for link in (query, {k: at.query_params[k] for k in at.query_params}):
        scene = Scene(page, dict(link))
        r = resolve(scene)
        assert r.view == want_view, (link, r.view)
        got = {k: computed(r.view, k) if v is None and computed(r.view, k) is not None else v
               for k, v in page_params(tiny(), scene, r).items()}
        assert any(same(want_view, got, page_form(view_params(view_named(want_view), p))) for _, p in drawn), (
            got, drawn)
        if figures is not None:
            assert r.figures == figures
        assert r.unused == (), r.unused
    extra = bound_keys(at._tree, set()) - read_keys(page) - PAGE_ONLY[page]
    assert not extra, f"{page} binds {sorted(extra)} to the URL, which no scene reads: add them to lens/talks/urls.py"
    assert not PAGE_ONLY[page] & read_keys(page)


def test_generate(exports):
    q = {**TINY, "new_tokens": "4", "decoding": "Sampled", "temperature": "1.3", "seed": "7", "gen_metric": "entropy",
         "gen_stride": "2", "tab": "Where each token looked", "gen_skip_first": "false"}
    check("generate", q, exports, "generate")
    assert resolve(Scene("generate", q)).params["chart"] == "attention"
    exports.clear()
    greedy = {**TINY, "new_tokens": "3", "gen_metric": "KL to final", "temperature": "1.3"}  # greedy: no temperature
    check("generate", greedy, exports, "generate")
    assert resolve(Scene("generate", greedy)).params["temperature"] == 0.0


@pytest.mark.parametrize("tab, view, extra, figures", [
    ("Direct attribution", "dla", {"dla_foil": "d", "dla_position": "-2"}, (0, 1)),
    ("Sub-layer lens", "sublayer-lens", {}, (0, 1)),
    ("Attention knockout", "knockout", {"ko_sources": "1,2", "ko_window": "2", "ko_align": "start"}, (0,)),
])
def test_attribution(exports, tab, view, extra, figures):
    check("attribution", {**TINY, "tab": tab, "dla_target": "c", **extra}, exports, view, figures)


def test_neurons(exports):
    check("neurons", {**TINY, "tab": "Neurons", "token": "b", "top": "4"}, exports, "neurons")
    exports.clear()
    check("neurons", {**TINY, "tab": "Heads", "comp": "q"}, exports, "head-weights", (0, 1))
    # Without a token in the link, the page's box starts at " Paris" (the view's own default is the top-1).
    assert resolve(Scene("neurons", {**TINY, "tab": "Neurons"})).params == {"token": " Paris", "top": 10}
    # A neuron named: its page (presenting, it takes the list's place).
    r = resolve(Scene("neurons", {**TINY, "tab": "Neurons", "neuron": "L2 N5"}))
    assert (r.view, r.params) == ("neuron", {"layer": 2, "neuron": 5})


@pytest.mark.parametrize("vector, extra, tab, figures", [
    ("token", {"steer_token": "b"}, "Both lenses", (1, 2)),
    ("contrast", {"steer_pos": "aab", "steer_neg": "abb"}, "Lens difference", (0,)),
])
def test_steering(exports, vector, extra, tab, figures):
    q = {**TINY, "steer_vector": vector, **extra, "steer_layer": "2", "steer_coef": "1.5", "steer_unit": "raw",
         "steer_mode": "add", "steer_positions": "after prompt", "steer_tokens": "3", "steer_tab": tab}
    check("steering", q, exports, "steer", figures)


def test_circuits(exports):
    check("circuits", {**TINY, **PAIR, "tab": "Attribution patching", "site": "Attention", "qk_fix": "true",
                       "grad_drop": "true"}, exports, "attribute", (0, 1))
    exports.clear()
    check("circuits", {**TINY, **PAIR, "tab": "Circuit", "ig": "true", "rank": "largest |score|", "edges": "20"},
          exports, "circuit", (0, 1))
    # No experiment in the link: the page's own pair (the indirect-object one), not the patching page's first.
    from lens.examples import PATCH_PAIRS

    clean, corrupt, target, foil = PATCH_PAIRS["Indirect object: who gets the drink"]
    r = resolve(Scene("circuits", {"tab": "Circuit"}))
    assert (r.texts, r.params["target"], r.params["foil"]) == ([clean, corrupt], target, foil)
    assert resolve(Scene("patching", {})).texts == list(next(iter(PATCH_PAIRS.values()))[:2])


@pytest.mark.parametrize("tab, view, figures", [("Skip & swap", "anatomy", (2,)), ("Outliers", "anatomy", (4, 5)),
                                                ("Autocontrastive", "contrastive", (0,))])
def test_anatomy(exports, tab, view, figures):
    check("anatomy", {**TINY, "swap": "true", "amateur": "1", "tab": tab}, exports, view, figures)


def test_patching(exports):
    check("patching", {**TINY, **PAIR, "site": "MLP"}, exports, "patch")
    exports.clear()
    check("patching", {**TINY, **PAIR, "tab": "Noise on the subject", "noise_samples": "2", "noise_seed": "3"},
          exports, "noise-trace")


def test_logit_lens(exports):
    check("logit_lens", {**TINY, "metric": "entropy", "stride": "2", "top_k": "3", "exits": "true", "target": "b"},
          exports, "logit-lens")
    exports.clear()
    check("logit_lens", {**TINY, "panel": "Language of each layer", "track": "a,b"}, exports, "language")


def test_attention(exports):
    check("attention", {**TINY, "view": "Heads", "head_metric": "prev_token", "head_layer": "2"}, exports, "heads")


def test_noise_and_early_exit_fill_in_what_the_page_computes():
    """The page's own defaults that come from the tokens: the tokens the corrupted prompt changes (noise), the last
    48 positions of a long prompt (early exit)."""
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    backend = local_backend(load_model("tiny-llama"), None)
    s = Scene("patching", {**TINY, **PAIR, "tab": "noise"})
    assert page_params(backend, s, resolve(s))["subject"] == (2,)  # abcab / abdab differ at position 2
    long = Scene("logit_lens", {**TINY, "prompt": "ab" * 40, "panel": "exit"})
    assert page_params(backend, long, resolve(long))["positions"] == [32, 80]


# Non-default options for the round trip (one view at a time): each readable from the page's boxes.
SAMPLES = {
    "logit-lens": {"metric": "kl", "target": "b", "stride": 2, "top_k": 3, "lens": "linear", "exits": True},
    "early-exit": {"lens": "tuned"}, "language": {"track": "a,b", "lens": "linear"},
    "generate": {"max_new_tokens": 4, "temperature": 1.25, "seed": 3, "metric": "entropy", "stride": 3,
                 "chart": "attention", "skip_first": False},
    "rollout": {"position": 2, "skip_first": True}, "flow": {"position": 1, "skip_first": False},
    "routes": {"position": 3, "threshold": 0.1}, "heads": {"layer": 2, "metric": "prev_token"},
    "projection": {"method": "umap", "dims": 3, "color_by": "position", "word": "b", "mode": "aligned",
                   "skip_first": True, "skip_special": False, "rms_scale": True},
    "geometry": {"word": "b", "metric": "senses", "skip_first": True, "skip_special": True},
    "patch": {"target": "c", "foil": None, "site": "mlp"},
    "noise-trace": {"target": "c", "foil": "d", "site": "attn", "subject": (1, 2), "samples": 2, "seed": 4},
    "dla": {"target": "c", "foil": "d", "position": -2}, "sublayer-lens": {"target": "c"},
    "knockout": {"target": "c", "sources": "1,2", "window": 2, "align": "start"},
    "attribute": {"target": "c", "foil": "d", "site": "head", "qk_fix": True, "grad_drop": True},
    "circuit": {"target": "c", "foil": None, "edges": 20, "ig_steps": 5, "rank": "size"},
    "neurons": {"token": None, "top": 7}, "neuron": {"layer": 2, "neuron": 9}, "head-weights": {"composition": "k"},
    "steer": {"token": "b", "layer": 2, "coef": -1.5, "unit": "raw", "mode": "cap", "positions": "front",
              "max_new_tokens": 5},
    "anatomy": {"swap": True}, "contrastive": {"amateur_layer": 2},
}


@pytest.mark.parametrize("name", [v for v in VIEWS if VIEWS[v].reads != "suite"])
def test_every_views_link_reads_back_its_options(name):
    """link_query (how the tour writes a link) → the links reader: the same view and options, at the view's
    defaults and at options away from them; every option of the view is in the table (a box or none)."""
    from lens.tour import Shown, chart_params, link_query

    view = VIEWS[name]
    assert set(view.params) == set(url_keys()[name]), (name, set(view.params) ^ set(url_keys()[name]))
    texts = ("abcab", "abdab") if view.reads == "two prompts" else "abcab"
    target = {"target": "c"} if view.reads == "two prompts" or name == "noise-trace" else {}
    for given in ({**target}, {**target, **SAMPLES.get(name, {})}):
        shown = Shown(name, texts, given)
        r = resolve(Scene(view.path, link_query(shown)))
        assert r.view == name and r.params == chart_params(shown), (name, given, r.params)
        assert r.texts == (list(texts) if isinstance(texts, tuple) else texts) and r.unused == ()
