"""Sampling on the spot (lens/sampling/) against transformers' own logits processors; seeds; no model run once the
final logits are kept; the ``sample`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from lens.cli import main
from lens.engine.hooks import HookEngine
from lens.engine_backend import EngineBackend
from lens.errors import LensError
from lens.model.loading import load_model
from lens.sampling.options import SampleOptions
from lens.sampling.results import NextLogits
from lens.sampling.sample import sample

PROMPT = "hello there, the end"


def reference(logits: np.ndarray, t: float, k: int, p: float) -> np.ndarray:
    """The renormalised distribution transformers' warpers give, in the order generate applies them."""
    scores = torch.tensor(logits, dtype=torch.float32)[None]
    ids = torch.zeros(1, 1, dtype=torch.long)
    scores = TemperatureLogitsWarper(t)(ids, scores)
    if k:
        scores = TopKLogitsWarper(k)(ids, scores)
    if p < 1:
        scores = TopPLogitsWarper(p)(ids, scores)
    return scores.softmax(-1)[0].double().numpy()


def full(logits: np.ndarray, options: SampleOptions) -> np.ndarray:
    r = sample(NextLogits("m", ["x"], logits), options, str)
    out = np.zeros(len(logits))
    for d in r.distribution:
        out[d["id"]] = d["prob"]
    assert r.kept == int((out > 0).sum()) or r.kept > 50
    return out


@pytest.mark.parametrize("t,k,p", [(1.0, 0, 1.0), (0.7, 10, 1.0), (1.3, 0, 0.9), (0.5, 20, 0.8), (2.0, 5, 0.3),
                                   (1.0, 40, 0.95), (0.2, 0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distribution_is_transformers_warpers(t, k, p, seed):
    logits = np.random.default_rng(seed).normal(0, 3, 40).astype(np.float32)
    ours = full(logits, SampleOptions(temperature=t, top_k=k, top_p=p))
    ref = reference(logits, t, k, p)
    assert ((ours > 0) == (ref > 0)).all()  # the same tokens kept
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_ties_at_the_top_k_edge_are_kept_as_transformers_keeps_them():
    logits = np.array([5, 4, 3, 3, 3, 1, 0], np.float32)
    ours = full(logits, SampleOptions(top_k=3))
    assert (ours > 0).sum() == 5 and ((ours > 0) == (reference(logits, 1.0, 3, 1.0) > 0)).all()


def test_walk_through_rows_and_the_draw():
    logits = np.random.default_rng(7).normal(0, 2, 300).astype(np.float32)
    o = SampleOptions(temperature=0.8, top_k=30, top_p=0.7, seed=11, shown=40)
    r = sample(NextLogits("m", ["a", "b"], logits), o, lambda i: f"t{i}")
    z = logits.astype(np.float64) / 0.8
    order = np.argsort(-z, kind="stable")
    assert [x["id"] for x in r.rows[:40]] == order[:40].tolist() and r.rows[0]["rank"] == 1
    pt = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    for x in r.rows:
        assert x["scaled"] == pytest.approx(x["logit"] / 0.8) and x["prob_t"] == pytest.approx(pt[x["id"]])
    # top-k: ranks 31.. are cut by it (no cumulative); top-p: the kept ones' predecessors sum to less than 0.7
    assert all(x["cut"] == "top-k" and x["cumulative"] is None for x in r.rows if x["rank"] > 30)
    kept = [x for x in r.rows if x["cut"] is None]
    assert len(kept) == r.kept and r.cut_by_top_k == 300 - 30 and r.cut_by_top_p == 30 - r.kept
    assert kept[-1]["cumulative"] >= 0.7 > kept[-1]["cumulative"] - kept[-1]["prob_k"]
    assert sum(x["prob"] for x in kept) == pytest.approx(1.0)
    assert r.kept_mass == pytest.approx(sum(pt[x["id"]] for x in kept))
    # the draw: u from the seed, and the first kept token whose running sum passes it
    u = np.random.default_rng(11).random()
    assert r.draw == u
    running = np.cumsum([x["prob"] for x in kept])
    assert r.sampled_id == kept[int(np.searchsorted(running, u, side="right"))]["id"]
    assert r.context == "b" and r.distribution[0]["prob"] >= r.distribution[-1]["prob"]


def test_seeds_are_reproducible_and_follow_the_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    picks = [sample(NextLogits("m", ["x"], logits), SampleOptions(seed=s), str).sampled_id for s in range(3000)]
    again = [sample(NextLogits("m", ["x"], logits), SampleOptions(seed=s), str).sampled_id for s in range(50)]
    assert picks[:50] == again
    freq = np.bincount(picks, minlength=4) / len(picks)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.03)


@pytest.mark.parametrize("options,message", [
    (SampleOptions(temperature=0), "--temperature"), (SampleOptions(temperature=float("nan")), "--temperature"),
    (SampleOptions(top_k=-1), "--top-k"), (SampleOptions(top_k=1000), "--top-k"), (SampleOptions(top_p=0), "--top-p"),
    (SampleOptions(top_p=1.5), "--top-p"), (SampleOptions(seed=-1), "--seed"), (SampleOptions(shown=0), "rows")])
def test_bad_options_are_refused(options, message):
    with pytest.raises(LensError, match=message):
        options.check(300)


class CountingEngine:
    """The hook engine, counting its runs."""

    def __init__(self, engine):
        self.engine, self.runs = engine, 0
        self.adapter, self.capabilities, self.lock = engine.adapter, engine.capabilities, engine.lock

    def vocab_size(self):
        return self.engine.vocab_size()

    def run(self, ids, **kw):
        self.runs += 1
        return self.engine.run(ids, **kw)


@pytest.fixture(scope="module")
def tiny_llama():
    return load_model("tiny-llama")


def test_resampling_runs_no_model_and_reads_the_models_own_logits(tiny_llama):
    lm = tiny_llama
    engine = CountingEngine(HookEngine.of(lm))
    b = EngineBackend(lm, engine, None)
    results = [b.sample(PROMPT, SampleOptions(temperature=t, top_k=k, top_p=p, seed=s))
               for t, k, p, s in [(1.0, 0, 1.0, 0), (0.5, 5, 1.0, 1), (1.5, 0, 0.6, 2), (0.9, 50, 0.9, 3)]]
    assert engine.runs == 1  # one pass for the final logits; every resample after it is numpy on them
    ids = lm.tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        own = lm.model(torch.tensor([ids])).logits[0, -1].double().numpy()
    np.testing.assert_allclose(b.next_logits(PROMPT).logits, own, atol=1e-5)
    assert engine.runs == 1
    ref = reference(own.astype(np.float32), 0.5, 5, 1.0)
    got = {d["id"]: d["prob"] for d in results[1].distribution}
    assert set(got) == set(np.nonzero(ref)[0].tolist())
    assert all(got[i] == pytest.approx(ref[i], abs=1e-5) for i in got)
    b.sample("another prompt", SampleOptions())
    assert engine.runs == 2


def test_bundled_model_against_transformers(bundled):
    b = bundled_backend(bundled)
    text = "The capital of France is"
    r = b.sample(text, SampleOptions(temperature=1.5, top_k=40, top_p=0.9, seed=3))
    ref = reference(b.next_logits(text).logits, 1.5, 40, 0.9)
    assert r.kept == int((ref > 0).sum()) and r.kept > 1
    for d in r.distribution:
        assert d["prob"] == pytest.approx(ref[d["id"]], abs=1e-5)


def bundled_backend(lm):
    from lens.engine_backend import local_backend

    return local_backend(lm, None)


def test_sample_command(capsys):
    assert main(["sample", "--model", "tiny-llama", "--prompt", PROMPT, "--temperature", "0.8", "--top-k", "20",
                 "--top-p", "0.9", "--seed", "4", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 1 <= out["kept"] <= 20 and len(out["distribution"]) == min(out["kept"], 50)
    probs = [d["prob"] for d in out["distribution"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-6)
    assert out["sampled"] in [d["token"] for d in out["distribution"]] and set(out["distribution"][0]) >= {"token",
                                                                                                         "prob"}
    assert main(["sample", "--model", "tiny-llama", "--prompt", PROMPT, "--no-cache"]) == 0
    assert "kept" in capsys.readouterr().out
    for args, message in [(["--temperature", "0"], "--temperature"), (["--top-p", "2"], "--top-p"),
                          (["--top-k", "-3"], "--top-k"), (["--seed", "-1"], "--seed"), (["--save", "x"], "--save")]:
        assert main(["sample", "--model", "tiny-llama", "--prompt", PROMPT, "--no-cache", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_short_table_still_shows_where_the_cuts_fall():
    logits = np.random.default_rng(0).normal(0, 2, 1000).astype(np.float32)
    r = sample(NextLogits("m", ["x"], logits), SampleOptions(shown=3, top_k=60, top_p=0.5, seed=2), str)
    ranks = [x["rank"] for x in r.rows]
    assert ranks == sorted(set(ranks)) and ranks[:3] == [1, 2, 3]
    assert {r.kept, r.kept + 1, r.kept + 2, 61, r.sampled_rank} <= set(ranks)  # last kept, first cut, first top-k cut
    by_rank = {x["rank"]: x for x in r.rows}
    assert by_rank[r.kept]["cut"] is None and by_rank[r.kept + 1]["cut"] == "top-p" and by_rank[61]["cut"] == "top-k"
    plain = sample(NextLogits("m", ["x"], logits), SampleOptions(shown=3, seed=2), str)
    assert [x["rank"] for x in plain.rows][:3] == [1, 2, 3] and len(plain.rows) <= 4  # nothing cut: no edge rows
