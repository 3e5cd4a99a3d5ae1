"""``runs``: the saved runs (list, show, note, delete); and ``--save NAME`` for every analysis command, which keeps
what the command computed as a run (the same runs the dashboard's Runs page lists and opens)."""
from __future__ import annotations

import json

from ..errors import LensError
from .common import print_json

# The dashboard view each command's run opens in (a command without one is kept and shown, not drawn).
COMMAND_VIEWS = {"logit-lens": "logit-lens", "compare-lenses": "lens-comparison", "language": "language",
                 "generate": "generate", "rollout": "rollout", "routes": "routes", "heads": "heads",
                 "project": "projection", "geometry": "geometry", "patch": "patch",
                 "noise-trace": "noise-trace"}


def _texts(args):
    if getattr(args, "clean_prompt", None) is not None or getattr(args, "clean_file", None) is not None:
        from .causal import pair_text

        return [pair_text(args, "clean"), pair_text(args, "corrupt")]
    if getattr(args, "corpus_file", None) is not None:
        from .projection import read_texts

        return read_texts(args)
    from .common import read_prompt

    return read_prompt(args)


def save_if_asked(args) -> None:
    """After a command that succeeded: its recorded results as a run named ``--save``; says where on stderr."""
    import sys

    from ..runs import Run, RunStore
    from ..views import VIEWS

    recording = vars(args).get("recording")
    if recording is None:
        return
    if not recording.calls:
        raise LensError(f"the {args.command} command computed nothing to save")
    if vars(args).get("saved_view") is not None:  # a suite: its view, the suite as JSONL, and its options
        from ..views.suites import suite_prompts

        view, texts, params = args.saved_view
        prompts = suite_prompts(texts)
    else:
        view = args.view if args.command == "export" else COMMAND_VIEWS.get(args.command, args.command)
        if view == "rollout" and getattr(args, "flow", False):
            view = "flow"
        params = {}
        if view in VIEWS:
            params = {k: getattr(args, k) for k in VIEWS[view].params if getattr(args, k, None) is not None}
        texts = _texts(args)
        prompts = [texts] if isinstance(texts, str) else texts
    info = recording.info()
    run = RunStore().save(Run(
        id=None, name=vars(args)["save_name"], view=view, model=info.name, fingerprint=info.fingerprint, texts=texts,
        token_ids=[recording.token_ids(t) for t in prompts],
        params=params, info=info, calls=recording.calls, note=args.note or ""))
    print(f"saved as run {run.id} ({run.name!r}) in {RunStore().path}", file=sys.stderr)


def cmd_list(args) -> int:
    from ..runs import RunStore

    runs = RunStore().list(text=args.text or "", model=args.model or "", view=args.view or "")
    if args.json:
        print(json.dumps([{k: r[k] for k in ("id", "name", "view", "model", "created", "note")} for r in runs],
                         ensure_ascii=False))
        return 0
    if not runs:
        print("no saved runs")
    for r in runs:
        print(f"{r['id']:>5}  {r['created']}  {r['view']:<16} {r['model']:<16} {r['name']}")
    return 0


def cmd_show(args) -> int:
    from ..runs import RunStore
    from ..serialize import to_json_dict

    run = RunStore().get(args.id)
    shown = [to_json_dict(r) for r in run.results]
    if run.view == "suite" and run.results:  # the suite command's --json, made from the saved per-prompt numbers
        from ..suites.aggregate import aggregate
        from ..suites.table import suite_json

        result, by = run.results[0], run.params.get("by")
        shown = [suite_json(result, aggregate(result), aggregate(result, by) if by else None)]
    out = {"id": run.id, "name": run.name, "view": run.view, "model": run.model, "fingerprint": run.fingerprint,
           "texts": run.texts, "token_ids": run.token_ids, "params": run.params, "note": run.note,
           # the command's own --json: its one result (a view drawn from several gives them as a list)
           "result": shown[0] if len(shown) == 1 else shown}
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"run {run.id}: {run.name}\nview {run.view} · model {run.model} · {len(run.results)} result(s)")
    if run.view in ("suite", "pair-suite"):  # the suite's JSONL: its size, not every line
        print(f"suite: {len(run.texts.splitlines())} items (runs show {run.id} --json gives them under texts)")
    else:
        print(f"texts: {json.dumps(run.texts, ensure_ascii=False)}")
    print(f"options: {json.dumps(run.params, ensure_ascii=False)}")
    if run.note:
        print(f"note: {run.note}")
    return 0


def cmd_note(args) -> int:
    from ..runs import RunStore

    RunStore().set_note(args.id, args.text)
    print(f"run {args.id}: note saved")
    return 0


def cmd_delete(args) -> int:
    from ..runs import RunStore

    RunStore().delete(args.id)
    print(f"run {args.id} deleted")
    return 0


def register(sub) -> None:
    p = sub.add_parser("runs", help="saved runs: list, show, note, delete (LAYERLENS_RUNS names the database)")
    runs = p.add_subparsers(dest="runs_command", required=True)
    ls = runs.add_parser("list", help="the saved runs, newest first")
    ls.add_argument("--text", default=None, help="only runs whose name, texts or note contain this")
    ls.add_argument("--model", default=None)
    ls.add_argument("--view", default=None)
    ls.add_argument("--json", action="store_true", help="print one JSON list")
    ls.set_defaults(func=cmd_list)
    show = runs.add_parser("show", help="one saved run, with its result")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print one JSON object (the result under 'result')")
    show.set_defaults(func=cmd_show)
    note = runs.add_parser("note", help="set a run's note")
    note.add_argument("id", type=int)
    note.add_argument("text")
    note.set_defaults(func=cmd_note)
    delete = runs.add_parser("delete", help="delete a saved run")
    delete.add_argument("id", type=int)
    delete.set_defaults(func=cmd_delete)
