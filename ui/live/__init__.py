"""A live heatmap (Streamlit custom components v2: in the page, no iframe): every colour metric's figure is sent
once and the browser switches between them in place; the metric shown comes back to Python after a pause, and a
clicked cell comes back as a trigger value.

plotly.js is the installed plotly package's own ``plotly.min.js``, served by this Streamlit server from that
package's folder (components v2 serve a component's ``asset_dir``): nothing is fetched from the network."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import streamlit as st

NAME = "layerlens.live_heatmap"
PLOTLY = "layerlens.plotlyjs"  # a component with no code of its own: its asset folder is plotly's package_data
_JS = (Path(__file__).with_name("live_heatmap.js")).read_text(encoding="utf-8")
_CSS = """
.ll-live-control { display: none; font-size: 0.875rem; }  /* as Streamlit's boxes (presenter mode: 18 px) */
.ll-live-control .ll-label { display: block; line-height: 1.6; margin-bottom: 0.25rem;
  color: var(--st-text-color, #31333f); }
.ll-live-control .ll-select { width: 100%; height: 2.5rem; padding: 0 0.75rem; font: inherit;
  color: var(--st-text-color, #31333f); background: var(--st-secondary-background-color, #f0f2f6);
  border: 1px solid transparent; border-radius: 0.5rem; cursor: pointer; }
.ll-live-control .ll-select:focus { outline: none; border-color: var(--st-primary-color, #2f6db5); }
.ll-live-control .ll-toggle { display: inline-flex; align-items: center; gap: 0.6rem; cursor: pointer;
  min-height: 2.5rem; color: var(--st-text-color, #31333f); }
.ll-live-control .ll-toggle input { position: absolute; opacity: 0; width: 1px; height: 1px; }
.ll-live-control .ll-track { position: relative; flex: none; width: 2rem; height: 1rem; border-radius: 0.5rem;
  background: #a3a8b8; transition: background 0.15s; }
.ll-live-control .ll-track::after { content: ""; position: absolute; top: 0.125rem; left: 0.125rem; width: 0.75rem;
  height: 0.75rem; border-radius: 50%; background: #fff; transition: transform 0.15s; }
.ll-live-control .ll-toggle input:checked + .ll-track { background: var(--st-primary-color, #2f6db5); }
.ll-live-control .ll-toggle input:checked + .ll-track::after { transform: translateX(1rem); }
.ll-live-control .ll-toggle input:focus-visible + .ll-track { outline: 2px solid var(--st-primary-color, #2f6db5); }
.ll-live-control .ll-label-row { display: flex; align-items: center; justify-content: space-between; gap: 0.5rem;
  margin-bottom: 0.25rem; }
.ll-live-control .ll-label-row .ll-label { margin-bottom: 0; }
.ll-live-control .ll-help { display: inline-flex; flex: none; color: #808495; cursor: help; }
.ll-live-control .ll-toggle + .ll-help { margin-left: 0.4rem; vertical-align: middle; }
.ll-live-plot { width: 100%; }
.st-key-layerlens-lookahead { display: none; }  /* draws nothing: it only listens (ui/lookahead.py) */
"""

_mount = None
_payloads: OrderedDict = OrderedDict()  # the last few views' payloads, for a prompt or option seen again
KEEP = 16


def _plotly_root() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent


def _register() -> Callable:
    """Register the component (once per process) and, on the runtime running this script, plotly.js's folder."""
    global _mount
    from streamlit.components.v2.manifest_scanner import ComponentConfig, ComponentManifest
    from streamlit.runtime import Runtime

    manager = Runtime.instance().bidi_component_registry
    if manager.get_component_asset_root(PLOTLY) is None:  # each runtime (AppTest makes one per test) once
        manager.register_from_manifest(
            ComponentManifest(name="layerlens", version="1",
                              components=[ComponentConfig(name="plotlyjs", asset_dir="package_data")]),
            _plotly_root())
    if _mount is None:
        _mount = st.components.v2.component(NAME, js=_JS, css=_CSS, isolate_styles=False)
    return _mount


def available() -> bool:
    """Whether the live chart can be drawn here: a Streamlit runtime with a browser (an in-process AppTest run has
    none: it gets the plain chart, as the page drew before) and plotly.js in the installed package."""
    try:
        from streamlit.runtime import Runtime

        if not st.context.headers.get("Host"):  # no browser's request behind this session (AppTest)
            return False
        return Runtime.exists() and (_plotly_root() / "package_data" / "plotly.min.js").is_file()
    except Exception:  # an older or newer Streamlit without these internals: the plain chart is drawn
        return False


def plotly_url() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return ("/" + base if base else "") + f"/_stcore/bidi-components/{PLOTLY}/plotly.min.js"


def _chart_chunk() -> str | None:
    """The file name of Streamlit's own plotly chart code in its front end (one file, named by a hash)."""
    import streamlit

    found = sorted((Path(streamlit.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))
    return found[0].name if found else None


def prefetch_charts(where=st) -> None:
    """While a model loads: the browser fetches and runs Streamlit's plotly chart code now (several MB of
    JavaScript it otherwise loads when the first chart arrives), so the first chart after the load draws at
    once. Draws nothing; does nothing where the live chart cannot run (in-process tests) or the file is not
    found (another Streamlit build)."""
    chunk = _chart_chunk()
    if chunk is None or not available():
        return
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    with where.container(height=1, border=False):
        _register()(key="layerlens-prefetch-charts",
                    data={"kind": "prefetch", "url": ("/" + base if base else "") + f"/static/js/{chunk}"})


def metric_box(channel: str, label: str, options: dict[str, str], value: str, help: str = "", where=st,
               option: str = "metric") -> None:
    """The "Colour by" box of the live heatmap ``channel`` (its key): a choice the browser applies at once.
    Streamlit's own box for the same option stays in the page, hidden once the chart is live: links, in-process
    tests and the fallback (plotly.js not loaded) use it. ``option``: what it sets ("metric": the figure shown)."""
    mount = _register()
    with where.container():
        mount(key=_control_key(channel, option),
              data={"kind": "control", "channel": channel, "option": option, "label": label, "options": options,
                    "value": value, "help": help})


def _control_key(channel: str, option: str) -> str:
    """The widget key of ``channel``'s box for ``option`` (the metric's box keeps the key it always had)."""
    return f"{channel}-control" if option == "metric" else f"{channel}-{option}-control"


def number_box(channel: str, option: str, label: str, value: int, least: int, most: int, help: str = "",
               where=st) -> None:
    """A whole-number box for option ``option`` of the live heatmap ``channel`` (the lens's layer stride): each
    number typed or stepped to, from ``least`` to ``most``, is drawn at once; as ``metric_box`` otherwise."""
    mount = _register()
    with where.container():
        mount(key=_control_key(channel, option),
              data={"kind": "control", "control": "number", "channel": channel, "option": option, "label": label,
                    "value": str(int(value)), "min": int(least), "max": int(most), "help": help})


def text_box(channel: str, option: str, label: str, value: str, options: dict[str, str], help: str = "",
             placeholder: str = "", where=st) -> None:
    """A text box for option ``option`` of the live heatmap ``channel`` (the lens's target token): a text it
    offers (``options``, {value: label}, listed under the box) is drawn at once when picked from the list, or typed
    and committed (Enter); any other committed text goes to the server. Otherwise as ``metric_box``."""
    mount = _register()
    with where.container():
        mount(key=_control_key(channel, option),
              data={"kind": "control", "control": "text", "channel": channel, "option": option, "label": label,
                    "value": value, "options": options, "help": help, "placeholder": placeholder})


def digest(*arrays) -> str:
    """A short digest of numpy arrays (for a ``payload_for`` key: the numbers behind the figures)."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class Payload(dict):
    """A live heatmap's payload, with its JSON written once (``encoded``): Streamlit writes a component's data as
    JSON twice a run (to send it, and for the element's identity), ~20 ms each for a lens payload of 0.4 MB, while
    bytes go as they are and are identified by their hash."""

    encoded: bytes | None = None

    def json_bytes(self) -> bytes:
        if self.encoded is None:
            self.encoded = json.dumps(self).encode()
        return self.encoded


def payload_for(key: tuple, build: Callable[[], dict]) -> dict:
    """``build()``'s payload for the view ``key`` (everything the figures depend on), from the last ``KEEP`` views
    drawn by this server when one matches (a prompt or an option seen again is drawn without rebuilding its
    figures or writing its JSON again); its ``signature`` is computed once, here."""
    kept = _payloads.get(key)
    if kept is None:
        kept = Payload(build())
        body = json.dumps(kept).encode()  # written once: the signature is its hash, and it goes to the browser
        kept["signature"] = hashlib.sha1(body).hexdigest()[:16]
        kept.encoded = _spliced(json.dumps({"signature": kept["signature"]}).encode(), body)
        _payloads[key] = kept
        while len(_payloads) > KEEP:
            _payloads.popitem(last=False)
    _payloads.move_to_end(key)
    return kept


def toggle_box(channel: str, label: str, value: bool, help: str = "", where=st, option: str = "metric") -> None:
    """A switch for the live heatmaps of ``channel`` whose ``option`` is "off" or "on" (rollout's "Leave out the
    first token", whose figures are "off" and "on"; the lens's exit marks): flipped in the browser, it redraws
    them at once; as ``metric_box`` otherwise."""
    mount = _register()
    with where.container():
        mount(key=_control_key(channel, option),
              data={"kind": "control", "control": "toggle", "channel": channel, "option": option, "label": label,
                    "options": {"off": "off", "on": "on"}, "value": "on" if value else "off", "help": help})


def figure_payload(figures: dict, layers: list[int] | None = None, positions: list[int] | None = None) -> dict:
    """A live heatmap's payload from one plotly figure per option (as each is drawn: styled for the mode).
    ``layers`` and ``positions``: what each row and column stands for, given back for a clicked cell (None: its
    cells open nothing)."""
    return {"figures": {k: json.loads(f.to_json()) for k, f in figures.items()}, "shared": {},
            "layers": list(layers or []), "positions": list(positions or [])}


def heatmap(payload: dict, metric: str, key: str, hide: list[str], on_metric: Callable[[str], None],
            on_cell: Callable[[int, int], None] | None = None, config: dict | None = None,
            channel: str | None = None, where=st, options: dict[str, str] | None = None,
            on_option: dict[str, Callable[[str], None]] | None = None):
    """Draw ``payload`` (lens.figures.logit_lens.live_payload, through ``payload_for``) at ``metric``. ``hide``: the
    widget keys of Streamlit's boxes this chart replaces (hidden once it is drawn). ``on_metric(metric)`` runs when
    the browser reports the metric it shows; ``on_cell(layer, position)`` when a cell is clicked (both as callbacks,
    before the script reruns). ``channel``: the box that switches it (``key`` by default; several charts may share
    one). ``options``: the other options the payload switches in the browser ("stride", "exits") and their values
    now, each reported to ``on_option[name](value)``. Returns the component's result (``.cell`` is the click of this
    run, if any)."""
    if not key.endswith("-live"):  # the browser tests wait for every chart keyed so to draw (tests/browser.py)
        raise ValueError(f"a live heatmap's key ends in '-live': {key!r}")
    mount = _register()
    head = {"kind": "heatmap", "channel": channel or key, "metric": metric, "hide": hide,
            "plotly_url": plotly_url(), "config": config or {}, "options": dict(options or {})}
    data = joined(head, payload)
    callbacks = {}
    for name, on_value in (on_option or {}).items():
        def changed(name=name, on_value=on_value) -> None:
            value = _value(key, name)
            if isinstance(value, str):
                on_value(value)
        callbacks[f"on_{name}_change"] = changed

    def metric_changed() -> None:
        value = _value(key, "metric")
        if isinstance(value, str):
            on_metric(value)

    def cell_clicked() -> None:
        value = _value(key, "cell")
        if (on_cell is not None and isinstance(value, dict) and isinstance(value.get("layer"), int)
                and isinstance(value.get("position"), int)):
            on_cell(value["layer"], value["position"])

    if where is st:
        return mount(key=key, data=data, on_metric_change=metric_changed, on_cell_change=cell_clicked, **callbacks)
    with where:  # a column or container
        return mount(key=key, data=data, on_metric_change=metric_changed, on_cell_change=cell_clicked, **callbacks)


def joined(head: dict, payload: dict) -> bytes:
    """The JSON bytes of ``{**head, **payload}``: ``head``'s few fields, then the payload's JSON as written once (a
    key in both is the payload's, as JSON.parse keeps the last of a repeated key)."""
    body = payload.json_bytes() if isinstance(payload, Payload) else json.dumps(payload).encode()
    return _spliced(json.dumps(head).encode(), body)


def _spliced(first: bytes, second: bytes) -> bytes:
    """Two JSON objects' bytes as one object's: ``first``'s fields, then ``second``'s."""
    if second == b"{}":
        return first
    return first[:-1] + b", " + second[1:] if first != b"{}" else second


def lookahead(key: str, prompt_label: str, pause_ms: int, value: str, on_typed: Callable[[], None]) -> None:
    """The browser half of ui/lookahead.py: the sidebar's box labelled ``prompt_label``, watched as a person types
    in it; the text of each pause of ``pause_ms`` (not ``value``, the prompt the page shows, nor one run at once with
    Ctrl+Enter) comes back as the trigger value "typed", to ``on_typed``."""
    _register()(key=key, data={"kind": "lookahead", "label": prompt_label, "pause_ms": int(pause_ms), "value": value},
                on_typed_change=on_typed)


def trigger(key: str, name: str):
    """The value the component ``key`` last sent as ``name`` (a trigger value: set for the run it caused)."""
    return _value(key, name)


def _value(key: str, name: str):
    state = st.session_state.get(key)
    if state is None:
        return None
    try:
        return state[name]
    except (KeyError, TypeError):
        return getattr(state, name, None)
