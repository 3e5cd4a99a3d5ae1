"""A talk as one self-contained HTML deck: every scene's chart drawn in the browser from its numbers (plotly.js
inlined from the installed plotly package), its title, the question and then its answer, the speaker's notes
behind a key; ← → move between scenes. The file makes no network request: it holds everything it shows.
"""
from __future__ import annotations

import json
from html import escape

from ..errors import LensError
from ..figures.style import for_slides

_STYLE = """
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; background: #fff; color: #000;
             font-family: Inter, Helvetica, Arial, sans-serif; font-size: 20px; }
.scene { display: none; height: 100vh; padding: 14px 32px 10px; flex-direction: column; gap: 8px; }
.scene.on { display: flex; }
.scene header { display: flex; align-items: baseline; gap: 18px; }
.scene h1 { font-size: 30px; margin: 0; flex: 1; }
.count, .meta { color: #333; font-size: 18px; }
.charts { flex: 1; min-height: 200px; display: flex; gap: 12px; }
.chart { flex: 1; min-width: 0; }
.question, .answer { font-size: 22px; padding: 6px 14px; border-radius: 6px; }
.question { background: #eef3fb; border-left: 5px solid #2f6db5; }
.answer { background: #eef8ee; border-left: 5px solid #2e7d32; }
.notes { position: fixed; left: 0; right: 0; bottom: 0; max-height: 45vh; overflow: auto; background: #fffbe6;
         border-top: 2px solid #c9a400; padding: 10px 32px; font-size: 20px; white-space: pre-wrap; }
.hint { position: fixed; right: 12px; bottom: 6px; color: #555; font-size: 18px; }
[hidden] { display: none !important; }
body.notes-on .hint { display: none; }
.title-scene h1 { font-size: 44px; margin-top: 30vh; text-align: center; }
.title-scene p { text-align: center; }
"""

# The notes window's look: the speaker reads it at arm's length.
_NOTES_STYLE = """
body { margin: 0; padding: 18px 28px; font-family: Inter, Helvetica, Arial, sans-serif; font-size: 24px; color: #000;
       background: #fffdf3; }
h1 { font-size: 30px; margin: 4px 0 12px; }
.count { color: #333; font-size: 20px; }
.question { background: #eef3fb; border-left: 5px solid #2f6db5; padding: 6px 12px; }
.answer { background: #eef8ee; border-left: 5px solid #2e7d32; padding: 6px 12px; }
.notes { white-space: normal; line-height: 1.45; margin: 12px 0; }
.next { color: #333; border-top: 1px solid #ccc; padding-top: 10px; }
"""

# The deck's keys: → (or space, Page Down) reveals a hidden answer first, then moves on; ← goes back; N shows
# the notes under the chart; W opens them in a second window (the speaker's screen) that follows every move:
# the deck writes into that window itself (window.open of a blank page shares the deck's origin, even from a
# file), so nothing is asked of any network, and the keys pressed there move the deck. The scene's number stays
# in the address (#3), so a reload keeps the place.
_SCRIPT = """
const figs = JSON.parse(document.getElementById('deck-figures').textContent);
const scenes = Array.from(document.querySelectorAll('.scene'));
let at = 0;
function draw(s) {
  for (const div of s.querySelectorAll('.chart')) {
    const f = figs[div.id];
    if (!div.dataset.drawn) {
      Plotly.newPlot(div, f.data, f.layout, {displaylogo: false, responsive: true});
      div.dataset.drawn = '1';
    } else { Plotly.Plots.resize(div); }
  }
}
const notes = JSON.parse(document.getElementById('deck-notes').textContent);
let notesWindow = null;
function esc(t) {
  return String(t).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c])
    .replace(/\\n/g, '<br>');
}
function speakerNotes() {
  if (!notesWindow || notesWindow.closed) return;
  const n = notes[at], a = scenes[at].querySelector('.answer');
  const d = notesWindow.document;
  d.title = 'Notes · ' + n.title;
  let html = '<div class="count">' + esc(n.count) + '</div><h1>' + esc(n.title) + '</h1>';
  if (n.question) {
    html += '<p class="question"><b>Question.</b> ' + esc(n.question) + '</p><p class="answer"><b>Answer ('
      + (a && !a.hidden ? 'revealed' : 'not revealed yet: → reveals it') + ').</b> ' + esc(n.answer) + '</p>';
  }
  html += '<div class="notes"><b>Notes.</b> ' + esc(n.notes) + '</div>'
    + '<p class="next"><b>Next:</b> ' + esc(n.next || 'the end of the talk.') + '</p>';
  d.getElementById('speaker').innerHTML = html;
}
function openNotes() {
  if (notesWindow && !notesWindow.closed) { notesWindow.focus(); speakerNotes(); return; }
  notesWindow = window.open('', 'deck-notes', 'width=900,height=700');
  if (!notesWindow) return;  // a blocked pop-up: N still shows the notes under the chart
  const d = notesWindow.document;
  d.open();
  d.write('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Notes</title><style>'
    + document.getElementById('deck-notes-style').textContent + '</style></head><body><main id="speaker"></main>'
    + '</body></html>');
  d.close();
  d.addEventListener('keydown', onKey);  // the speaker's keys in the notes window move the deck too
  speakerNotes();
}
function show(i) {
  at = Math.max(0, Math.min(scenes.length - 1, i));
  scenes.forEach((s, k) => s.classList.toggle('on', k === at));
  const a = scenes[at].querySelector('.answer');
  if (a) a.hidden = true;
  draw(scenes[at]);
  if (location.hash !== '#' + (at + 1)) history.replaceState(null, '', '#' + (at + 1));
  speakerNotes();
}
function next() {
  const a = scenes[at].querySelector('.answer');
  if (a && a.hidden) { a.hidden = false; speakerNotes(); return; }
  show(at + 1);
}
function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (['ArrowRight', 'PageDown', ' ', 'Enter'].includes(e.key)) { next(); e.preventDefault(); }
  else if (['ArrowLeft', 'PageUp', 'Backspace'].includes(e.key)) { show(at - 1); e.preventDefault(); }
  else if (e.key === 'Home') show(0);
  else if (e.key === 'End') show(scenes.length - 1);
  else if (e.key === 'n' || e.key === 'N') {
    document.querySelectorAll('.notes').forEach((n) => { n.hidden = !n.hidden; });
    document.body.classList.toggle('notes-on');
  }
  else if (e.key === 'w' || e.key === 'W') openNotes();
}
document.addEventListener('keydown', onKey);
const start = parseInt(location.hash.slice(1), 10);
show(Number.isFinite(start) ? start - 1 : 0);
"""


def _figure_json(fig) -> dict:
    """The figure as plotly.js draws it, at slide type sizes, sized by its box in the deck."""
    import plotly.io as pio

    fig = for_slides(fig)
    fig.update_layout(height=None, width=None, autosize=True)
    return json.loads(pio.to_json(fig, validate=False))


def _para(text: str) -> str:
    return escape(text).replace("\n", "<br>")


def deck_html(talk, backend_for, progress=None, model: str | None = None) -> str:
    """``talk`` (lens.talks.Talk) as one HTML file; ``backend_for(model_ref or None)`` gives the backend a scene
    runs on (``model``: one model for every scene, over what the scenes' links name)."""
    from plotly.offline import get_plotlyjs

    from .links import draw

    figures: dict[str, dict] = {}
    parts = [f'<section class="scene title-scene"><h1>{escape(talk.title or "A talk")}</h1>'
             f'<p class="meta">{len(talk.scenes)} scenes · → next, ← back, N notes, W notes in a second window'
             '</p></section>']
    n = len(talk.scenes)
    first = talk.scenes[0].title if talk.scenes else ""
    speaker = [{"count": f"0 / {n}", "title": talk.title or "A talk", "notes": "The title screen.", "question": "",
                "answer": "", "next": first or ("scene 1" if n else "")}]
    for i, scene in enumerate(talk.scenes):
        if progress:
            progress(i / max(n, 1), f"scene {i + 1} of {n}: {scene.title or scene.view}")
        try:
            rendered, how = draw(backend_for(model or how_model(scene)), scene)
        except LensError as exc:
            raise LensError(f"scene {i + 1} ({scene.title or scene.view}): {exc}") from None
        # The charts the page's tab shows (the first as fig-i, a second beside it as fig-i-2).
        shown = [k for k in how.figures if k < len(rendered.figures)] or [0]
        ids = [f"fig-{i}" if j == 0 else f"fig-{i}-{j + 1}" for j in range(len(shown))]
        for fig_id, k in zip(ids, shown):
            figures[fig_id] = _figure_json(rendered.figures[k])
        meta = f"{rendered.view.title} · {rendered.model}"
        if how.unused:
            meta += f" · not drawn here: {', '.join(f'{k}={scene.params[k]}' for k in how.unused)}"
        html = [f'<section class="scene" id="scene-{i + 1}" data-view="{escape(rendered.view.name)}">',
                f'<header><h1>{escape(scene.title or rendered.view.title)}</h1>'
                f'<span class="count">{i + 1} / {n}</span></header>',
                f'<div class="meta">{escape(meta)}</div>',
                '<div class="charts">' + "".join(f'<div class="chart" id="{f}"></div>' for f in ids) + "</div>"]
        if rendered.caption:
            html.append(f'<div class="meta">{escape(rendered.caption)}</div>')
        if scene.question:
            html.append(f'<div class="question"><b>Question.</b> {_para(scene.question)}</div>')
            html.append(f'<div class="answer" hidden><b>Answer.</b> {_para(scene.answer or "(no answer given)")}'
                        "</div>")
        html.append(f'<aside class="notes" hidden><b>Notes.</b> {_para(scene.notes or "(no notes)")}</aside>')
        html.append("</section>")
        parts.append("\n".join(html))
        nxt = talk.scenes[i + 1] if i + 1 < n else None
        speaker.append({"count": f"{i + 1} / {n}", "title": scene.title or rendered.view.title,
                        "notes": scene.notes or "(no notes)", "question": scene.question,
                        "answer": scene.answer or "(no answer given)",
                        "next": (nxt.title or f"scene {i + 2}") if nxt else ""})
    if progress:
        progress(1.0, "done")
    data = json.dumps(figures, ensure_ascii=False).replace("</", "<\\/")
    said = json.dumps(speaker, ensure_ascii=False).replace("</", "<\\/")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{escape(talk.title or 'A talk')}</title>"
            f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head>\n<body>\n" + "\n".join(parts)
            + '\n<div class="hint">→ next · ← back · N notes · W notes window</div>'
            + f'\n<script type="application/json" id="deck-figures">{data}</script>'
            + f'\n<script type="application/json" id="deck-notes">{said}</script>'
            + f'\n<script type="text/plain" id="deck-notes-style">{_NOTES_STYLE}</script>'
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def how_model(scene) -> str | None:
    return (scene.params.get("model") or "").strip() or None
