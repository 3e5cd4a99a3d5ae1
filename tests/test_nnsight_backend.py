"""The nnsight engine: every number equal to the hook engine's, on a tiny model of every decoder architecture and on
the bundled model (the CLI too); remote runs that cannot happen fail in one line; a model spread by a
device map gives the same lens."""
from __future__ import annotations

from lens.options import ContributionOptions, FlowOptions, HeadOptions
import json
import time

import numpy as np
import pytest

from lens.errors import LensError
from lens.engine_backend import local_backend
from lens.model.loading import load_model
from lens.model.registry import TINY_ARCHS
from lens.engine_backend import nnsight_backend
from lens.options import LensOptions, ProjectionOptions


PROMPT = "hello there, the end; see me here"


def assert_same_lens(x, y, atol=2e-5):
    np.testing.assert_allclose(x.top_probs, y.top_probs, atol=atol)
    np.testing.assert_allclose(x.entropy, y.entropy, atol=atol * 5)
    np.testing.assert_allclose(x.kl_to_final, y.kl_to_final, atol=atol * 5)
    np.testing.assert_allclose(x.target_prob, y.target_prob, atol=atol)
    np.testing.assert_allclose(x.next_token_loss, y.next_token_loss, atol=atol * 5)
    assert (x.top_ids == y.top_ids).all() and (x.target_rank == y.target_rank).all()
    assert x.exit_layer == y.exit_layer and x.top_tokens == y.top_tokens and x.final_prediction == y.final_prediction
    assert x.layers == y.layers and x.positions == y.positions and x.tokens == y.tokens


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_every_view_equals_the_local_backend(arch):
    lm = load_model(f"tiny-{arch}")
    local, nn = local_backend(lm), nnsight_backend(lm)
    assert_same_lens(local.logit_lens(PROMPT, LensOptions(top_k=4)), nn.logit_lens(PROMPT, LensOptions(top_k=4)))
    window = LensOptions(top_k=2, target="e", positions=(3, 9))
    assert_same_lens(local.logit_lens(PROMPT, window), nn.logit_lens(PROMPT, window))
    np.testing.assert_allclose(local.rollout(PROMPT).rollout, nn.rollout(PROMPT).rollout, atol=1e-6)
    np.testing.assert_allclose(local.attention_flow(PROMPT, FlowOptions(layers=[3])).flow, nn.attention_flow(PROMPT, FlowOptions(layers=[3])).flow,
                               atol=1e-5)
    np.testing.assert_allclose(local.head_patterns(PROMPT, HeadOptions(2)).attention, nn.head_patterns(PROMPT, HeadOptions(2)).attention, atol=1e-6)
    a, b = local.head_summary(PROMPT), nn.head_summary(PROMPT)
    np.testing.assert_allclose(a.induction, b.induction, atol=1e-6)
    np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-5)
    pa, pb = local.projection(PROMPT, ProjectionOptions()), nn.projection(PROMPT, ProjectionOptions())
    np.testing.assert_allclose(np.abs(pa.coords), np.abs(pb.coords), atol=1e-4)  # PCA signs may flip
    if lm.adapter.supports_routes:
        ga, gb = local.route_graph(PROMPT), nn.route_graph(PROMPT)
        np.testing.assert_allclose(ga.edge_importance, gb.edge_importance, atol=1e-5)
        ca, cb = local.contributions(PROMPT, ContributionOptions(2)), nn.contributions(PROMPT, ContributionOptions(2))
        np.testing.assert_allclose(ca.heads, cb.heads, atol=1e-5)


def test_bundled_model_lens_and_rollout_from_the_cli_equal_the_local_backend(tmp_path, cli):
    prompt = tmp_path / "p.txt"
    prompt.write_text("The Eiffel Tower is located in the city of", encoding="utf-8")
    out = {}
    for backend in ("local", "nnsight"):
        lens = cli("logit-lens", "--prompt-file", str(prompt), "--json", "--no-cache", "--backend", backend)
        roll = cli("rollout", "--prompt-file", str(prompt), "--json", "--no-cache", "--backend", backend)
        assert lens.returncode == 0 and roll.returncode == 0, lens.stderr + roll.stderr
        out[backend] = json.loads(lens.stdout), json.loads(roll.stdout)
    (la, ra), (lb, rb) = out["local"], out["nnsight"]
    for key in ("top_probs", "entropy", "kl_to_final", "target_prob"):
        np.testing.assert_allclose(np.array(la[key], float), np.array(lb[key], float), rtol=1e-4, atol=1e-4, err_msg=key)
    assert la["top_tokens"] == lb["top_tokens"] and la["exit_layer"] == lb["exit_layer"]
    np.testing.assert_allclose(np.array(ra["rollout"]), np.array(rb["rollout"]), atol=1e-6)


def test_remote_without_a_key_or_a_network_fails_in_one_line(cli):
    no_key = cli("logit-lens", "--backend", "nnsight", "--remote", "--model", "meta-llama/Llama-3.1-8B",
                  "--prompt", "hi", env={"NDIF_API_KEY": ""})
    assert no_key.returncode == 2 and no_key.stderr.strip().count("\n") == 0 and "NDIF_API_KEY" in no_key.stderr
    t = time.time()
    closed = cli("rollout", "--backend", "nnsight", "--remote", "--model", "meta-llama/Llama-3.1-8B", "--prompt",
                  "hi", env={"NDIF_API_KEY": "not-a-real-key", "NDIF_HOST": "http://127.0.0.1:9"})
    assert closed.returncode == 2 and "cannot reach NDIF" in closed.stderr and "not-a-real-key" not in closed.stderr
    assert closed.stderr.strip().count("\n") == 0 and time.time() - t < 60
    local = cli("rollout", "--remote", "--prompt", "hi")
    assert local.returncode == 2 and "--backend nnsight" in local.stderr


def test_remote_backend_refuses_what_needs_the_weights_here():
    nn = nnsight_backend(load_model("tiny-llama"), remote=True)
    with pytest.raises(LensError, match="weights"):
        nn.route_graph(PROMPT)
    with pytest.raises(LensError, match="weights"):
        nn.generate(PROMPT)
    with pytest.raises(LensError, match="logit lens runs"):
        nn.logit_lens(PROMPT, LensOptions(lens="linear"))
    assert nn.info().source == "ndif"


def test_a_model_spread_by_a_device_map_gives_the_same_lens(tmp_path):
    from lens.model.tiny import tiny_model

    model, tok = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    plain = local_backend(load_model(str(tmp_path / "m")))
    names = ["model.embed_tokens", "model.rotary_emb", "model.layers.0", "model.layers.1", "model.layers.2",
             "model.norm", "lm_head"]
    spread = load_model(str(tmp_path / "m"), device={n: "cpu" for n in names})
    assert getattr(spread.model, "hf_device_map", None)  # loaded through accelerate's device map
    assert_same_lens(plain.logit_lens(PROMPT), local_backend(spread).logit_lens(PROMPT), atol=1e-6)
    np.testing.assert_allclose(plain.rollout(PROMPT).rollout, local_backend(spread).rollout(PROMPT).rollout, atol=1e-6)
    with pytest.raises(LensError, match="no CUDA GPU"):
        load_model("tiny-llama", device="multi")


def test_ndif_job_updates_reach_the_progress_callback():
    from types import SimpleNamespace

    from nnsight.intervention.backends.remote import RemoteBackend

    from lens.engine.ndif import ndif_status

    seen = []
    original = RemoteBackend.note
    backend = SimpleNamespace(display=SimpleNamespace(update=lambda r: None), meta=None)
    queued = SimpleNamespace(status=SimpleNamespace(name="QUEUED"), description="position 3 in line", meta=None)
    with ndif_status(lambda f, m: seen.append(m)):
        assert RemoteBackend.note(backend, queued) is False
    assert seen == ["NDIF: queued position 3 in line"] and RemoteBackend.note is original


def assert_same_fields(x, y, atol=1e-5):
    """Every field of two results equal: arrays of numbers within ``atol``, everything else exactly."""
    import dataclasses

    for f in dataclasses.fields(x):
        a, b = getattr(x, f.name), getattr(y, f.name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4, err_msg=f.name)
        elif isinstance(a, np.ndarray):
            assert a.shape == b.shape and (a == b).all(), f.name
        else:
            assert a == b, f.name


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2", "phi"])
def test_anatomy_equals_the_local_backend(arch):
    """Skipping and swapping blocks (whole-block edits: the block's input kept as it is entered, another block run
    on it outside nnsight's own count) give the hook engine's numbers, and so does every other anatomy measure."""
    from lens.anatomy.options import AnatomyOptions

    lm = load_model(f"tiny-{arch}")
    local, nn = local_backend(lm), nnsight_backend(lm)
    a, b = local.anatomy(PROMPT, AnatomyOptions(swap=True)), nn.anatomy(PROMPT, AnatomyOptions(swap=True))
    assert len(a.skip_kl) == lm.adapter.n_layers and len(a.swap_kl) == lm.adapter.n_layers - 1
    assert (a.skip_kl > 1e-4).all() and (a.swap_kl > 1e-6).all()  # every skip and swap changed the output
    assert_same_fields(a, b)


def test_a_block_written_whole_and_its_stream_read_in_one_nnsight_run():
    """block.2 := block 3 run on block 2's input, with resid_post.2 read in the same run: the stream carries the
    replaced output on (as the hook engine orders them), and block 3 still runs once as the model's own step."""
    from lens.engine.hooks import HookEngine
    from lens.engine.nnsight import NnsightEngine

    lm = load_model("tiny-llama")
    ids = lm.tokenizer(PROMPT)["input_ids"]
    write = {"block.2": lambda x, call: call.run_block(3)}
    read = {"resid_post.2": None, "resid_post.3": None, "resid_pre.2": None}
    a = HookEngine.of(lm).run(ids, read=read, write=write)
    b = NnsightEngine(lm).run(ids, read=read, write=write)
    for site in read:
        np.testing.assert_allclose(a.reads[site], b.reads[site], atol=1e-5, err_msg=site)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    plain = HookEngine.of(lm).run(ids, read={"resid_post.2": None})
    assert not np.allclose(plain.reads["resid_post.2"], a.reads["resid_post.2"], atol=1e-3)


def test_anatomy_from_the_cli_on_nnsight_equals_local(cli):
    out = {}
    for backend in ("local", "nnsight"):
        got = cli("anatomy", "--model", "tiny-llama", "--prompt", PROMPT, "--swap", "--json", "--no-cache",
                  "--backend", backend)
        assert got.returncode == 0, got.stderr
        out[backend] = json.loads(got.stdout)
    assert out["local"].keys() == out["nnsight"].keys()
    for key in ("norm", "block_change", "skip_kl", "swap_kl", "cka", "max_abs", "kurtosis"):
        np.testing.assert_allclose(np.array(out["local"][key], float), np.array(out["nnsight"][key], float),
                                   atol=1e-5, rtol=1e-4, err_msg=key)
    assert out["local"]["max_dim"] == out["nnsight"]["max_dim"] and out["local"]["skip_top"] == out["nnsight"]["skip_top"]


def test_a_result_the_hook_engine_cached_is_not_shown_as_nnsights(tmp_path):
    """One cache folder, one model, two engines: each computes and keeps its own results (their numbers agree only
    within float32 rounding, and a page "through nnsight" must show nnsight's), and each finds its own again."""
    from lens.cache import ResultCache

    lm = load_model("tiny-llama")
    cache = ResultCache(tmp_path)
    local, nn = local_backend(lm, cache=cache), nnsight_backend(lm, cache=cache)
    key = {"prompt": PROMPT, "options": LensOptions(top_k=3).key(), "lens_id": None}
    local.logit_lens(PROMPT, LensOptions(top_k=3))
    assert local.results.has("lens", key) and not nn.results.has("lens", key)
    assert_same_lens(nn.logit_lens(PROMPT, LensOptions(top_k=3)), local.logit_lens(PROMPT, LensOptions(top_k=3)))
    assert nn.results.has("lens", key)
    assert nnsight_backend(lm, cache=cache).results.has("lens", key)  # found again by a new nnsight backend
