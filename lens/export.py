"""Views leave the tool as files: one self-contained HTML page, or a static SVG / PNG.

The HTML carries plotly.js inlined, the figures, the numbers behind them (as JSON, with
a download link), the prompt and the "what am I looking at" text: it opens in any
browser with the network off. Static images are drawn by kaleido, which drives a local
Chrome or Chromium (``BROWSER_PATH``; Debian's /usr/bin/chromium is used when present).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .errors import LensError
from .files import atomic_write_bytes, atomic_write_text
from .serialize import to_json_dict

SLIDE = (1600, 900)  # static images: 16:9, sharp on a 1080p projector at scale 1.2
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "svg", "width": SLIDE[0], "height": SLIDE[1]}}
STATIC_FORMATS = ("svg", "png")

_STYLE = """
body { font-family: Inter, Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #1b1b1b; line-height: 1.5; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.25em; margin-top: 2em; }
pre.prompt { background: #f3f4f6; padding: .8em 1em; border-radius: 6px; white-space: pre-wrap; }
.meta { color: #555; font-size: .9em; } .notice { border-left: 4px solid #2f6db5; padding: .2em .9em; }
section { border-top: 1px solid #ddd; margin-top: 2em; } a.numbers { font-size: .9em; }
"""
# Builds the JSON download from the page's own data: no request leaves the file.
_DOWNLOAD_SCRIPT = """
for (const a of document.querySelectorAll('a.numbers')) {
  const data = document.getElementById(a.dataset.source).textContent;
  a.href = URL.createObjectURL(new Blob([data], {type: 'application/json'}));
}
"""


@dataclass
class Section:
    """One part of an exported page: a heading, text, charts and the numbers behind them."""

    title: str
    paragraphs: tuple[str, ...] = ()
    figures: tuple = ()
    numbers: object = None  # a typed result, or a list of them
    notice: str = ""  # "what to notice", set apart
    prompt: str | list[str] | None = None


def _json_block(obj, ident: str) -> str:
    data = json.dumps(obj, ensure_ascii=False, allow_nan=True).replace("</", "<\\/")
    return f'<script type="application/json" id="{ident}">{data}</script>'


def _figure_html(fig, ident: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOT_CONFIG, div_id=ident,
                       include_mathjax=False, validate=False)


def _numbers(obj):
    if obj is None:
        return None
    if isinstance(obj, (list, tuple)):
        return [to_json_dict(o) for o in obj]
    return to_json_dict(obj)


def html_page(title: str, sections: list[Section], subtitle: str = "") -> str:
    """One HTML file holding every section, with plotly.js inlined once."""
    from plotly.offline import get_plotlyjs

    body = [f"<h1>{escape(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="meta">{escape(subtitle)}</p>')
    for i, s in enumerate(sections):
        part = [f"<section><h2>{escape(s.title)}</h2>" if len(sections) > 1 else "<section>"]
        if s.prompt is not None:
            texts = s.prompt if isinstance(s.prompt, list) else [s.prompt]
            label = "Prompt" if len(texts) == 1 else f"Texts ({len(texts)})"
            part.append(f"<p><b>{label}</b></p><pre class=\"prompt\">{escape(chr(10).join(texts))}</pre>")
        part += [f"<p>{escape(p)}</p>" for p in s.paragraphs]
        part += [_figure_html(fig, f"fig-{i}-{j}") for j, fig in enumerate(s.figures)]
        if s.notice:
            part.append(f'<p class="notice"><b>What to notice.</b> {escape(s.notice)}</p>')
        numbers = _numbers(s.numbers)
        if numbers is not None:
            part.append(_json_block(numbers, f"numbers-{i}"))
            part.append(f'<p><a class="numbers" data-source="numbers-{i}" download="numbers-{i + 1}.json">'
                        f"Download the numbers behind {'these charts' if len(s.figures) > 1 else 'this chart'} "
                        "(JSON)</a></p>")
        part.append("</section>")
        body += part
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head>\n<body>\n" + "\n".join(body)
            + f"\n<script>{_DOWNLOAD_SCRIPT}</script>\n</body></html>\n")


def chart_page(view, model: str, texts, figures, numbers, caption: str = "") -> str:
    """One view's charts (``view``: a lens.views.View), numbers, prompt and explanation as one page."""
    section = Section(view.title, paragraphs=view.about + ((caption,) if caption else ()), figures=tuple(figures),
                      numbers=numbers, prompt=texts)
    return html_page(f"{view.title} · {model}", [section], subtitle=f"LayerLens · {model}")


def view_page(rendered) -> str:
    """A rendered view (lens.views.RenderedView) as one self-contained HTML page."""
    return chart_page(rendered.view, rendered.model, rendered.texts, rendered.figures, rendered.results,
                      rendered.caption)


def _browser_path() -> None:
    if not os.environ.get("BROWSER_PATH"):
        for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
            if Path(candidate).exists():
                os.environ["BROWSER_PATH"] = candidate
                return


def static_image(fig, fmt: str, width: int = SLIDE[0], height: int = SLIDE[1]) -> bytes:
    """``fig`` drawn as SVG or PNG bytes at slide size (kaleido and a local Chromium)."""
    if fmt not in STATIC_FORMATS:
        raise LensError(f"cannot draw a {fmt!r} image; choose {' or '.join(STATIC_FORMATS)}")
    _browser_path()
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise LensError("static images need the kaleido package: pip install kaleido") from None
    import plotly.graph_objects as go

    from .figures.style import EXPORT_FONT, for_slides

    # A copy in the slide look at slide size: its text is EXPORT_FONT px (28.8 px on the 1920×1080 PNG).
    slide = go.Figure(fig).update_layout(width=width, height=height)
    for_slides(slide, width=width, font=EXPORT_FONT)
    def draw() -> bytes:
        return slide.to_image(format=fmt, width=width, height=height, scale=1 if fmt == "svg" else 1.2)

    try:
        return draw()
    except Exception:  # once more, in a fresh browser: on a busy machine kaleido has called into its page before
        pass  # the page's script had loaded ("kaleido_scopes is not defined")
    try:
        return draw()
    except Exception as exc:  # kaleido reports a missing or broken browser in many ways
        raise LensError(f"could not draw the {fmt.upper()} image ({type(exc).__name__}: {exc}); static images "
                        "need Chrome or Chromium: install it, or set BROWSER_PATH to its executable") from None


def write_file(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` in one piece (a half-written file never stays behind)."""
    path = Path(path)
    try:
        if isinstance(data, str):
            atomic_write_text(path, data)
        else:
            atomic_write_bytes(path, data)
    except OSError as exc:
        raise LensError(f"cannot write {path}: {exc.strerror or exc}") from None


def export_view(rendered, out: Path) -> list[Path]:
    """Write a rendered view to ``out`` (.html, .svg or .png); the files written.

    A static image holds one chart: a view with several (geometry) writes the first to
    ``out`` and the others beside it as ``NAME-2.svg``, ``NAME-3.svg``, …"""
    out = Path(out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix in ("html", "htm"):
        write_file(out, view_page(rendered))
        return [out]
    if suffix not in STATIC_FORMATS:
        raise LensError(f"cannot export to {out.name!r}: name a .html, .svg or .png file")
    written = []
    for j, fig in enumerate(rendered.figures):
        path = out if j == 0 else out.with_name(f"{out.stem}-{j + 1}{out.suffix}")
        write_file(path, static_image(fig, suffix))
        written.append(path)
    return written
