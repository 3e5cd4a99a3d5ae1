"""A page of the dashboard run in-process (Streamlit's AppTest), as a first visit opens it from a link; and its
live charts (ui/live) read and answered as the browser would."""
from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(path: str | None, timeout: float = 600, **params) -> AppTest:
    """``path`` (e.g. "pages/patching.py"; None: the home page) opened with these URL query parameters, run once;
    fails the test on an exception shown in the page."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if path:
        at.switch_page(path)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _live_data(element, kind: str) -> dict | None:
    """The data a live component of ``kind`` ("heatmap", "control") was sent, or None for another one."""
    proto = element.proto
    raw = proto.json or (proto.mixed.json if proto.HasField("mixed") else "") or proto.bytes.decode()
    data = json.loads(raw) if raw else None
    return data if isinstance(data, dict) and data.get("kind") == kind else None


def live_heatmap_data(element) -> dict | None:
    """The data a live heatmap was sent, or None for another component (or a live chart's box)."""
    return _live_data(element, "heatmap")


def live_controls(at) -> list[dict]:
    """The data of the page's live boxes (the controls of its live heatmaps), in page order."""
    return [d for d in (_live_data(e, "control") for e in at.get("bidi_component")) if d is not None]


def live_heatmaps(at) -> list:
    """The page's live heatmaps (their elements), in page order."""
    return [e for e in at.get("bidi_component") if live_heatmap_data(e) is not None]


def send_live(at, element, **values):
    """Run the page again as the browser would after the live heatmap ``element`` set ``values``: ``cell`` as a
    trigger value (a click), anything else as its state."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = at._tree.get_widget_states()
    cell = values.pop("cell", None)
    if values:
        w = WidgetState(id=element.proto.id)
        w.json_value = json.dumps(values)
        states.widgets.append(w)
    if cell is not None:
        w = WidgetState(id=_make_trigger_id(element.proto.id, "events"))
        w.json_trigger_value = json.dumps([{"event": "cell", "value": cell}])
        states.widgets.append(w)
    return at._run(states)
