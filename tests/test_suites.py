"""Prompt suites (lens/suites/): every input form and its errors, the counterfactual pair builder, the batched
lens against each prompt's own single-prompt lens (tiny models of several architectures and the bundled
model), the aggregates against plain loops, and patching averaged over pairs against the pairs one by one."""
from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from lens.errors import LensError
from lens.suites.aggregate import aggregate, align_right, bootstrap_ci, grid_mean
from lens.suites.suite import (counterfactual_pairs, example, example_names, from_template, parse_csv, parse_jsonl,
                               parse_lines, read_suite)


def one_line_error(fn, match: str) -> str:
    with pytest.raises(LensError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- reading every input form

def test_jsonl_keeps_every_field_and_the_other_columns_as_text_labels(tmp_path):
    text = ('{"prompt": "The capital of France is", "target": " Paris", "country": "France", "rank": 3}\n'
            '\n'
            '{"prompt": "When Mary and John went", "target": " Mary", "foil": " John", "position": -2, "ok": true}\n'
            '{"clean": "a b", "corrupt": "a c", "target": " x", "group": null}\n')
    s = parse_jsonl(text, "f.jsonl")
    assert [i.prompt for i in s.items] == ["The capital of France is", "When Mary and John went", "a b"]
    a, b, c = s.items
    assert (a.target, a.foil, a.position, a.labels) == (" Paris", None, None, (("country", "France"), ("rank", "3")))
    assert (b.foil, b.position, b.label("ok")) == (" John", -2, "true")
    assert c.is_pair and (c.clean, c.corrupt, c.prompt) == ("a b", "a c", "a b") and c.label("group") == ""
    assert [i.where for i in s.items] == ["f.jsonl line 1", "f.jsonl line 3", "f.jsonl line 4"]
    assert s.columns == ["country", "rank", "ok", "group"] and len(s.pairs) == 1
    # Written out and read back: the same items.
    f = tmp_path / "again.jsonl"
    f.write_text(s.to_jsonl(), encoding="utf-8")
    assert read_suite(f).key() == s.key()


def test_csv_keeps_leading_spaces_quoted_commas_and_labels(tmp_path):
    f = tmp_path / "caps.csv"
    f.write_text('prompt,target,foil,continent\n"The capital of France, a country, is", Paris,,Europe\n'
                 'The capital of Japan is, Tokyo, Kyoto,Asia\n\n', encoding="utf-8")
    s = read_suite(f)
    assert s.name == "caps.csv" and len(s) == 2
    assert s.items[0].prompt == "The capital of France, a country, is" and s.items[0].target == " Paris"
    assert s.items[0].foil is None and s.items[1].foil == " Kyoto"
    assert s.columns == ["continent"] and s.items[1].label("continent") == "Asia"
    assert s.items[1].where == "caps.csv line 3"


def test_a_pasted_list_is_one_prompt_a_line_with_tabs_for_target_and_foil():
    s = parse_lines("The capital of France is\n\n  spaced prompt \t Paris\nWho\t A\t B\r\n")
    assert [i.prompt for i in s.items] == ["The capital of France is", "  spaced prompt ", "Who"]
    assert [i.target for i in s.items] == [None, " Paris", " A"] and s.items[2].foil == " B"
    assert [i.where for i in s.items] == ["pasted list line 1", "pasted list line 3", "pasted list line 4"]


def test_a_template_fills_its_slots_and_keeps_them_as_labels():
    s = from_template("The {landmark} is located in the city of",
                      [{"landmark": "Eiffel Tower", "target": " Paris", "country": "France"},
                       {"landmark": "Colosseum", "target": " Rome", "country": "Italy"}])
    assert [i.prompt for i in s.items] == ["The Eiffel Tower is located in the city of",
                                           "The Colosseum is located in the city of"]
    assert s.items[1].target == " Rome" and s.columns == ["landmark", "country"]
    assert s.items[0].where == "template filler row 1"


@pytest.mark.parametrize("name, run, match", [
    ("empty file", lambda p: (p / "e.jsonl").write_text("\n \n") and read_suite(p / "e.jsonl"), "e.jsonl is empty"),
    ("no prompt column", lambda p: (p / "c.csv").write_text("text,target\nhello, x\n") and read_suite(p / "c.csv"),
     r"c.csv has no 'prompt' column .*its columns are text, target"),
    ("no prompt field", lambda p: parse_jsonl('{"prompt": "a"}\n{"text": "b"}\n', "f.jsonl"),
     r"f.jsonl line 2 has no 'prompt'"),
    ("bad JSON line", lambda p: parse_jsonl('{"prompt": "a"}\n\n{"prompt": "b",}\n', "f.jsonl"),
     r"f.jsonl line 3 is not valid JSON"),
    ("not an object", lambda p: parse_jsonl('"just text"\n', "f.jsonl"), r"f.jsonl line 1 is not a JSON object"),
    ("empty prompt", lambda p: parse_jsonl('{"prompt": ""}\n', "f.jsonl"), r"f.jsonl line 1: the prompt is empty"),
    ("target not text", lambda p: parse_jsonl('{"prompt": "a", "target": 5}\n', "f.jsonl"),
     r"f.jsonl line 1: 'target' must be text, not 5"),
    ("bad position", lambda p: parse_jsonl('{"prompt": "a", "position": "last"}\n', "f.jsonl"),
     r"f.jsonl line 1: 'position' must be a whole number"),
    ("half a pair", lambda p: parse_jsonl('{"clean": "a"}\n', "f.jsonl"), r"f.jsonl line 1 has 'clean' but no 'corrupt'"),
    ("ragged CSV row", lambda p: parse_csv("prompt,target\na, b, c\n", "f.csv"), r"f.csv line 2 has 3 cells"),
    ("unknown slot", lambda p: from_template("The {landmark} is in", [{"landmark": "A"}, {"place": "B"}]),
     r"template filler row 2 has no value for the slot \{landmark\} \(its columns: place\)"),
    ("no slot", lambda p: from_template("The tower is in", [{"x": "A"}]), "has no slot"),
    ("unknown file type", lambda p: read_suite(p / "f.xlsx"), r"f.xlsx: a suite file ends in .jsonl"),
    ("not UTF-8", lambda p: (p / "b.txt").write_bytes(b"\xff\xfe\xfa") and read_suite(p / "b.txt"), "not UTF-8"),
    ("unknown example", lambda p: example("nope"), "no shipped suite 'nope'; choose capitals"),
])
def test_bad_input_is_one_line_naming_the_line_or_row(tmp_path, name, run, match):
    one_line_error(lambda: run(tmp_path), match)


# ---------------------------------------------------------------- counterfactual pairs

FILLERS = [{"city": "Rome", "target": " R"}, {"city": "Oslo", "target": " O"}, {"city": "Paris", "target": " P"},
           {"city": "Lima", "target": " L"}]


def test_counterfactual_pairs_keep_equal_lengths_and_list_the_others_with_the_reason():
    count = len  # a tokenizer of one token per character
    built = counterfactual_pairs("I live in {city}", FILLERS, count)
    # Each row against the next (the last against the first): Oslo/Paris and Paris/Lima differ by a character.
    pairs = [(i.clean, i.corrupt, i.target, i.foil) for i in built.suite.items]
    assert pairs == [("I live in Rome", "I live in Oslo", " R", " O"), ("I live in Lima", "I live in Rome", " L", " R")]
    reasons = {(g["clean"], g["corrupt"]): g["reason"] for g in built.left_out}
    assert reasons[("I live in Oslo", "I live in Paris")] == "the clean prompt has 14 tokens and the corrupted one 15"
    assert reasons[("I live in Paris", "I live in Lima")] == "the clean prompt has 15 tokens and the corrupted one 14"
    assert len(built.left_out) == 2 and built.left_out[0]["where"] == "counterfactual pairs filler rows 2 and 3"
    every = counterfactual_pairs("I live in {city}", FILLERS, count, partners="all")
    kept = {(i.clean[10:], i.corrupt[10:]) for i in every.suite.items}
    assert kept == {("Rome", "Oslo"), ("Oslo", "Rome"), ("Rome", "Lima"), ("Lima", "Rome"), ("Oslo", "Lima"),
                    ("Lima", "Oslo")}
    assert len(every.left_out) == 12 - 6
    assert every.suite.items[0].label("city") == "Rome"  # the clean row's labels


def test_counterfactual_pairs_leave_out_pairs_with_the_same_answer_and_need_targets():
    built = counterfactual_pairs("In {city}", [{"city": "Rome", "target": " X"}, {"city": "Oslo", "target": " X"}], len)
    assert built.suite is None and all("both rows answer ' X'" in g["reason"] for g in built.left_out)
    one_line_error(lambda: counterfactual_pairs("In {city}", [{"city": "Rome"}, {"city": "Oslo"}], len),
                   "filler row 1 has no target")
    one_line_error(lambda: counterfactual_pairs("In {city}", FILLERS[:1], len), "at least two filler rows")


def test_counterfactual_pairs_with_the_bundled_tokenizer(bundled):
    tok = bundled.tokenizer
    built = counterfactual_pairs("The capital of {country} is",
                                 [{"country": "France", "target": " Paris"}, {"country": "Italy", "target": " Rome"},
                                  {"country": "the Czech Republic", "target": " Prague"}],
                                 lambda s: len(tok(s)["input_ids"]))
    assert [(i.clean, i.corrupt, i.foil) for i in built.suite.items] == [
        ("The capital of France is", "The capital of Italy is", " Rome")]
    assert [g["reason"] for g in built.left_out] == ["the clean prompt has 5 tokens and the corrupted one 7",
                                                     "the clean prompt has 7 tokens and the corrupted one 5"]


# ---------------------------------------------------------------- the batched lens == each prompt alone

PROMPTS = ("hello there\tt\n"  # 11 bytes
           "the end of it\te\to\n"  # 13
           "abc\n"  # 3
           "xyz\tz\ty\n"  # 3: batched with "abc"
           "pqr\tp\n"  # 3
           "hello there, the end; see me here\n"  # 33
           "world peace\tw\n")  # 11: batched with the first


def check_against_single(backend, suite, result, reference, lens: str = "logit", atol: float = 2e-5):
    """Each prompt's numbers against its own single-prompt lens, and its log-probabilities and logit
    differences against the plain float64 computation (conftest's ``reference_lens``)."""
    from lens.options import LensOptions

    for i, item in enumerate(suite.items):
        single = backend.logit_lens(item.prompt, LensOptions(target=item.target, top_k=1, lens=lens))
        p = result.positions[i]
        assert p == (len(single.tokens) - 1 if item.position is None else item.position % len(single.tokens))
        np.testing.assert_allclose(result.target_prob[i], single.target_prob[:, p], atol=atol, rtol=1e-4)
        np.testing.assert_allclose(result.kl_to_final[i], single.kl_to_final[:, p], atol=atol, rtol=1e-4)
        np.testing.assert_array_equal(result.top1_ids[i], single.top_ids[:, p, 0])
        np.testing.assert_allclose(result.top1_prob[i], single.top_probs[:, p, 0], atol=atol, rtol=1e-4)
        assert result.target_ids[i] == single.target_ids[p] and result.targets[i] == single.target_tokens[p]
        if item.position is None:
            assert result.exit_layer[i] == single.exit_layer[p]
            assert result.final_prediction[i] == single.final_prediction[p]
        tr = backend.trace(item.prompt)
        residual = tr.residual if lens == "logit" else backend.fitted_lens(lens).apply(tr.residual)
        ref = reference(backend.loaded.adapter, residual, tr.token_ids, 1)
        t = int(result.target_ids[i])
        np.testing.assert_allclose(result.target_logprob[i], ref["logp"][:, p, t], atol=1e-3, rtol=1e-5)
        # The rank as the float64 logits give it, up to logits that float32 sums in another order may swap.
        z = ref["logits"][:, p]
        z_t = z[:, t:t + 1]
        lo, hi = (z > z_t + 1e-4).sum(-1) + 1, (z > z_t - 1e-4).sum(-1) + 1
        assert np.all((lo <= result.target_rank[i]) & (result.target_rank[i] <= hi)), (result.target_rank[i], lo, hi)
        assert np.abs(result.target_rank[i] - single.target_rank[:, p]).max() <= (hi - lo).max()
        if item.foil is not None:
            f = backend.token_ids(item.foil)[-1]
            expected = ref["logits"][:, p, t] - ref["logits"][:, p, f]
            np.testing.assert_allclose(result.logit_diff[i], expected, atol=1e-3, rtol=1e-5)
        else:
            assert np.isnan(result.logit_diff[i]).all()


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "gemma2", "gpt_neox", "phi"])
def test_the_batched_lens_gives_each_prompt_its_own_numbers(arch, reference):
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    b = local_backend(load_model(f"tiny-{arch}"))
    suite = parse_lines(PROMPTS)
    result = b.lens_suite(suite)
    assert result.layers == ["emb"] + [str(i) for i in range(1, b.info().n_layers + 1)]
    assert result.target_given == [True, True, False, True, True, False, True]
    check_against_single(b, suite, result, reference)


class CountingEngine:
    """The hook engine, counting its runs and the batch size of each."""

    def __init__(self, engine):
        self.engine, self.batches = engine, []
        self.adapter, self.capabilities, self.lock = engine.adapter, engine.capabilities, engine.lock

    def vocab_size(self):
        return self.engine.vocab_size()

    def run(self, ids, **kw):
        self.batches.append(len(ids) if isinstance(ids[0], list) else 1)
        return self.engine.run(ids, **kw)


def test_equal_length_prompts_share_a_pass_and_a_named_position_is_read(reference):
    from lens.engine.hooks import HookEngine
    from lens.engine_backend import EngineBackend
    from lens.model.loading import load_model
    from lens.suites.batch import groups, lens_at_positions

    lm = load_model("tiny-llama")
    eng = CountingEngine(HookEngine.of(lm))
    b = EngineBackend(lm, eng)
    suite = parse_lines(PROMPTS)
    result = b.lens_suite(suite)
    lengths = [len(b.token_ids(i.prompt)) for i in suite.items]
    assert sorted(eng.batches) == sorted(len(g) for g in groups(lengths, [n - 1 for n in lengths]))
    assert max(eng.batches) == 3 and len(eng.batches) == 4  # abc/xyz/pqr, the two 11-byte prompts, two alone
    # One prompt per pass gives the same numbers as the batches.
    ids = [b.token_ids(i.prompt) for i in suite.items]
    alone = lens_at_positions(eng, ids, result.positions, list(result.target_ids), [None] * len(ids), max_batch=1)
    np.testing.assert_allclose(alone["target_prob"], result.target_prob, atol=1e-6)
    np.testing.assert_array_equal(alone["target_rank"], result.target_rank)
    # A named position (0-based, or negative from the end) is read there.
    named = parse_jsonl('{"prompt": "hello there", "target": "l", "position": 3}\n'
                        '{"prompt": "hello world", "target": "o", "position": -4}\n', "named.jsonl")
    got = b.lens_suite(named)
    assert got.positions == [3, 7]
    check_against_single(b, named, got, reference)
    one_line_error(lambda: b.lens_suite(parse_jsonl('{"prompt": "abc", "position": 3}\n', "p.jsonl")),
                   r"p.jsonl line 1: position 3 is outside the prompt's 3 tokens")


def test_a_target_that_is_not_one_token_is_named_by_its_line():
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    b = local_backend(load_model("tiny-llama"))
    suite = parse_jsonl('{"prompt": "abc", "target": "a"}\n{"prompt": "abd", "target": " Paris"}\n', "t.jsonl")
    one_line_error(lambda: b.lens_suite(suite), r"t.jsonl line 2: the target ' Paris' is 6 tokens here")
    same = parse_jsonl('{"prompt": "abc", "target": "a", "foil": "a"}\n', "t.jsonl")
    one_line_error(lambda: b.lens_suite(same), "t.jsonl line 1: the target and the foil are the same token")


def test_the_suite_lens_through_a_fitted_lens_and_through_nnsight(tmp_path, monkeypatch, reference):
    monkeypatch.setenv("LAYERLENS_CACHE", str(tmp_path / "cache"))  # the fit stays out of the session's cache
    from lens.engine_backend import local_backend, nnsight_backend
    from lens.model.loading import load_model
    from lens.options import FitOptions
    from lens.suites.options import SuiteOptions

    lm = load_model("tiny-llama")
    b = local_backend(lm)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["the cat sat on the mat and looked at the door " * 4,
                                   "a bird flew over the river to the old mill " * 4,
                                   "numbers one two three four five six seven " * 4]), encoding="utf-8")
    b.fit_lens(FitOptions("linear", corpus_file=str(corpus)))
    suite = parse_lines(PROMPTS)
    linear = b.lens_suite(suite, SuiteOptions(lens="linear"))
    assert linear.lens == "linear"
    check_against_single(b, suite, linear, reference, lens="linear")
    plain = b.lens_suite(suite)
    assert not np.allclose(linear.target_prob[:, :-1], plain.target_prob[:, :-1])  # the maps changed the rows
    np.testing.assert_allclose(linear.target_prob[:, -1], plain.target_prob[:, -1], atol=1e-6)  # not the output
    through = nnsight_backend(lm).lens_suite(suite)
    np.testing.assert_allclose(through.target_prob, plain.target_prob, atol=2e-5, rtol=1e-4)
    np.testing.assert_array_equal(through.top1_ids, plain.top1_ids)


def test_the_bundled_model_batched_equals_alone_and_knows_most_capitals(bundled, reference):
    from lens.engine_backend import local_backend

    b = local_backend(bundled)
    caps = example("capitals")
    few = parse_jsonl("".join(json.dumps(i.as_row()) + "\n" for i in caps.items if i.label("country") in
                              ("France", "Italy", "Japan", "the Czech Republic", "the United States", "Australia")),
                      "few.jsonl")
    result = b.lens_suite(few)
    assert sorted(set(result.n_tokens)) == [5, 7]  # two lengths, batched apart
    check_against_single(b, few, result, reference, atol=5e-5)
    whole = b.lens_suite(caps)
    assert len(caps) >= 20 and whole.correct.mean() >= 0.8  # the shipped capitals are mostly right
    wrong = {caps.items[i].label("country"): whole.final_prediction[i] for i in np.flatnonzero(~whole.correct)}
    assert wrong.get("Australia") == " Sydney"  # kept as it is: a suite shows failures too


def test_every_shipped_example_reads_and_its_targets_are_single_tokens(bundled):
    tok = bundled.tokenizer
    assert example_names() == ["capitals", "indirect-object", "landmarks", "multilingual"]
    for name in example_names():
        s = example(name)
        for item in s.items:
            for text in (item.target, item.foil):
                if text is not None:
                    assert len(tok(text, add_special_tokens=False)["input_ids"]) == 1, (name, text)
            if item.is_pair:
                assert len(tok(item.clean)["input_ids"]) == len(tok(item.corrupt)["input_ids"]), item
    assert all(i.is_pair for i in example("indirect-object").items)
    assert set(example("multilingual").columns) == {"language", "word"}


def test_progress_reaches_one_and_a_gone_asker_stops_the_suite():
    from lens.engine_backend import local_backend
    from lens.jobs import Asker, Cancelled, asking
    from lens.model.loading import load_model

    b = local_backend(load_model("tiny-gpt2"))
    seen = []
    b.lens_suite(parse_lines(PROMPTS), progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1] == (1.0, "read 7 of 7 prompts")
    with asking(Asker(alive=lambda: False)), pytest.raises(Cancelled):
        b.lens_suite(parse_lines("another prompt\n"))


def test_suite_results_come_back_from_the_cache_and_serialise(tmp_path):
    from lens.cache import ResultCache
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.serialize import to_json_dict

    lm = load_model("tiny-llama")
    cache = ResultCache(tmp_path / "results")
    first = local_backend(lm, cache).lens_suite(parse_lines(PROMPTS))
    again = local_backend(lm, cache)
    again.engine.run = None  # a cache hit runs nothing
    second = again.lens_suite(parse_lines(PROMPTS))
    np.testing.assert_array_equal(first.target_prob, second.target_prob)
    assert first.exit_layer == second.exit_layer and first.labels == second.labels
    text = json.dumps(to_json_dict(second))
    assert json.loads(text)["logit_diff"][2][0] is None  # NaN (no foil) as null
    for agg in aggregate(second):
        json.dumps(to_json_dict(agg))


# ---------------------------------------------------------------- aggregates against plain loops

def plain_percentile(xs: list[float], q: float) -> float:
    """numpy's default (linear) percentile, by hand."""
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def test_the_bootstrap_interval_equals_a_plain_loop_and_holds_the_mean():
    rng = np.random.default_rng(3)
    values = rng.normal(0.4, 0.2, size=(37, 3))
    ci = bootstrap_ci(values, resamples=500, seed=7)
    draws = np.random.default_rng(7).integers(0, 37, size=(500, 37))  # the draws, as documented
    for col in range(3):
        means = [sum(values[i, col] for i in row) / 37 for row in draws]
        assert ci[col, 0] == pytest.approx(plain_percentile(means, 2.5), abs=1e-12)
        assert ci[col, 1] == pytest.approx(plain_percentile(means, 97.5), abs=1e-12)
        assert ci[col, 0] < values[:, col].mean() < ci[col, 1]
        # About the normal interval's width: 2 · 1.96 · sd / √n.
        width = 2 * 1.96 * values[:, col].std(ddof=1) / math.sqrt(37)
        assert 0.8 * width < ci[col, 1] - ci[col, 0] < 1.2 * width
    assert np.array_equal(bootstrap_ci(values, 500, 7), ci)  # seeded
    assert not np.array_equal(bootstrap_ci(values, 500, 8), ci)
    np.testing.assert_array_equal(bootstrap_ci(np.array([2.5]), 100, 0), [2.5, 2.5])
    assert np.isnan(bootstrap_ci(np.empty(0), 100, 0)).all()


def fake_result(n: int = 9, R: int = 4):
    from lens.suites.results import SuiteLensResult

    rng = np.random.default_rng(0)
    prob = rng.uniform(0, 1, (n, R)).astype(np.float32)
    diff = rng.normal(0, 1, (n, R)).astype(np.float32)
    diff[::3] = np.nan  # every third prompt has no foil
    top1 = rng.integers(0, 3, (n, R))
    return SuiteLensResult(
        model="m", lens="logit", suite="s", layers=["emb", "1", "2", "3"][:R], prompts=[f"p{i}" for i in range(n)],
        where=[""] * n, n_tokens=[3] * n, positions=[2] * n, target_ids=rng.integers(0, 3, n), targets=["t"] * n,
        target_given=[i % 4 != 1 for i in range(n)], foils=[None] * n, labels={"c": ["a", "b", "a", "c", "b", "a", "a", "c", "b"][:n]},
        target_prob=prob, target_logprob=np.log(prob), target_rank=rng.integers(1, 50, (n, R)),
        kl_to_final=rng.uniform(0, 5, (n, R)).astype(np.float32), logit_diff=diff, top1_ids=top1,
        top1_tokens=[["x"] * R] * n, top1_prob=prob, exit_layer=[0, 3, None, 1, 3, 3, 2, None, 0][:n],
        final_prediction=["x"] * n)


def test_aggregates_by_a_label_column_equal_a_plain_computation():
    r = fake_result()
    groups = aggregate(r, by="c", resamples=200, seed=1)
    assert [g.group for g in groups] == ["a", "b", "c"] and [g.n for g in groups] == [4, 3, 2]
    for g in groups:
        idx = [i for i, v in enumerate(r.labels["c"]) if v == g.group]
        for row in range(4):
            probs = [float(r.target_prob[i, row]) for i in idx]
            assert g.target_prob_mean[row] == pytest.approx(sum(probs) / len(probs), rel=1e-6)
            assert g.target_prob_median[row] == pytest.approx(statistics.median(probs), rel=1e-6)
            ranks = [int(r.target_rank[i, row]) for i in idx]
            assert g.target_rank_median[row] == statistics.median(ranks)
            kls = [float(r.kl_to_final[i, row]) for i in idx]
            assert g.kl_to_final_mean[row] == pytest.approx(sum(kls) / len(kls), rel=1e-6)
            diffs = [float(r.logit_diff[i, row]) for i in idx if not math.isnan(r.logit_diff[i, row])]
            assert g.logit_diff_n == len(diffs)
            if diffs:
                assert g.logit_diff_mean[row] == pytest.approx(sum(diffs) / len(diffs), rel=1e-6)
            else:
                assert math.isnan(g.logit_diff_mean[row])
        np.testing.assert_allclose(g.target_prob_ci95, bootstrap_ci(r.target_prob[idx].astype(np.float64), 200, 1))
        exits = [r.exit_layer[i] for i in idx]
        assert list(g.exit_counts) == [exits.count(k) for k in range(4)] + [exits.count(None)]
        given = [i for i in idx if r.target_given[i]]
        right = sum(int(r.top1_ids[i, -1] == r.target_ids[i]) for i in given)
        assert g.n_targets == len(given) and g.n_correct == right
        assert g.accuracy == pytest.approx(right / len(given)) if given else math.isnan(g.accuracy)
    everyone = aggregate(r)[0]
    assert everyone.group == "all" and everyone.n == 9 and everyone.by is None
    one_line_error(lambda: aggregate(r, by="colour"), r"no column 'colour' to group by \(its label columns: c\)")


def test_patch_grids_averaged_from_the_end_equal_a_plain_loop():
    rng = np.random.default_rng(2)
    grids = [rng.normal(size=(3, 4)), rng.normal(size=(3, 6)), rng.normal(size=(3, 4))]
    stacked = align_right(grids)
    mean, count = grid_mean(stacked)
    assert stacked.shape == (3, 3, 6)
    for r in range(3):
        for c in range(6):
            k = 6 - c  # the k-th position from the end
            vals = [g[r, g.shape[1] - k] for g in grids if g.shape[1] >= k]
            assert count[r, c] == len(vals)
            assert mean[r, c] == pytest.approx(sum(vals) / len(vals))


# ---------------------------------------------------------------- patching over pairs

def test_patch_suite_averages_each_pairs_own_grid_and_lists_the_pairs_left_out():
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model
    from lens.options import PatchOptions
    from lens.suites.options import PairSuiteOptions

    b = local_backend(load_model("tiny-gpt2"))
    text = ('{"clean": "abcde", "corrupt": "xbcde", "target": "f", "foil": "g", "kind": "one"}\n'
            '{"clean": "pqre", "corrupt": "pzre", "target": "s", "foil": "t", "kind": "two"}\n'
            '{"clean": "lmno", "corrupt": "lmn", "target": "p", "foil": "q"}\n'
            '{"clean": "uvwe", "corrupt": "uxwe", "target": "y", "foil": "z", "kind": "two"}\n')
    suite = parse_jsonl(text, "pairs.jsonl")
    seen = []
    got = b.patch_suite(suite, PairSuiteOptions(site="resid"), progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == pytest.approx(1.0)
    assert seen[-1][1] == "patched pair 3 of 3" and any(m.startswith("pair 2 of 3: ") for _, m in seen)
    assert got.where == ["pairs.jsonl line 1", "pairs.jsonl line 2", "pairs.jsonl line 4"]
    assert got.left_out == [{"where": "pairs.jsonl line 3", "clean": "lmno", "corrupt": "lmn",
                             "reason": "the clean prompt has 4 tokens and the corrupted one 3"}]
    singles = [b.patch(i.clean, i.corrupt, PatchOptions(target=i.target, foil=i.foil)) for i in suite.items
               if i.where in got.where]
    C = max(len(s.columns) for s in singles)
    assert got.columns == [str(c - C) for c in range(C)] and got.layers == singles[0].layers
    assert got.metric_name == "logit difference" and got.labels["kind"] == ["one", "two", "two"]
    np.testing.assert_allclose(got.metric_clean, [s.metric_clean for s in singles])
    for r in range(len(got.layers)):
        for c in range(C):
            k = C - c
            vals = [float(s.patch[r, len(s.columns) - k]) for s in singles if len(s.columns) >= k]
            assert got.count[r, c] == len(vals)
            assert got.mean[r, c] == pytest.approx(sum(vals) / len(vals), rel=1e-5, abs=1e-6)
    # Every pair ends in "e"; the token before it differs ("d", "r", "w").
    assert got.column_tokens[-2:] == ["", "e"]
    heads = b.patch_suite(suite, PairSuiteOptions(site="head"))
    assert heads.columns == [f"head {h}" for h in range(b.info().n_heads)] and heads.count.min() == 3


def test_patch_suite_refuses_what_it_cannot_average():
    from lens.engine_backend import local_backend
    from lens.model.loading import load_model

    b = local_backend(load_model("tiny-gpt2"))
    one_line_error(lambda: b.patch_suite(parse_lines("abc\n")), "holds no clean/corrupt pairs")
    mixed = parse_jsonl('{"clean": "ab", "corrupt": "cb", "target": "x", "foil": "y"}\n'
                        '{"clean": "ab", "corrupt": "db", "target": "x"}\n', "m.jsonl")
    one_line_error(lambda: b.patch_suite(mixed), "some pairs name a foil and some do not")
    no_target = parse_jsonl('{"clean": "ab", "corrupt": "cb"}\n', "m.jsonl")
    one_line_error(lambda: b.patch_suite(no_target), "m.jsonl line 1: a pair needs a target")
