"""Hosting settings (lens/hosting.py) and demo mode in the pages: the allowlist, the prompt cap,
refused links, no remote code. The pages run in-process (AppTest) with a demo Hosting."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lens.errors import LensError
from lens.hosting import DEMO_LIMITS, Hosting, Limits, read_hosting

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")


def test_open_by_default(tmp_path):
    h = read_hosting(env={}, path=tmp_path / "none.toml")
    assert not h.demo and h.models == () and h.limits == Limits() and h.rate_per_minute is None
    assert h.check_model("/anything") == "/anything"


def test_demo_from_the_environment_offers_the_bundled_models(tmp_path):
    h = read_hosting(env={"LAYERLENS_DEMO": "1"}, path=tmp_path / "none.toml")
    assert h.demo and h.limits == DEMO_LIMITS and h.limits.max_prompt_tokens == 512
    assert "smollm2-135m" in h.models and h.rate_per_minute == 30
    with pytest.raises(LensError, match=r"does not offer the model '/etc'; it offers smollm2-135m"):
        h.check_model("/etc")
    assert read_hosting(env={"LAYERLENS_DEMO": "0"}, path=tmp_path / "none.toml").demo is False


def test_a_config_file_section_sets_everything_and_the_environment_wins(tmp_path):
    cfg = tmp_path / "layerlens.toml"
    cfg.write_text('[layerlens]\ndemo = true\nmodels = ["tiny-llama", "smollm2-135m"]\nmax_prompt_tokens = 64\n'
                   'rate_per_minute = 5\nmax_loaded_models = 1\n')
    h = read_hosting(env={}, path=cfg)
    assert h.models == ("tiny-llama", "smollm2-135m") and h.limits.max_prompt_tokens == 64
    assert h.limits.max_corpus_texts == DEMO_LIMITS.max_corpus_texts and h.rate_per_minute == 5
    assert h.max_loaded_models == 1
    h = read_hosting(env={"LAYERLENS_DEMO_MODELS": "tiny-gpt2", "LAYERLENS_CONFIG": str(cfg)})
    assert h.models == ("tiny-gpt2",)


@pytest.mark.parametrize("text, message", [
    ("[layerlens]\nmax_prompt_tokens = 0\n", "max_prompt_tokens must be a whole number ≥ 2, not 0"),
    ("[layerlens]\nmax_prompt_tokens = 'lots'\n", "max_prompt_tokens must be a whole number"),
    ("[layerlens]\nmodles = []\n", "unknown .layerlens. settings modles"),
    ("[layerlens]\nmodels = 'smollm2-135m'\n", "models must be a list"),
    ("[layerlens]\ndemo = true\nmodels = []\n", "demo mode needs at least one model"),
    ("[layerlens\n", "cannot read the hosting settings"),
])
def test_wrong_settings_are_named(tmp_path, text, message):
    cfg = tmp_path / "layerlens.toml"
    cfg.write_text(text)
    with pytest.raises(LensError, match=message):
        read_hosting(env={}, path=cfg)


def test_the_cli_refuses_remote_code_in_demo_mode():
    env = {**__import__("os").environ, "LAYERLENS_DEMO": "1"}
    out = subprocess.run([sys.executable, "-m", "lens", "logit-lens", "--model", "tiny-llama", "--prompt", "hi",
                          "--trust-remote-code"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: remote code cannot run on a demo server (LAYERLENS_DEMO): leave out --trust-remote-code"]


def test_the_model_layer_does_not_read_the_hosting_policy():
    # The policy is the app's and the CLI's; lens/model loads what it is asked to.
    import ast

    for path in sorted((REPO / "lens" / "model").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert "hosting" not in (node.module or "") and all(a.name != "hosting" for a in node.names), path
            elif isinstance(node, ast.Import):
                assert not any("hosting" in a.name for a in node.names), path


# ---- the pages in demo mode --------------------------------------------------------

DEMO = Hosting(demo=True, models=("smollm2-135m", "tiny-llama"), limits=Limits(max_prompt_tokens=12))


@pytest.fixture
def demo(monkeypatch):
    import lens.model.loading as loading
    import ui.backends as backends
    import ui.state as state

    monkeypatch.setattr(backends, "HOSTING", DEMO)
    monkeypatch.setattr(state, "HOSTING", DEMO)
    monkeypatch.setattr(backends, "_loaded", type(backends._loaded)())
    monkeypatch.setattr(backends, "_loading", {})
    asked = []
    real = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda ref=None, **k: asked.append(ref) or real(ref, **k))
    return asked


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("model", ["/etc", "../../", "/nonexistent", "gpt2", "/root/x.gguf"])
def test_a_link_to_a_model_off_the_list_is_refused_and_nothing_is_read(demo, model, monkeypatch):
    import os

    looked = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: looked.append(str(p)) or real_stat(p, *a, **k))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = model
    at.query_params["prompt"] = "Hello"
    run(at)
    warning = " ".join(w.value for w in at.warning)
    assert f"does not offer the model {model!r}; it offers smollm2-135m, tiny-llama" in warning
    assert "Showing smollm2-135m instead" in warning
    assert at.sidebar.selectbox(key="model").options == ["smollm2-135m", "tiny-llama"]
    assert demo == ["smollm2-135m"]  # only the allowed default was loaded
    assert not any(p.rstrip("/").endswith(model.strip("./")) for p in looked if model.strip("./"))
    assert not at.error


def test_an_allowed_model_in_a_link_is_used(demo):
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = "tiny-llama"
    at.query_params["prompt"] = "Hello"
    run(at)
    assert not at.warning and demo == ["tiny-llama"]
    assert any("tiny-llama" in c.value for c in at.caption)


def test_a_prompt_over_the_cap_is_refused_with_nothing_computed(demo, monkeypatch):
    import lens.engine_backend as backend_mod

    computed = []
    monkeypatch.setattr(backend_mod, "logit_lens", lambda *a, **k: computed.append(1))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = "tiny-llama"
    at.query_params["prompt"] = "a prompt far longer than twelve bytes"
    run(at)
    assert any("at most 12 are allowed here" in e.value for e in at.error)
    assert computed == []


def test_a_wrong_setting_stops_the_server_with_its_name(tmp_path):
    cfg = tmp_path / "layerlens.toml"
    cfg.write_text("[layerlens]\nmax_prompt_tokens = -1\n")
    env = {**__import__("os").environ, "LAYERLENS_CONFIG": str(cfg)}
    out = subprocess.run([sys.executable, "-m", "ui.launch", "--server.headless", "true"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"LayerLens: {cfg}: max_prompt_tokens must be a whole number ≥ 2, not -1")
