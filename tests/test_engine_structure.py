"""The seams of issue-level design, checked on the code: hooks live in the engine only, the front end and
the CLI call nothing but the Backend protocol, no private name crosses a module, no mixins, no method
replaced at run time."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENS = ROOT / "lens"


def _py(*parts: str) -> list[Path]:
    out = []
    for part in parts:
        p = ROOT / part
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def test_only_the_engine_places_hooks_or_traces():
    pattern = re.compile(r"register_forward_(pre_)?hook|register_full_backward_hook|\.register_hook\(|\b(nnm?|model|llm)\.trace\(")
    for p in _py("lens"):
        if p.parent.name == "engine":
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            assert not pattern.search(line), f"{p.relative_to(ROOT)}:{i} places a hook outside lens/engine/: {line.strip()}"


def test_pages_and_the_cli_call_only_the_backend_protocol():
    from lens.backend import Backend

    members = {n for n in vars(Backend) if not n.startswith("_")}
    call = re.compile(r"\bbackend(?:\(args\))?\.([A-Za-z_]+)\(")
    cli_local = re.compile(r"\bb\.([A-Za-z_]+)\(")
    seen = set()
    for p in _py("app.py", "pages", "ui", "lens/cli") + sorted(LENS.glob("view*")) + [LENS / "tour.py", LENS / "export.py"]:
        if p.is_dir():
            continue
        text = p.read_text(encoding="utf-8")
        names = set(call.findall(text)) | (set(cli_local.findall(text)) if "cli" in p.parts else set())
        extra = names - members
        assert not extra, f"{p.relative_to(ROOT)} calls {sorted(extra)}, which the Backend protocol does not declare"
        seen |= names
    assert {"logit_lens", "patch", "patched_lens", "ablated_lens", "compare_with"} <= seen  # the test reads real calls


def test_no_private_name_is_imported_across_modules():
    for p in _py("lens", "ui", "pages", "app.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{p.relative_to(ROOT)} imports private {private} from {node.module}"


def test_no_mixins_and_no_methods_replaced_at_run_time():
    allowed_bases = {"Protocol", "Exception", "BaseException", "LensError", "ValueError", "RuntimeError"}
    for p in _py("lens"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                assert len([b for b in bases if b not in allowed_bases]) <= 1, f"{p.name}: {node.name}{bases}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args:
                assert ast.unparse(node.args[0]) != "self", f"{p.relative_to(ROOT)} replaces a method of self"
