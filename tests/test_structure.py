"""The house rules, checked on the code itself: layers without cycles, a backend without streamlit,
a front end without torch, architecture knowledge in one table, and a README that names real folders."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
LENS = ROOT / "lens"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (relative imports resolved), optionally only at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            for a in node.names:  # ``from . import cli`` imports a submodule
                out.add(f"{mod}.{a.name}")
    return out


def lens_files() -> list[Path]:
    return sorted(LENS.rglob("*.py"))


def test_no_import_cycles_inside_lens():
    names = {module_name(p) for p in lens_files()}
    g = nx.DiGraph()
    for p in lens_files():
        me = module_name(p)
        g.add_node(me)
        for m in imports(p):
            if m in names and m != me and not me.startswith(m + "."):  # a package's own __init__ is not a cycle
                g.add_edge(me, m)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, cycles


def test_the_backend_never_imports_streamlit():
    for p in lens_files():
        assert not any(m.split(".")[0] == "streamlit" for m in imports(p)), p


def _front_end_lens_modules() -> set[str]:
    """The lens modules that app.py, pages/ and ui/ import at module level."""
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]
    mods = set()
    for f in files:
        mods |= {m for m in imports(f, top_level_only=True) if m.split(".")[0] in ("lens", "ui")}
    return {m for m in mods if (ROOT / (m.replace(".", "/") + ".py")).exists()
            or (ROOT / m.replace(".", "/") / "__init__.py").exists()}


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_front_end_imports_no_torch():
    """Pages draw from typed results through the Backend interface: importing what they import loads
    neither torch nor transformers (the model is loaded on first use, behind ui.backends)."""
    mods = sorted(_front_end_lens_modules())
    assert "lens.figures.logit_lens" in mods and "ui.state" in mods, mods
    code = ("import sys, importlib\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
            "print(','.join(heavy))")
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"the front end imports {r.stdout.strip()}"


def test_listing_models_imports_no_torch():
    r = _run_python("import sys\nfrom lens.cli import main\nmain(['models'])\n"
                    "print('HEAVY' if 'torch' in sys.modules or 'transformers' in sys.modules else 'LIGHT')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("LIGHT") and "smollm2-135m" in r.stdout


def _model_type_tests(path: Path) -> list[int]:
    """Lines that compare a ``model_type`` (== / in / startswith): architecture knowledge."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def is_model_type(n) -> bool:
        return (isinstance(n, ast.Attribute) and n.attr == "model_type") or (isinstance(n, ast.Name) and n.id == "model_type")

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(is_model_type(x) for x in [node.left, *node.comparators]):
            lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("startswith", "endswith") and is_model_type(node.func.value)):
            lines.append(node.lineno)
    return lines


def test_architecture_knowledge_lives_in_the_table_only():
    from lens.model.architectures import SPECS

    allowed = {LENS / "model" / "architectures.py"}
    files = [*lens_files(), ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]
    found = {str(p.relative_to(ROOT)): _model_type_tests(p) for p in files if p not in allowed}
    assert not {k: v for k, v in found.items() if v}, found
    # No other file names an architecture in a string ("gpt2", "bert", ...), except in messages and docs.
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, SPECS)))
    for p in files:
        if p in allowed:
            continue
        hits = [i + 1 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines())
                if pattern.search(line) and not line.lstrip().startswith("#")]
        assert not hits, f"{p.relative_to(ROOT)} names an architecture on lines {hits}"


def test_readme_layout_table_matches_the_folders():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^\| `([^`]+)`", section, re.M)
    assert paths, "the README has no Layout table"
    for entry in paths:
        for p in re.split(r"`, `", entry):
            assert (ROOT / p.rstrip("/")).exists(), f"README names {p}, which does not exist"
    named = " ".join(paths)
    for sub in sorted(d.name for d in LENS.iterdir() if d.is_dir() and not d.name.startswith("__")):
        assert f"lens/{sub}/" in named, f"lens/{sub}/ is missing from the README's Layout table"


def test_the_benchmark_imports_and_knows_every_step():
    """bench/ runs only by hand (make bench): at least its modules must import and name real lens modules."""
    r = _run_python("import importlib\nimport bench.__main__ as m, bench.steps as s, bench.browser, bench.worker\n"
                    "missing = [mod for st in s.STEPS for mod in st.modules if importlib.util.find_spec(mod) is None]\n"
                    "print(len(s.STEPS), missing)")
    assert r.returncode == 0, r.stderr
    n, missing = r.stdout.split(" ", 1)
    assert int(n) >= 8 and missing.strip() == "[]", r.stdout
