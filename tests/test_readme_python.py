"""The README's "From Python" example runs as written, on the bundled model."""
from __future__ import annotations

import re
from pathlib import Path

import torch


def test_the_readme_python_example_runs_as_written(bundled):
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    out, ids = scope["out"], scope["ids"]
    assert out.reads["resid_post.8"].shape == (1, len(ids), 576) == out.grads["resid_post.8"].shape
    assert scope["lens"].top_tokens[-1][-1][0] == " Paris"
    assert out.metric < 0 and torch.isfinite(out.grads["resid_post.8"]).all()  # a log-probability and its gradient
