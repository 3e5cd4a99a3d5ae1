"""A view as code that runs as it is: a Python script that prints the view's numbers as JSON, and a Jupyter
notebook that computes them and draws the chart.

Nothing is hidden: the model, the exact texts and every option are written out as Python literals, and the
numbers come from the same backend call the dashboard and ``python -m lens`` make (``lens.views.render_view``
names the view's calls; a view's JSON is ``lens.serialize.to_json_dict`` of its result, as ``--json`` prints
it). With LayerLens installed (``pip install -e .`` in the checkout) a script runs from any folder.
"""
from __future__ import annotations

import json

from .views import view_named

FORMATS = {".py": "python", ".ipynb": "ipynb"}


def _settings(view: str, model: str, texts, params: dict) -> str:
    v = view_named(view)
    given = {k: params[k] for k in v.params if k in params}
    what = ("the prompt" if isinstance(texts, str) else
            "the clean prompt, then the corrupted one" if len(texts) == 2 and v.reads == "two prompts" else
            "the texts, each run on its own")
    return (f"MODEL = {model!r}\n"
            f"TEXTS = {texts!r}  # {what}\n"
            f"VIEW = {view!r}  # {v.title}\n"
            f"OPTIONS = {given!r}  # as shown; the view's defaults: {v.params!r}\n")


COMPUTE = '''backend = local_backend(load_model(MODEL), None)  # None: no result cache, every number computed here
view = render_view(backend, VIEW, TEXTS, **OPTIONS)
numbers = [to_json_dict(result) for result in view.results]
'''

IMPORTS = '''import json

from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.serialize import to_json_dict
from lens.views import render_view
'''

PRINT = '''# One result: the same JSON object as `python -m lens … --json`; several: a list of them.
print(json.dumps(numbers[0] if len(numbers) == 1 else numbers, ensure_ascii=False))
'''


def python_script(view: str, model: str, texts, params: dict) -> str:
    """A script that recomputes view ``view`` of ``model`` on ``texts`` with ``params`` and prints its JSON."""
    title = view_named(view).title
    return (f'"""LayerLens: {title} of {model}, as the dashboard showed it.\n\n'
            "Run it with the Python that runs LayerLens: python this_file.py (it prints the numbers as JSON).\n"
            '"""\n' + IMPORTS + "\n" + _settings(view, model, texts, params) + "\n" + COMPUTE + PRINT)


def notebook(view: str, model: str, texts, params: dict) -> str:
    """The same as a Jupyter notebook (nbformat 4): settings, numbers, and the figure drawn."""
    title = view_named(view).title

    def cell(kind: str, source: str) -> dict:
        out = {"cell_type": kind, "metadata": {}, "source": source.strip("\n").splitlines(keepends=True)}
        if kind == "code":
            out.update(execution_count=None, outputs=[])
        return out

    cells = [
        cell("markdown", f"# {title} of {model}\nComputed by LayerLens, as the dashboard showed it. Run the cells "
                         "top to bottom with the Python that runs LayerLens."),
        cell("code", IMPORTS),
        cell("code", _settings(view, model, texts, params)),
        cell("code", COMPUTE),
        cell("code", PRINT),
        cell("markdown", "The chart, drawn by the same figure builder as the dashboard:"),
        cell("code", "for figure in view.figures:\n    figure.show()\n"),
    ]
    book = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}
    for i, c in enumerate(book["cells"]):
        c["id"] = f"cell-{i}"
    return json.dumps(book, ensure_ascii=False, indent=1)


def code_for(rendered, fmt: str) -> str:
    """``python_script`` or ``notebook`` of a rendered view (lens.views.RenderedView)."""
    make = python_script if fmt == "python" else notebook
    return make(rendered.view.name, rendered.model, rendered.texts, rendered.params)
