"""Shared fixtures: tiny models of every architecture, the bundled model, and an
independent float64 reference for the logit lens."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

# Before PyTorch loads OpenMP: its threads sleep when they have no work instead of spinning. With pytest's
# workers, the servers and model workers they start and Chromium all sharing the cores, the spinning threads took
# the CPU from the ones computing: the compute-heavy test modules ran 4.4× slower side by side than with this
# (199 s against 45 s for four modules on 2 workers, 2 cores). Numbers are unchanged: only how threads wait.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

warnings.filterwarnings("ignore")
# As the CLI sets them before transformers loads (commands run in this process too: tests/command.py).
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _session_cache() -> Path:
    """A results cache of the test session's own (in-process pages, servers and CLI runs alike), with the
    converted models shared from the real cache/models: nothing a test computes lands in cache/results.

    One folder for the whole session, pytest-xdist's workers included: the process that loads this first (the
    controller) makes it and removes it at its exit, and the workers it starts inherit its name. A chart one
    worker's pages or servers computed is then read, not computed again, by another's (the room test's server and
    the in-process page tests draw many of the same screens). The cache is made for several processes at once:
    atomic writes, a vanished entry a miss (lens/cache.py)."""
    import atexit
    import shutil
    import tempfile

    inherited = os.environ.get("LAYERLENS_TEST_SESSION_CACHE")
    if inherited and Path(inherited).is_dir():
        return Path(inherited)
    root = Path(tempfile.mkdtemp(prefix="layerlens-tests-"))
    os.environ["LAYERLENS_TEST_SESSION_CACHE"] = str(root)
    models = REPO_ROOT / "cache" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(models, target_is_directory=True)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


# Shared by pytest-xdist's workers (above). (Workers keep torch's own thread count: the CLI, exported scripts and
# the model worker they start compute with it too, so their numbers are bit for bit the in-process ones.)
TEST_CACHE = _session_cache()
os.environ["LAYERLENS_CACHE"] = str(TEST_CACHE)

from lens.model.adapters import adapt  # noqa: E402
from lens.options import FitOptions  # noqa: E402
from lens.model.tiny import tiny_model  # noqa: E402
from lens.engine.hooks import HookEngine  # noqa: E402
from lens.engine.trace import CaptureSpec, capture  # noqa: E402
from shown import as_shown

# A prompt whose byte tokens repeat ("e" several times) so targets and next tokens are interesting.
TINY_PROMPT = "hello there, the end; see me here"


@pytest.fixture(scope="session")
def tiny():
    """``tiny(arch)`` -> (model, tokenizer, adapter), built once per architecture.

    Tests that mutate a model must build their own with ``lens.model.tiny.tiny_model``.
    """
    built: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in built:
            model, tok = tiny_model(arch)
            built[arch] = (model, tok, adapt(model))
        return built[arch]

    return get


@pytest.fixture(scope="session")
def tiny_trace(tiny):
    """``tiny_trace(arch, prompt)`` -> (trace, tokenizer), the residual stream of ``prompt``."""
    done: dict[tuple, tuple] = {}

    def get(arch: str, prompt: str = TINY_PROMPT):
        if (arch, prompt) not in done:
            model, tok, adapter = tiny(arch)
            ids = tok(prompt)["input_ids"]
            trace = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=True), model_name=f"tiny-{arch}",
                            tokens=[as_shown(tok, i) for i in ids])
            done[(arch, prompt)] = (trace, tok)
        return done[(arch, prompt)]

    return get


def reference_lens(adapter, residual: torch.Tensor, token_ids: list[int], k: int,
                   target_id: int | None = None) -> dict[str, np.ndarray]:
    """The logit lens done the plain way: every row's full logits, log-softmax in float64."""
    with torch.no_grad():
        logits32 = adapter.readout(residual)  # [R, T, V]
    logits = logits32.double()
    R, T, V = logits.shape
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    kl = (p[-1].unsqueeze(0) * (logp[-1].unsqueeze(0) - logp)).sum(-1)
    top_p, top_i = p.topk(k, dim=-1)
    if target_id is None:
        tgt = logits[-1].argmax(-1)
    else:
        tgt = torch.full((T,), target_id, dtype=torch.long)
    idx = tgt.view(1, T, 1).expand(R, T, 1)
    z_t = logits.gather(-1, idx)
    eps = 1e-5  # float32 logits computed in another order may differ in the last bits
    rank_lo = (logits > z_t + eps).sum(-1) + 1
    rank_hi = (logits > z_t - eps).sum(-1) + 1
    rank = (logits > z_t).sum(-1) + 1
    t_prob = p.gather(-1, idx)[..., 0]
    next_loss = torch.full((R, T), float("nan"), dtype=torch.float64)
    ids = torch.tensor(token_ids)
    for t in range(T - 1):
        next_loss[:, t] = -logp[:, t, ids[t + 1]]
    return {
        "logits": logits.numpy(), "logp": logp.numpy(), "p": p.numpy(),
        "entropy": entropy.numpy(), "kl": kl.numpy(), "top_p": top_p.numpy(), "top_i": top_i.numpy(),
        "target_ids": tgt.numpy(), "rank": rank.numpy(), "rank_lo": rank_lo.numpy(),
        "rank_hi": rank_hi.numpy(), "target_prob": t_prob.numpy(), "next_loss": next_loss.numpy(),
    }


def assert_topk_matches(top_ids: np.ndarray, top_probs: np.ndarray, ref: dict, atol: float = 1e-5,
                        cols: slice = slice(None)) -> None:
    """Top-k ids and probabilities of the lens against the reference.

    Ids must match exactly except where the reference itself has a near tie.
    """
    ref_p = ref["top_p"][:, cols]
    ref_i = ref["top_i"][:, cols]
    full_p = ref["p"][:, cols]
    np.testing.assert_allclose(top_probs, ref_p, atol=atol, rtol=0)
    # The probability the reference gives to each id the lens picked equals what the lens says.
    picked = np.take_along_axis(full_p, top_ids, axis=-1)
    np.testing.assert_allclose(top_probs, picked, atol=atol, rtol=0)
    mismatch = top_ids != ref_i
    if mismatch.any():
        # Only allowed within a near tie of the reference's own probabilities.
        assert np.all(np.abs(picked[mismatch] - ref_p[mismatch]) < atol), "top-k ids differ beyond ties"
    assert np.all(np.diff(top_probs, axis=-1) <= 1e-7), "top-k probabilities are not in decreasing order"


@pytest.fixture(scope="session")
def reference():
    return reference_lens


@pytest.fixture(scope="session")
def topk_matches():
    return assert_topk_matches


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(args, cache_dir, **kw)``: ``python -m lens ARGS`` from the repository root."""

    def run(args, cache_dir, timeout: float = 300, extra_env: dict | None = None):
        env = dict(os.environ)
        env["LAYERLENS_CACHE"] = str(cache_dir)
        if not (Path(cache_dir) / "models").exists():  # reuse the converted models
            (Path(cache_dir) / "models").symlink_to(TEST_CACHE / "models", target_is_directory=True)
        env.pop("LAYERLENS_DEBUG", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.update(extra_env or {})
        return subprocess.run([sys.executable, "-m", "lens", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def bundled():
    """The real bundled model, loaded once (converted into cache/ on first use)."""
    from lens.model.loading import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def backend(bundled):
    """A backend on the bundled model with no results cache (every call computes): what the page tests compare a
    page's charts with. One for the session; a module needing another kind defines its own ``backend``."""
    from lens.engine_backend import local_backend

    return local_backend(bundled, None)


@pytest.fixture(scope="session")
def bundled_linear_lens(tmp_path_factory):
    """A backend on the bundled model whose linear-shortcut lens is fitted on the first quarter of the shipped
    corpus (about 25 s, once per test session; stored in the session's own cache, where pages run in-process
    and the browser tests' servers find it too). The full corpus's fit is measured by python -m bench --lenses."""
    from lens.fitted.corpus import SHIPPED_FILE, read_jsonl, write_jsonl
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    texts = read_jsonl(SHIPPED_FILE)
    part = tmp_path_factory.mktemp("corpus") / "shipped-quarter.jsonl"
    write_jsonl(part, texts[: len(texts) // 4])
    backend = local_backend(load_model("smollm2-135m"))
    backend.fit_lens(FitOptions("linear", corpus_file=str(part)))
    return backend


@pytest.fixture
def cli(monkeypatch):
    """``python -m lens ARGS`` in this process (tests/command.py), as (returncode, stdout, stderr); ``env`` is set
    from the call to the test's end (e.g. a cache folder of its own, that the test's own backends then use too)."""
    from command import lens_command

    def run(*args, env=None):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, str(v))
        return lens_command(*args)
    return run


def lens_page(prompt: str = "The capital of France is", **params):
    """The logit-lens page run in-process (AppTest) as a first visit with these URL query parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=300)
    at.switch_page("pages/logit_lens.py")
    at.query_params["prompt"] = prompt
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def pytest_collection_modifyitems(items):
    """The room test (every screen at both sizes, the longest module by far) first, then the other browser tests
    (a server and Chromium each: the next longest), then the in-process page tests, then the rest, so that with
    parallel workers (``make test`` runs ``pytest -n --dist loadfile --no-loadscope-reorder``: one module per worker
    at a time, in this order) the long modules run beside the short ones instead of after them. A stable sort keeps
    every file's tests in their order."""
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        if name == "test_browser_room.py":
            return 0
        return 1 if name.startswith("test_browser") else 2 if name.endswith("_page.py") else 3
    items.sort(key=rank)


@pytest.fixture
def widget_state_warnings(monkeypatch):
    """Streamlit's warning for a widget given a default while its key is set through session state, as it would be
    logged by a server (in process it is checked only with a runtime, and only once a process): collected here."""
    from types import SimpleNamespace

    from streamlit.elements.lib import policies

    said = []
    monkeypatch.setattr(policies, "runtime", SimpleNamespace(exists=lambda: True))
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    monkeypatch.setattr(policies, "_LOGGER", SimpleNamespace(warning=lambda msg, *a, **k: said.append(msg % a if a
                                                                                                     else msg)))
    return said

