"""Widgets every view uses the same way: the page's title and explanation, charts (with their exports)
and downloads of the numbers."""
from __future__ import annotations

import json

import streamlit as st

from lens.serialize import to_json_dict
from lens.views import page_named

from . import present

def page_header(path: str) -> None:
    """The title of page ``path`` and its "What am I looking at?" text, both from its registry entry."""
    page = page_named(path)
    st.title(page.title)
    with st.expander("What am I looking at?", expanded=False):
        st.markdown(page.explainer)


# The chart's camera button saves a PNG at twice the screen resolution (for slides).
PLOT_CONFIG = {"toImageButtonOptions": {"format": "png", "scale": 2}, "displaylogo": False}


def chart(fig, key: str, where=st, export: dict | None = None, share: float = 1.0, **kwargs):
    """A plotly chart with the shared config (in ``where``: a column, a container); returns what
    ``st.plotly_chart`` returns (the selection, for a chart that reruns on select).

    ``export``: ``{"view": name in lens.views.VIEWS, "numbers": result(s), "texts": prompt, "model": name}``
    adds an Export menu under the chart (slide PNG, SVG, and one self-contained HTML file), and with
    ``"params"`` (the view's options as shown) a "Save run" menu; ``share``: the part
    of the page's width the chart has (0.5 in one of two columns), for presenter mode's cell text."""
    out = where.plotly_chart(present.styled(fig, share), key=key, config=PLOT_CONFIG, theme=None, **kwargs)
    if export is not None:
        export_controls(fig, key, export, where)
    return out


def live_chart(figure, options, value: str, key: str, view: tuple, hide: list[str], on_value, where=st,
               export: dict | None = None, share: float = 1.0, channel: str | None = None,
               cells: tuple[list[int], list[int]] | None = None, on_cell=None):
    """A heatmap whose options only re-colour it (a score, a toggle): every option's figure is sent once and the
    browser switches between them (ui/live), with ``live.metric_box``/``live.toggle_box`` of ``channel`` as its
    box and Streamlit's boxes ``hide`` hidden; where no browser can run it (in-process tests) the plain chart of
    ``value``. ``figure(option)``: the figure of an option; ``view``: what the figures depend on besides it (the
    result's digest, the prompt…), so that a view seen again is sent without rebuilding; ``on_value(option)``
    when the browser reports the option it shows; ``cells`` (each row's and column's number) and ``on_cell`` for
    a clicked cell. The exports are those of ``chart`` with ``figure(value)``."""
    from . import live

    if not live.available():
        return chart(figure(value), key=key, where=where, export=export, share=share)
    payload = live.payload_for((key, *view, present.is_on(), share), lambda: live.figure_payload(
        {o: present.styled(figure(o), share) for o in options}, *(cells or (None, None))))
    out = live.heatmap(payload, value, key=f"{key}-live", hide=hide, on_metric=on_value, on_cell=on_cell,
                       config=PLOT_CONFIG, channel=channel, where=where)
    if export is not None:
        export_controls(lambda: figure(value), key, export, where)
    return out


def export_controls(fig, key: str, export: dict, where=st) -> None:
    """Only the Export and Save run menus that ``chart`` draws under a chart (for a chart drawn some other way,
    e.g. the lens page's live heatmap): the same files and runs as ``chart`` with this ``fig`` and ``export``.
    ``fig`` may be a function that returns the figure: it is called when an export is clicked."""
    if present.is_on():
        return
    row = where.container(horizontal=True)
    export = dict(export)
    params = export.pop("params", None)
    export_menu(fig, key, where=row, params=params, **export)
    if params is not None:
        save_menu(key, export["view"], export["texts"], params, where=row)


def save_menu(key: str, view: str, texts, params: dict, where=st) -> None:
    """Save this view as a run (the Runs page lists it and opens it again without recomputing)."""
    with where.popover("Save run", icon=":material/bookmark_add:"):
        st.text_input("Name", key=f"save-name-{key}", placeholder="default: the view and the prompt")
        st.text_area("Note", key=f"save-note-{key}", height=80, placeholder="what you saw")
        # A callback: it runs once per click, before the script (a rerun of the page cannot lose the click).
        st.button("Save", key=f"save-{key}", type="primary", on_click=_save_run, args=(key, view, texts, params))
    said = st.session_state.pop(f"saved-{key}", None)
    if said:
        st.toast(said, icon=":material/bookmark:")


def _save_run(key: str, view: str, texts, params: dict) -> None:
    from lens.errors import LensError
    from lens.runs import RunStore, save_view

    from . import state

    name = (st.session_state.get(f"save-name-{key}") or "").strip()
    note = st.session_state.get(f"save-note-{key}") or ""
    try:
        run = save_view(RunStore(), state.backend(), view, texts, params, name=name, note=note)
        st.session_state[f"saved-{key}"] = f"Saved as run {run.id}: open it on the Saved runs page"
    except LensError as exc:
        st.session_state[f"saved-{key}"] = f"Not saved: {exc}"


def export_menu(fig, key: str, view: str, numbers, texts, model: str, where=st, params: dict | None = None) -> None:
    """Downloads of one chart, each made when clicked: PNG and SVG at slide size (drawn by a local
    Chromium), and an HTML file with the chart, its numbers, the prompt and the explanation."""
    from lens.export import chart_page, static_image
    from lens.views import VIEWS

    name = f"{view}-{key}"
    figure = fig if callable(fig) else (lambda: fig)  # a function: the figure is built when a file is

    def html() -> str:
        return chart_page(VIEWS[view], model, texts, [figure()], numbers)

    with where.popover("Export", icon=":material/download:"):
        st.caption("For slides and handouts. The HTML file opens offline in any browser, with the numbers.")
        st.download_button("HTML (interactive, offline)", html, file_name=f"{name}.html", mime="text/html",
                           key=f"x-html-{key}", on_click="ignore")
        st.download_button("PNG (1600×900 ×1.2)", lambda: static_image(figure(), "png"), file_name=f"{name}.png",
                           mime="image/png", key=f"x-png-{key}", on_click="ignore")
        st.download_button("SVG (vector)", lambda: static_image(figure(), "svg"), file_name=f"{name}.svg",
                           mime="image/svg+xml", key=f"x-svg-{key}", on_click="ignore")
        if params is not None:  # the view's options as shown: code that recomputes exactly this
            from lens.export_code import notebook, python_script

            st.download_button("Python script (prints the numbers)", lambda: python_script(view, model, texts, params),
                               file_name=f"{name.replace('-', '_')}.py", mime="text/x-python", key=f"x-py-{key}",
                               on_click="ignore")
            st.download_button("Jupyter notebook", lambda: notebook(view, model, texts, params),
                               file_name=f"{name}.ipynb", mime="application/x-ipynb+json", key=f"x-nb-{key}",
                               on_click="ignore")


def download_json(result, name: str, label: str = "Download the numbers (JSON)", where=st) -> None:
    """A download button for the numbers behind a chart, as ``name``.json (written when clicked,
    not on every redraw)."""
    where.download_button(label, lambda: json.dumps(to_json_dict(result), ensure_ascii=False), file_name=f"{name}.json",
                          mime="application/json", key=f"dl-{name}", on_click="ignore")


def suite_file(key: str, help: str, missing: str, where=st):
    """A prompt suite uploaded as JSONL, CSV or text (read as data, never run): the suite, or, with no file yet,
    ``missing`` said in the page and the script stopped there."""
    from lens.suites.suite import SUFFIXES, suite_from_bytes

    up = where.file_uploader("Suite file", type=[x[1:] for x in SUFFIXES], key=key, help=help)
    if up is None:
        st.info(missing)
        st.stop()
    return suite_from_bytes(up.getvalue(), up.name)


def link_options(key: str, labels: dict[str, str]) -> None:
    """Before a URL-bound widget with a ``format_func``: Streamlit keeps the option's *label* in the URL
    (``?metric=KL+to+final``), while links written by hand or by the tour name the option itself
    (``?metric=kl``, ``?position=3``): start the widget at that option, so the link is honoured."""
    value = st.query_params.get(key)
    if value is not None and value in labels and value not in labels.values() and key not in st.session_state:
        st.session_state[key] = value  # the widget starts at this option…
        # …but Streamlit drops a value set this way from the URL on a first visit: a copied link would lose it.
        # The label goes back into the URL once the page has run (keep_link_options, at the end of app.py).
        st.session_state.setdefault(_KEEP, {})[key] = labels[value]


_KEEP = "_link_options_to_keep"


def keep_link_options() -> None:
    """At the end of every run: a link's options named by key (``?metric=kl``) written back into the URL as the
    labels the widgets keep there (``?metric=KL+to+final``), so that the address bar still reproduces the view."""
    keep = st.session_state.pop(_KEEP, None)
    if not keep:
        return
    from streamlit.runtime.state import get_session_state

    with get_session_state().query_params() as qp:  # Streamlit's own URL correction (as for a clamped value)
        for key, label in keep.items():
            if key in st.session_state:
                qp.set_corrected_value(key, label, "string_value")


def link_value_unused(key: str, fits) -> str | None:
    """Before a URL-bound widget: the link's value for ``key`` when the widget cannot take it (``fits(value)``
    is False), so that the page can say what it shows instead (a widget quietly falls back to its default)."""
    raw = st.query_params.get(key)
    if raw is None:
        return None
    try:
        ok = fits(raw)
    except (TypeError, ValueError):
        ok = False
    return None if ok else raw


def say_link_values_unused(unused: list[tuple[str | None, str, object]], where=st) -> None:
    """One line under the controls for the link's values that do not apply, each as (the link's value, what
    it sets, what is shown instead); nothing when every value applied."""
    said = [f"{what} “{raw[:40]}” (showing {used})" for raw, what, used in unused if raw is not None]
    if said:
        where.caption("ℹ️ Not used from the link: " + "; ".join(said) + ".")


def whole_in(lo: int, hi: int):
    """``fits`` for a number box of whole numbers from ``lo`` to ``hi``."""
    return lambda raw: float(raw).is_integer() and lo <= float(raw) <= hi


def one_of(*values):
    """``fits`` for a choice box: its options' values or labels as the URL holds them."""
    allowed = {str(v) for group in values for v in group}
    return lambda raw: raw in allowed


def say_link_value_unused(raw: str | None, what: str, used, where=st) -> None:
    """``say_link_values_unused`` for one value."""
    say_link_values_unused([(raw, what, used)], where=where)


def presenter_table(rows: list[dict], links: list[str] | None = None, link_column: str | None = None,
                    where=st) -> None:
    """A table for presenter mode: HTML, so that its text is as large as the rest of the screen (a dataframe
    draws on a canvas, at its own small size). ``links``: one URL per row, opened in this tab from the cells of
    ``link_column``."""
    from html import escape

    if not rows:
        return
    columns = list(rows[0])

    def cell(value, column: str, i: int) -> str:
        text = "✓" if value is True else "✗" if value is False else "" if value is None else (
            f"{value:.4g}" if isinstance(value, float) else str(value))
        text = escape(text, quote=False)
        if links is not None and column == link_column:
            return f'<a href="{escape(links[i])}" target="_self">{text}</a>'
        return text

    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r[c], c, i)}</td>" for c in columns) + "</tr>"
                   for i, r in enumerate(rows))
    where.markdown(f'<table class="presenter-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>',
                   unsafe_allow_html=True)
