"""A chart's Save run, clicked in an AppTest page, and the checks that its view's options are the page's:
the view drawn again from the saved options by a fresh backend, and the saved run reopened from its numbers,
give the figure data the page shows."""
from __future__ import annotations

import base64
import json

import numpy as np

from lens.runs import RunStore, open_view
from lens.views import render_view


def _plain(value):
    """Figure JSON with plotly's base64 arrays ({"bdata", "dtype", "shape"}) read back as nested lists."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = value.get("shape")
            if isinstance(shape, str):
                shape = [int(n) for n in shape.split(",")]
            return (a.reshape(shape) if shape else a).tolist()
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(a, b, where: str = "") -> None:
    """Equal, numbers to a relative 1e-6 (a fresh backend recomputes them), NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        assert np.isclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def figure_data(fig) -> list[dict]:
    """A figure's traces (and frames' traces, for an animation) as plain JSON."""
    spec = json.loads(fig.to_json()) if hasattr(fig, "to_json") else fig
    return _plain([*spec.get("data", []), *(t for f in spec.get("frames", []) for t in f.get("data", []))])


def assert_same_data(shown: dict, fig, leave_out=(), titled: bool = True) -> None:
    """``shown`` (a chart's JSON from the page) and ``fig`` (a plotly figure) draw the same traces (and, if
    ``titled``, have the same title); ``leave_out``: indices of the page's traces that only the page draws (a
    highlight of the node picked on the page)."""
    page = [t for i, t in enumerate(figure_data(shown)) if i not in leave_out]
    _same(page, figure_data(fig), "data")
    if titled:
        title = lambda s: ((s.get("layout") or {}).get("title") or {}).get("text")  # noqa: E731
        assert title(shown) == title(json.loads(fig.to_json())), "the titles differ"


def save_from_page(at, key: str, name: str = ""):
    """Click the Save run of the chart ``key`` (with ``name``); the run it saved."""
    before = {r["id"] for r in RunStore().list()}
    if name:
        at.text_input(key=f"save-name-{key}").input(name)
    at.button(key=f"save-{key}").click().run()
    assert not at.exception, at.exception
    new = [r for r in RunStore().list() if r["id"] not in before]
    assert len(new) == 1, f"Save run under {key!r} saved {len(new)} runs; said: {[t.value for t in at.get('toast')]}"
    return RunStore().get(new[0]["id"])


def check_saved(at, key: str, shown: dict, backend, view: str, leave_out=(), titled: bool = True):
    """Save the chart ``key`` from the page: its run is view ``view``; the page's options drawn again by
    ``backend`` (a fresh one: nothing from the page's cache) and the run reopened from its saved numbers both
    give the page's figure data. The run."""
    run = save_from_page(at, key)
    assert run.view == view, (run.view, view)
    fresh = render_view(backend, run.view, run.texts, **run.params)
    assert_same_data(shown, fresh.figures[0], leave_out, titled)
    assert_same_data(shown, open_view(run).figures[0], leave_out, titled)
    return run


def offer_in_model_box(monkeypatch, model: str) -> None:
    """List ``model`` (a tiny test model) among the sidebar box's options, as if typed into it: AppTest cannot
    read back the state of a box whose value is not among its options, so a page opened on a typed model could
    not be clicked on (the options only; the model loads as any typed one does)."""
    import ui.state

    monkeypatch.setattr(ui.state, "BUNDLED", {**ui.state.BUNDLED, model: ui.state.BUNDLED.get(model)})
