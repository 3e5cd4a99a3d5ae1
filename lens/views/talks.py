"""The Talk page (pages/talk.py): a speaker's own sequence of live views (lens/talks/). It draws no view of its own:
each scene is another page's view, drawn through the registry."""
from __future__ import annotations

from .entry import LEARN, Page

PAGE = Page("talk", "Talk", ":material/co_present:",
            "your own talk: scenes of live views with notes and questions, played with the arrow keys or exported "
            "as one offline HTML deck", LEARN, """
A **talk** is a list of **scenes**. A scene is one view as a link opens it (the page and its URL settings: prompt,
model, options), with a title, your **speaker notes**, and optionally a **question** that is shown first and whose
**answer** appears on the next key press: the room predicts, then you reveal.

- **Add a scene**: open any page, set it up, copy the link from the address bar and paste it here; or take one from
  the guided tour. Reorder with ↑ ↓, edit the texts in place, delete with ✕.
- **Play** shows the talk full screen (presenter mode): → reveals a question's answer, then goes on; ← goes back;
  **N** shows your notes under the chart. Every chart is computed live from the model, as on its page.
- **Save** keeps the talk in your LayerLens data folder, beside the saved runs (not in the cache); **Download** gives
  the plain JSON file, which you can keep anywhere and upload again. `python -m lens talk export TALK.json --out
  deck.html` (or **Export deck**) writes one HTML file with every chart, drawn from its numbers, that opens with no
  network: → and ← move through it, N shows the notes.
- A link setting that a scene's chart does not read (a page's own highlight, say) is kept in the scene, so the page
  shows it; the deck names it under the chart as not drawn.""")

VIEWS = ()
