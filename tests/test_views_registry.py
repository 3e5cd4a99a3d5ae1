"""The registry of pages and views (lens.views) is the one place they are described: every entry is
complete, every page file has an entry, the explanations are written there and nowhere in the front end,
and every view renders by name."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.views import PAGES, SECTIONS, VIEWS, render_view, sections
from lens.views.entry import SUITE, TEXTS, TWO_PROMPTS

ROOT = Path(__file__).resolve().parent.parent
FRONT_END = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]


def test_every_view_has_a_renderer_and_an_explanation():
    for name, view in VIEWS.items():
        assert view.name == name and view.title and view.about and all(p.strip() for p in view.about), name
        assert callable(view.render), name
        # The renderer takes exactly the options the entry declares (its defaults live in the entry).
        options = {p.name for p in inspect.signature(view.render).parameters.values() if p.kind == p.KEYWORD_ONLY}
        assert options == set(view.params), name


def test_every_page_file_has_an_entry_and_every_view_a_page():
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py")}
    assert files == {p.file for p in PAGES.values()}
    for view in VIEWS.values():
        assert view.path in PAGES, view.name
        assert view.section == PAGES[view.path].section, view.name
    for page in PAGES.values():
        assert page.section in SECTIONS and page.title and page.summary and page.icon, page.path
        assert bool(page.explainer) == (page.path != "tour"), page.path  # the tour's stories are its own explanation
    assert [p for ps in sections().values() for p in ps] == sorted(PAGES.values(), key=lambda p: SECTIONS.index(p.section))


def _sentences(text: str) -> list[str]:
    """The sentences of an explanation, markdown marks and line breaks taken out."""
    plain = re.sub(r"[*`]", "", re.sub(r"\s+", " ", text))
    return [s.strip() for s in re.split(r"(?<=[.:;!?])\s", plain) if len(s.strip()) >= 40]


def _strings(path: Path) -> str:
    """Every string constant in a source file, as one normalised text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return re.sub(r"[*`]", "", re.sub(r"\s+", " ", "\n".join(parts)))


def test_explanations_are_written_in_the_registry_only():
    texts = [p for v in VIEWS.values() for p in v.about] + [p.explainer for p in PAGES.values()]
    sentences = {s for t in texts for s in _sentences(t)}
    assert len(sentences) > 40
    for path in FRONT_END:
        source = _strings(path)
        copied = sorted(s for s in sentences if s in source)
        assert not copied, f"{path.relative_to(ROOT)} repeats the registry's text: {copied[:3]}"


def _texts(view):
    return {TEXTS: ["the bank of the river", "money in the bank"],
            TWO_PROMPTS: ["The cat sat on", "The dog ran on"],
            # A suite of two pairs (one-character targets: the tiny models read characters).
            SUITE: '{"clean": "The cat sat on", "corrupt": "The dog ran on", "target": "t", "foil": "a", "g": "x"}\n'
                   '{"clean": "A cat sat by", "corrupt": "A dog ran by", "target": "e", "foil": "o", "g": "y"}\n',
            }.get(view.reads, "hello there, the end; see me here")


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])
def test_every_view_renders_by_name(model):
    backend = local_backend(load_model(model), None)
    for name, view in VIEWS.items():
        given = {"target": "t", "foil": "a"} if view.reads == TWO_PROMPTS else {}
        rendered = render_view(backend, name, _texts(view), **given)
        assert rendered.view is view and rendered.figures and rendered.results and rendered.caption, name
        assert rendered.params == {**view.params, **given}, name
