"""``python -m lens ARGS`` run in the test's own process: what the command prints, its exit code, no interpreter,
PyTorch or transformers start-up per call (3–5 s each under the suite's load). The commands that must be a
process of their own (start-up time, imports, a cache read without torch) run as one, with ``run_cli``."""
from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace


def lens_command(*args: str) -> SimpleNamespace:
    """(returncode, stdout, stderr) of ``python -m lens ARGS``."""
    from lens.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # the argument parser's refusals, as the process would exit
            code = exc.code if isinstance(exc.code, int) else 2
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
