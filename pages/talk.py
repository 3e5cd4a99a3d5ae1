"""Talk: a speaker's own scenes (lens/talks/), built, saved and played here.

The URL: ``?talk=NAME`` opens a saved talk (or ``tour``, the shipped one); with ``present=1`` the page plays it,
``scene=N`` (1-based) the scene on screen, ``reveal=1`` its answer shown, ``notes=1`` the notes under the chart.
``notes=window&sync=KEY`` is the speaker's notes window: the player publishes the scene on screen under its
session's KEY (a dictionary of this server process), and the notes window reads it every second, so it follows
the main window on one machine with no network.
"""
import hashlib
import secrets
import time

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.errors import LensError  # noqa: E402
from lens.figures.style import SCREEN_WIDTH, for_slides  # noqa: E402
from lens.hosting import hosting  # noqa: E402
from lens.talks import (SHIPPED, TOUR, Scene, Talk, draw, file_name, load_named, page_link, parse_talk,  # noqa: E402
                        resolve, save_named, saved_talks, scene_from_url, talks_dir, tour_talk)
from lens.talks.deck import deck_html  # noqa: E402
from lens.views import VIEWS  # noqa: E402
from ui import present  # noqa: E402
from ui.backends import get_backend  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.state import default_model  # noqa: E402
from ui.widgets import PLOT_CONFIG, page_header  # noqa: E402

ss = st.session_state
TALK, OPENED, VERSION, MESSAGE = "talk_current", "talk_opened", "talk_version", "talk_message"
TALLEST = 560  # px: a scene's chart with nothing under it (the page has no other controls to fit)
NOTES_BOX = 180  # px: the tallest the notes get on screen (longer ones scroll inside)
SHIPPED_LABEL = {TOUR: "The guided tour (shipped)"}
# The shortcut hints Streamlit draws after a button's label repeat the label's arrow: hidden.
NAV_CSS = ("<style>.st-key-talk-prev kbd, .st-key-talk-next kbd, .st-key-talk-notes kbd, "
           ".st-key-talk-notes-window-open kbd { display: none !important; }</style>")


# ---------------------------------------------------------------- the talk in this session

def current() -> Talk:
    return ss.get(TALK) or Talk("My talk")


def put(talk: Talk, structural: bool = True) -> None:
    """Keep ``talk``; after a change of the scenes' order or number the scene boxes are drawn afresh."""
    ss[TALK] = talk
    if structural:
        ss[VERSION] = ss.get(VERSION, 0) + 1


def say(kind: str, text: str) -> None:
    ss[MESSAGE] = (kind, text)


def open_named(name: str) -> Talk:
    return SHIPPED[name]() if name in SHIPPED and name not in saved_talks() else load_named(name)


def open_from_url() -> None:
    """``?talk=NAME``: that talk, once per name (edits made since stay)."""
    name = (st.query_params.get("talk") or "").strip()
    if not name or ss.get(OPENED) == name:
        return
    ss[OPENED] = name
    try:
        put(open_named(name))
    except LensError as exc:
        say("error", f"{exc}: showing {'the talk of this session' if TALK in ss else 'an empty talk'} instead.")


# ---------------------------------------------------------------- callbacks

def _open_choice() -> None:
    name = ss.get("talk_pick")
    if name is None:
        return
    try:
        put(open_named(name))
        ss[OPENED] = name
        st.query_params["talk"] = name
        say("success", f"Opened “{current().title}” ({len(current().scenes)} scenes).")
    except LensError as exc:
        say("error", str(exc))


def _upload() -> None:
    f = ss.get("talk_upload")
    if f is None:
        return
    try:
        put(parse_talk(f.getvalue(), f.name))
        ss[OPENED] = None
        if "talk" in st.query_params:
            del st.query_params["talk"]
        say("success", f"Opened “{current().title}” from {f.name} ({len(current().scenes)} scenes).")
    except LensError as exc:
        say("error", str(exc))


def _add_link() -> None:
    try:
        scene = scene_from_url(ss.get("talk_link", ""), (ss.get("talk_link_title") or "").strip())
        put(current().added(scene))
        ss["talk_link"] = ""
        ss["talk_link_title"] = ""
        say("success", f"Added scene {len(current().scenes)}: {scene.title or what(scene)}.")
    except LensError as exc:
        say("error", f"{str(exc)[:1].upper()}{str(exc)[1:]}")


def _add_tour() -> None:
    i = ss.get("talk_tour_pick")
    if i is None:
        return
    try:
        put(current().added(tour_talk().scenes[i]))
        say("success", f"Added scene {len(current().scenes)} from the tour.")
    except LensError as exc:
        say("error", str(exc))


def _edit(i: int, field: str, key: str) -> None:
    put(current().edited(i, **{field: ss.get(key) or ""}), structural=False)


def _retitle(key: str) -> None:
    put(Talk(ss.get(key) or "", current().scenes), structural=False)


def _move(i: int, step: int) -> None:
    put(current().moved(i, step))


def _delete(i: int) -> None:
    title = current().scenes[i].title
    put(current().deleted(i))
    say("success", f"Deleted scene {i + 1}{f' ({title})' if title else ''}.")


def _save() -> None:
    name = (ss.get("talk_name") or "").strip() or current().title
    try:
        path = save_named(current(), name)
        ss[OPENED] = path.stem
        st.query_params["talk"] = path.stem
        say("success", f"Saved as “{path.stem}” in {path.parent}.")
    except LensError as exc:
        say("error", str(exc))


def _play(i: int = 1) -> None:
    st.query_params.update(present="1", scene=str(i))
    for k in ("reveal", "notes"):
        if k in st.query_params:
            del st.query_params[k]


def what(scene: Scene) -> str:
    """Which view a scene draws, in words."""
    try:
        r = resolve(scene)
    except LensError as exc:
        return f"{scene.view} ({exc})"
    texts = r.texts if isinstance(r.texts, str) else " / ".join(r.texts)
    return (f"{VIEWS[r.view].title} of “{texts[:60]}”" + (f" · {r.model}" if r.model else "")
            + (f" · not drawn here: {', '.join(r.unused)}" if r.unused else ""))


def backend_for(ref: str | None):
    """The model a scene names (the bundled one by default); a demo server offers only its own models."""
    ref = ref or default_model()
    if hosting().demo:
        hosting().check_model(ref)
    return get_backend(ref)


# ---------------------------------------------------------------- playing

def go(i: int) -> None:
    st.query_params["scene"] = str(i)
    if "reveal" in st.query_params:
        del st.query_params["reveal"]


def forward(i: int, n: int, asks: bool, revealed: bool) -> None:
    """→: a question's answer first, then the next scene."""
    if asks and not revealed:
        st.query_params["reveal"] = "1"
    elif i < n:
        go(i + 1)


def toggle_notes() -> None:
    if st.query_params.get("notes") == "1":
        del st.query_params["notes"]
    else:
        st.query_params["notes"] = "1"


def scene_number(n: int) -> tuple[int, str]:
    raw = (st.query_params.get("scene") or "1").strip()
    try:
        i = int(raw)
    except ValueError:
        return 1, f"“{raw[:20]}” is not a scene number: here is scene 1."
    if not 1 <= i <= n:
        j = min(max(i, 1), n)
        return j, f"This talk has scenes 1 to {n}: here is scene {j}."
    return i, ""


def play(talk: Talk) -> None:
    n = len(talk.scenes)
    if not n:
        st.info("This talk has no scenes yet: leave presenter mode (Esc) and add some.")
        return
    i, note = scene_number(n)
    scene = talk.scenes[i - 1]
    revealed = st.query_params.get("reveal") == "1"
    notes_on = st.query_params.get("notes") == "1"
    asks = bool(scene.question)
    st.html(NAV_CSS)
    prev_col, title_col, notes_col, window_col, next_col = st.columns([1.3, 4.6, 0.9, 0.9, 1.3],
                                                                      vertical_alignment="center")
    prev_col.button("← Back", on_click=go, args=(i - 1,), disabled=i == 1, shortcut="Left", key="talk-prev",
                    help="Or the left arrow key.")
    next_col.button("Reveal →" if asks and not revealed else "Next →", on_click=forward,
                    args=(i, n, asks, revealed), disabled=i == n and (revealed or not asks), shortcut="Right",
                    key="talk-next", type="primary", help="Or the right arrow key: a question's answer, then on.")
    notes_col.button("Notes", on_click=toggle_notes, shortcut="N", key="talk-notes", type="tertiary",
                     help="Or N: your notes under the chart.")
    window_col.link_button("Window", notes_link(), shortcut="W", key="talk-notes-window-open", type="tertiary",
                           help="Or W: your notes in a second window (on your own screen) that follows this one.")
    title_col.markdown(f"#### {i}/{n} · {scene.title or talk.title}")
    publish(talk, i, revealed)
    try:
        unused = resolve(scene).unused
    except LensError:  # said below, where the scene is drawn
        unused = ()
    if unused:  # the page's own settings (a highlighted head): its link has them
        note = (note + " " if note else "") + (f"Not drawn here: {', '.join(unused)} "
                                               f"([its page]({page_link(scene, present=True)}) shows them).")
    texts = [t for t in (note, scene.question if asks else "", scene.answer if asks and revealed else "",
                         scene.notes if notes_on else "") if t]
    # The chart takes what the 720 px screen leaves: the title row and the exit button (140 px), and each box of
    # text under it (68 px for one line, 29 more per further line of about 105 characters at 18 px).
    used = 140 + sum(min(NOTES_BOX, 68 + 29 * (len(t) // 105)) if t is scene.notes else 68 + 29 * (len(t) // 105)
                     for t in texts)
    height = int(max(220, min(TALLEST, 720 - used)))
    rendered = None
    with shown_in_page(f"Scene {i}", stop=False):
        with st.spinner("Computing this scene's chart (cached after the first time)…"):
            rendered, how = draw(backend_for(resolve(scene).model), scene)
    if rendered is not None:
        # The charts the page's tab shows (two side by side where it shows two), each at slide type sizes.
        shown = [k for k in how.figures if k < len(rendered.figures)] or [0]
        spots = st.columns(len(shown)) if len(shown) > 1 else [st]
        for k, where in zip(shown, spots):
            fig = for_slides(rendered.figures[k], height, width=SCREEN_WIDTH // len(shown))
            fig.update_layout(height=height)
            where.plotly_chart(fig, key=f"talk-chart-{i}-{k}", config=PLOT_CONFIG, theme=None)
    if note:
        st.caption(f"ℹ️ {note}")
    if asks:
        st.info(f"**Question.** {scene.question}")
        if revealed:
            st.success(f"**Answer.** {scene.answer or '(no answer written)'}")
    if notes_on:  # long notes scroll in their own box: the screen itself never scrolls
        long = 68 + 29 * (len(scene.notes) // 105) > NOTES_BOX
        with st.container(height=NOTES_BOX if long else "content", border=False, key="talk-notes-box"):
            st.warning(f"**Notes.** {scene.notes or '(no notes for this scene)'}")


# ---------------------------------------------------------------- the notes window

@st.cache_resource
def _published() -> dict:
    """sync key -> what the player shows now (this server process's memory: the two windows share a server)."""
    return {}


KEEP = 200  # players remembered at once (the oldest forgotten first)


def sync_key() -> str:
    if "talk_sync" not in ss:
        ss["talk_sync"] = secrets.token_urlsafe(9)
    return ss["talk_sync"]


def publish(talk: Talk, i: int, revealed: bool) -> None:
    """The scene on screen, for the notes window: its title, notes, question and answer, and the next title."""
    scene = talk.scenes[i - 1]
    nxt = talk.scenes[i] if i < len(talk.scenes) else None
    board = _published()
    board[sync_key()] = {"talk": talk.title, "i": i, "n": len(talk.scenes), "title": scene.title or talk.title,
                         "notes": scene.notes, "question": scene.question, "answer": scene.answer,
                         "revealed": revealed, "next": (nxt.title or "(untitled)") if nxt else None,
                         "at": time.time()}
    while len(board) > KEEP:
        board.pop(min(board, key=lambda k: board[k]["at"]))


def notes_link() -> str:
    return f"/talk?notes=window&sync={sync_key()}&present=1"


NOTES_CSS = ("<style>.st-key-talk-notes-window p, .st-key-talk-notes-window li "
             "{ font-size: 24px !important; line-height: 1.45; }</style>")


@st.fragment(run_every=1.0)
def notes_window() -> None:
    """The speaker's second window: the player's scene, read again every second."""
    key = (st.query_params.get("sync") or "").strip()
    now = _published().get(key)
    if not key or now is None:
        st.info("No talk is playing in the window that opened this one (yet): start playing it there "
                "(Play), then press W for this window.")
        return
    st.html(NOTES_CSS)
    with st.container(key="talk-notes-window"):
        st.markdown(f"#### {now['i']}/{now['n']} · {now['title']}")
        if now["question"]:
            st.info(f"**Question.** {now['question']}")
            st.success(f"**Answer** ({'revealed' if now['revealed'] else 'not revealed yet: → reveals it'}). "
                       f"{now['answer'] or '(no answer written)'}")
        st.warning(f"**Notes.** {now['notes'] or '(no notes for this scene)'}")
        st.markdown(f"**Next:** {now['next']}" if now["next"] else "**Next:** the end of the talk.")


# ---------------------------------------------------------------- building

def build(talk: Talk) -> None:
    page_header("talk")
    kind, text = ss.pop(MESSAGE, (None, ""))
    if kind:
        getattr(st, kind)(text)
    ver = ss.get(VERSION, 0)

    src, up = st.columns(2)
    with src:
        names = [*SHIPPED, *[n for n in saved_talks() if n not in SHIPPED]]
        pick, go_col = st.columns([4, 1], vertical_alignment="bottom")
        pick.selectbox("Open a talk", names, index=None, key="talk_pick", placeholder="a saved talk or the tour…",
                       format_func=lambda n: SHIPPED_LABEL.get(n, n), help=f"Saved talks live in {talks_dir()}.")
        go_col.button("Open", on_click=_open_choice, key="talk-open")
    up.file_uploader("Or upload a talk (.json)", type=["json"], key="talk_upload", on_change=_upload)

    st.text_input("Title of the talk", value=talk.title, key=f"talk-title-{ver}", on_change=_retitle,
                  args=(f"talk-title-{ver}",))
    talk = current()

    st.subheader(f"Scenes ({len(talk.scenes)})")
    if not talk.scenes:
        st.caption("No scenes yet: paste a link below, or take one from the tour.")
    for i, scene in enumerate(talk.scenes):
        with st.container(border=True, key=f"talk-scene-{i}"):
            head, b_up, b_down, b_play, b_del = st.columns([8, 0.7, 0.7, 0.7, 0.7], vertical_alignment="center")
            head.markdown(f"**{i + 1}. {scene.title or '(untitled)'}** — {what(scene)} · "
                          f"[open its page]({page_link(scene)})")
            b_up.button("↑", key=f"talk-up-{ver}-{i}", on_click=_move, args=(i, -1), disabled=i == 0,
                        help="Move up")
            b_down.button("↓", key=f"talk-down-{ver}-{i}", on_click=_move, args=(i, 1),
                          disabled=i == len(talk.scenes) - 1, help="Move down")
            b_play.button("▶", key=f"talk-play-{ver}-{i}", on_click=_play, args=(i + 1,), help="Play from here")
            b_del.button("✕", key=f"talk-del-{ver}-{i}", on_click=_delete, args=(i,), help="Delete this scene")
            c1, c2 = st.columns(2)
            for where, field, label in ((c1, "title", "Title"), (c2, "question", "Question (asked first)"),
                                        (c1, "notes", "Speaker notes"), (c2, "answer", "Answer (on the next key)")):
                key = f"talk-{field}-{ver}-{i}"
                box = where.text_area if field == "notes" else where.text_input
                box(label, value=getattr(scene, field), key=key, on_change=_edit, args=(i, field, key),
                    **({"height": 90} if field == "notes" else {}))

    st.subheader("Add a scene")
    link_col, title_col, add_col = st.columns([5, 2.5, 1], vertical_alignment="bottom")
    link_col.text_input("A LayerLens link", key="talk_link", placeholder="http://localhost:8501/attention?view=Heads…",
                        help="Open any page, set it up, copy the address bar: the page and its settings "
                             "(prompt, model, options) become the scene.")
    title_col.text_input("Its title", key="talk_link_title")
    add_col.button("Add", on_click=_add_link, key="talk-add-link", type="primary")
    tour = tour_talk().scenes
    t_col, t_add = st.columns([7.5, 1], vertical_alignment="bottom")
    t_col.selectbox("Or a scene of the guided tour", range(len(tour)), index=None, key="talk_tour_pick",
                    format_func=lambda k: f"{k + 1}. {tour[k].title}", placeholder="a tour scene…")
    t_add.button("Add", on_click=_add_tour, key="talk-add-tour")

    st.subheader("Keep it, play it")
    name_col, save_col, dl_col, play_col = st.columns([3, 1, 1.6, 1.4], vertical_alignment="bottom")
    name_col.text_input("Save as", value=ss.get(OPENED) or "", key="talk_name", placeholder=talk.title,
                        help=f"A name (letters, digits, - and _); the file is kept in {talks_dir()}.")
    save_col.button("Save", on_click=_save, key="talk-save", icon=":material/save:")
    stem = file_name(talk.title) if talk.title.strip() else "talk.json"
    dl_col.download_button("Download JSON", talk.to_json(), file_name=stem, mime="application/json",
                           key="talk-download", on_click="ignore", icon=":material/download:")
    play_col.button("Play", on_click=_play, key="talk-play", type="primary", icon=":material/slideshow:",
                    disabled=not talk.scenes,
                    help="Presenter mode: → reveals, then moves on; ← back; N notes; W notes in a second window.")
    export_deck(talk)


def export_deck(talk: Talk) -> None:
    """The deck is computed on request (every scene's chart), kept for this talk's exact contents."""
    if not talk.scenes:
        return
    digest = hashlib.sha256(talk.to_json().encode()).hexdigest()
    ready = ss.get("talk_deck")
    if ready is None or ready[0] != digest:
        if st.button("Export deck (HTML)", key="talk-export", icon=":material/co_present:",
                     help="One HTML file with every scene's chart, drawn from its numbers; opens with no network."):
            bar = st.progress(0.0, text="Computing the scenes…")
            with shown_in_page("The deck", stop=False):
                html = deck_html(talk, backend_for, lambda f, m: bar.progress(min(1.0, f), text=f"Deck: {m}"))
                ss["talk_deck"] = ready = (digest, html)
            bar.empty()
    if ready is not None and ready[0] == digest:
        size = len(ready[1].encode("utf-8"))
        st.download_button(f"Download the deck (HTML, {size / 1e6:.1f} MB)", ready[1],
                           file_name=file_name(talk.title or "deck").replace(".json", ".html"), mime="text/html",
                           key="talk-deck-download", on_click="ignore", icon=":material/download:")


if st.query_params.get("notes") == "window":
    notes_window()
else:
    open_from_url()
    if present.is_on():
        play(current())
    else:
        build(current())
