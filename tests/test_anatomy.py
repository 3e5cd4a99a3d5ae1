"""Layer anatomy (lens/anatomy/) against plain computations written here: the residual stream and the sub-blocks'
writes read with torch hooks of this file's own, blocks skipped and swapped by hooks of its own, CKA by the
feature-space formula, kurtosis by its definition, the amateur's lens by the model's own norm and head; on a tiny
model of every decoder architecture and on the bundled model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lens.anatomy.options import AnatomyOptions, ContrastiveOptions
from lens.anatomy.readings import (duplicate_runs, outlier_reading, similarity_reading, skip_reading)
from lens.anatomy.skip import _skip_some, batched_logits
from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.model.loading import with_transformers_model
from lens.model.loading import load_model
from lens.model.registry import TINY_ARCHS

PROMPT = "hello there, the end; see me"
EIFFEL = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def tiny_backends():
    built = {}

    def get(arch):
        if arch not in built:
            built[arch] = local_backend(load_model(f"tiny-{arch}"))
        return built[arch]
    return get


@pytest.fixture(scope="module")
def smol(bundled):
    return local_backend(bundled)


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def hooked_pass(loaded, ids, skip=None, swap=None):
    """The residual stream [L+1, T, d] (block 1's input, then each block's output), each attention's and MLP's write
    [L, T, d] and the last position's logits, read with hooks placed here; ``skip``: block (1-based) whose output is
    replaced by its input; ``swap``: (l, l+1) run in each other's place."""
    a, model = loaded.adapter, loaded.model
    T = len(ids)
    rows, attn, mlp, handles = {}, {}, {}, []

    def keep_input(m, args, kwargs):
        rows[0] = (args[0] if args else kwargs["hidden_states"]).detach()

    def block_out(i):
        def hook(m, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            y = _first(out)
            if skip == i + 1:
                y = x
            elif swap is not None and i + 1 in swap:
                other = swap[1] if i + 1 == swap[0] else swap[0]
                y = _first(a.blocks[other - 1].forward(*args, **kwargs))
            rows[i + 1] = y.detach()
            if y is not _first(out):
                return (y, *out[1:]) if isinstance(out, tuple) else y
        return hook

    def write(store, i):
        def hook(m, args, out):
            store[i] = _first(out).detach().reshape(T, -1)
        return hook

    handles.append(a.blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True))
    for i, b in enumerate(a.blocks):
        handles.append(b.register_forward_hook(block_out(i), with_kwargs=True))
        handles.append(a.attn_write[i].register_forward_hook(write(attn, i)))
        handles.append(a.mlp_write[i].register_forward_hook(write(mlp, i)))
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    L = len(a.blocks)
    h = torch.stack([rows[r][0] for r in range(L + 1)]).double().numpy()
    return (h, torch.stack([attn[i] for i in range(L)]).double().numpy(),
            torch.stack([mlp[i] for i in range(L)]).double().numpy(), logits.numpy())


def kl(p, q):
    lp, lq = torch.log_softmax(torch.tensor(p), -1), torch.log_softmax(torch.tensor(q), -1)
    return float((lp.exp() * (lp - lq)).sum())


def cka_features(x, y):
    """Linear CKA by the feature-space formula ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) on centred X, Y."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def check_against_hooks(backend, text, skip_layers=None):
    loaded = backend.loaded
    ids = backend.token_ids(text)
    r = backend.anatomy(text, AnatomyOptions(swap=True))
    h, attn, mlp, logits = hooked_pass(loaded, ids)
    L = loaded.n_layers
    x = h[:, 1:]  # positions 1…
    norms = np.array([[np.sqrt(v @ v) for v in row] for row in x]).mean(1)
    np.testing.assert_allclose(r.norm, norms, rtol=1e-4)
    np.testing.assert_allclose(r.norm_ratio, norms[1:] / norms[:-1], rtol=1e-4)
    cos = [np.mean([u @ v / np.sqrt((u @ u) * (v @ v)) for u, v in zip(x[l - 1], x[l])]) for l in range(1, L + 1)]
    np.testing.assert_allclose(r.block_change, 1 - np.array(cos), atol=2e-5)
    delta = x[1:] - x[:-1]
    for l in range(L):
        d = delta[l]
        np.testing.assert_allclose(r.attn_share[l], np.sum(attn[l, 1:] * d) / np.sum(d * d), atol=2e-4)
        np.testing.assert_allclose(r.mlp_share[l], np.sum(mlp[l, 1:] * d) / np.sum(d * d), atol=2e-4)
    np.testing.assert_allclose(r.attn_share + r.mlp_share, 1.0, atol=2e-3)  # the block's write is a + m
    for row in range(L + 1):
        big = np.abs(x[row])
        np.testing.assert_allclose(r.max_abs[row], big.max(), rtol=1e-4)
        assert big[r.max_pos[row] - 1, r.max_dim[row]] == pytest.approx(big.max(), rel=1e-4)
        kurt = [np.mean((v - v.mean()) ** 4) / np.var(v) ** 2 for v in x[row]]
        np.testing.assert_allclose(r.kurtosis[row], np.mean(kurt), rtol=1e-3)
        prev = [h[row, p] @ h[0, p - 1] / np.linalg.norm(h[row, p]) / np.linalg.norm(h[0, p - 1])
                for p in range(1, len(ids))]
        np.testing.assert_allclose(r.prev_cos[row, 1:], prev, atol=1e-4)
        assert np.isnan(r.prev_cos[row, 0])
    mean_abs = np.abs(x).mean(1)
    assert r.top_dims[0] == int(np.argmax(mean_abs.max(0)))
    np.testing.assert_allclose(r.dim_mean_abs, mean_abs[:, r.top_dims], rtol=1e-4)
    # CKA: 1 with itself, symmetric, and the feature-space formula
    np.testing.assert_allclose(np.diag(r.cka), 1.0)
    np.testing.assert_allclose(r.cka, r.cka.T, atol=1e-12)
    for i, j in [(0, L), (1, L), (L // 2, L)]:
        assert r.cka[i, j] == pytest.approx(cka_features(x[i], x[j]), abs=1e-4)
    # each block skipped, and neighbours swapped, by this file's hooks
    for l in skip_layers or range(1, L + 1):
        assert r.skip_kl[l - 1] == pytest.approx(kl(logits, hooked_pass(loaded, ids, skip=l)[3]), rel=1e-3, abs=1e-5)
    for l in list(skip_layers or range(1, L))[:2]:
        if l < L:
            assert r.swap_kl[l - 1] == pytest.approx(kl(logits, hooked_pass(loaded, ids, swap=(l, l + 1))[3]),
                                                     rel=1e-3, abs=1e-5)
    return r, logits


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_every_measure_against_hooks_on_every_architecture(arch, tiny_backends):
    check_against_hooks(tiny_backends(arch), PROMPT)


def test_bundled_model_measures_and_which_block_matters(smol):
    r, logits = check_against_hooks(smol, EIFFEL, skip_layers=[1, 12, 30])
    assert r.top == " Paris" and len(r.rows) == 31 and r.positions == list(range(1, len(r.tokens)))
    # The readings name what the numbers say.
    top = int(np.argmax(r.skip_kl))
    assert skip_reading(r).startswith(f"Block {top + 1} matters most for this prompt: skipping it moves the next "
                                      f"token's distribution by KL {r.skip_kl[top]:.3g} nats")
    row = int(np.argmax(r.max_abs))
    assert outlier_reading(r).startswith(f"Dimension {int(r.max_dim[row])} is the outlier: max |h| "
                                         f"{r.max_abs[row]:.4g} at layer {r.rows[row]}")


def test_skipping_no_block_reproduces_the_output_exactly(tiny_backends, smol):
    for b in (tiny_backends("llama"), tiny_backends("gpt2"), smol):
        ids = b.token_ids(EIFFEL)
        with torch.no_grad():
            want = b.loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
        L = b.loaded.n_layers
        # every block written, none of its copies changed
        got = batched_logits(b.engine, ids, [0], lambda chunk: {f"block.{l}": _skip_some([]) for l in range(1, L + 1)})
        # bit for bit the engine's plain pass; the model's own call (its default attention kernel) to rounding
        np.testing.assert_array_equal(got[0], b.engine.run(ids).logits[0].double().numpy())
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-4)


def test_cka_between_two_models(tiny_backends):
    a, b = tiny_backends("llama"), tiny_backends("qwen2")
    pair = a.cka_with(b, PROMPT)
    ids = a.token_ids(PROMPT)
    x = hooked_pass(a.loaded, ids)[0][:, 1:]
    y = hooked_pass(b.loaded, ids)[0][:, 1:]
    assert pair.cka.shape == (len(x), len(y))
    for i in range(len(x)):
        for j in range(len(y)):
            assert pair.cka[i, j] == pytest.approx(cka_features(x[i], y[j]), abs=1e-4)
    self_pair = a.cka_with(a, PROMPT)
    np.testing.assert_allclose(np.diag(self_pair.cka), 1.0, atol=1e-9)


def test_cka_with_another_tokenizer_is_refused(tiny_backends, smol):
    with pytest.raises(LensError, match="same tokenizer"):
        smol.cka_with(tiny_backends("llama"), EIFFEL)


def test_contrastive_against_the_models_own_norm_and_head(smol):
    o = ContrastiveOptions(amateur_layer=10, alpha=0.1, top_k=5, max_new_tokens=6)
    r = smol.contrastive(EIFFEL, o)
    model = smol.loaded.model
    ids = smol.token_ids(EIFFEL)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        expert = torch.log_softmax(out.logits[0, -1].double(), -1)
        # hidden_states[l] is block l's output for l < L (the last entry has the final norm applied)
        amateur = torch.log_softmax(model.lm_head(model.model.norm(out.hidden_states[10][0, -1])).double(), -1)
    plausible = expert >= np.log(0.1) + expert.max()
    score = torch.where(plausible, expert - amateur, torch.tensor(-np.inf, dtype=torch.float64))
    assert r.n_plausible == int(plausible.sum())
    want = torch.argsort(score, descending=True)[:min(5, r.n_plausible)]
    assert r.contrast_ids == [int(i) for i in want]
    np.testing.assert_allclose(r.contrast_score, score[want].numpy(), atol=1e-3)
    np.testing.assert_allclose(r.amateur_prob, amateur[want].exp().numpy(), rtol=1e-3, atol=1e-9)
    assert r.plain_ids == [int(i) for i in torch.argsort(expert, descending=True)[:5]]
    with torch.no_grad():
        greedy = with_transformers_model(smol.loaded).model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0, len(ids):].tolist()
    eos = smol.loaded.tokenizer.eos_token_id
    assert r.plain_new_ids == greedy[:len(r.plain_new_ids)]
    assert len(r.plain_new_ids) == 6 or r.plain_new_ids[-1] == eos


def test_contrastive_greedy_steps_follow_the_score(tiny_backends):
    from lens.anatomy.contrastive import contrast_scores, expert_and_amateur

    b = tiny_backends("llama")
    r = b.contrastive(PROMPT, ContrastiveOptions(amateur_layer=1, max_new_tokens=3))
    seq = b.token_ids(PROMPT)
    for new in r.contrast_new_ids:
        e, a = expert_and_amateur(b.engine, seq, 1)
        assert new == int(np.argmax(contrast_scores(e, a, 0.1)[2]))
        seq.append(new)


@pytest.mark.parametrize("call, says", [
    (lambda b: b.anatomy("ab"), "at least three tokens"),
    (lambda b: b.anatomy(PROMPT, AnatomyOptions(top_dims=0)), "top dimensions"),
    (lambda b: b.anatomy(PROMPT, AnatomyOptions(swap="yes")), "swap is true or false"),
    (lambda b: b.contrastive(PROMPT, ContrastiveOptions(amateur_layer=3)), "from 1 to 2"),
    (lambda b: b.contrastive(PROMPT, ContrastiveOptions(amateur_layer=1, alpha=0)), "alpha"),
    (lambda b: b.contrastive(PROMPT, ContrastiveOptions(amateur_layer=1, max_new_tokens=0)), "new tokens"),
])
def test_bad_input_is_one_message(call, says, tiny_backends):
    with pytest.raises(LensError, match=says):
        call(tiny_backends("llama"))


def test_near_duplicate_runs_and_their_reading():
    cka = np.full((6, 6), 0.5)
    np.fill_diagonal(cka, 1.0)
    cka[1:4, 1:4] = 0.97
    cka[4, 5] = cka[5, 4] = 0.96
    np.fill_diagonal(cka, 1.0)
    assert duplicate_runs(cka) == [(1, 3), (4, 5)]
    rows = ["emb", "L1", "L2", "L3", "L4", "L5"]
    assert similarity_reading(rows, cka).startswith("Layers L1–L3 are near-duplicates (CKA ≥ 0.95 between every two "
                                                    "of them, min 0.970). Also L4–L5.")
    cka[4, 5] = cka[5, 4] = 0.9
    cka[1:4, 1:4] = 0.2
    np.fill_diagonal(cka, 1.0)
    assert similarity_reading(rows, cka) == ("No two neighbouring layers are near-duplicates (CKA < 0.95); the most "
                                             "alike neighbours are L4 and L5 (CKA 0.900).")


# ---------------------------------------------------------------- a prompt suite

SUITE_PROMPTS = ["hello there, the end; see me", "the cat sat on the mat", "abc def ghi jkl", "one two three four"]


def per_prompt_stack(backend, prompts, options):
    """Each prompt's anatomy asked for one at a time (a backend of its own, no cache), stacked: the suite's
    numbers must be these."""
    fresh = local_backend(backend.loaded, None)
    got = [fresh.anatomy(p, options) for p in prompts]
    return got, {name: np.stack([np.asarray(getattr(r, name), dtype=float) for r in got])
                 for name in ("norm", "norm_ratio", "block_change", "attn_share", "mlp_share", "max_abs", "kurtosis",
                              "skip_kl", "swap_kl", "cka")}


def test_suite_means_are_the_means_of_one_prompt_at_a_time(tiny_backends):
    from collections import Counter

    from lens.anatomy.results import anatomy_suite_json
    from lens.suites.suite import parse_lines

    b = tiny_backends("llama")
    seen = []
    s = b.anatomy_suite(parse_lines("\n".join(SUITE_PROMPTS), "four"), AnatomyOptions(swap=True),
                        progress=lambda f, m: seen.append((f, m)))
    got, each = per_prompt_stack(b, SUITE_PROMPTS, AnatomyOptions(swap=True))
    j = anatomy_suite_json(s)
    assert j["n_prompts"] == 4 and s.prompts == SUITE_PROMPTS and s.where == [f"four line {i}" for i in range(1, 5)]
    for name, x in each.items():
        if name == "cka":
            np.testing.assert_allclose(j["cka_mean"], x.mean(0), atol=1e-12)
            continue
        np.testing.assert_allclose(j["mean"][name], x.mean(0), rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(j["sd"][name], x.std(0, ddof=1), rtol=1e-9, atol=1e-12, err_msg=name)
        for q in (10, 90):  # linear interpolation between the prompts' values, written out here
            srt = np.sort(x, 0)
            pos = (len(x) - 1) * q / 100
            lo, frac = int(np.floor(pos)), pos - np.floor(pos)
            want = srt[lo] + frac * (srt[min(lo + 1, len(x) - 1)] - srt[lo])
            np.testing.assert_allclose(j[f"p{q}"][name], want, rtol=1e-9, atol=1e-12, err_msg=f"{name} p{q}")
    assert s.skip_top == [r.skip_top for r in got] and s.top == [r.top for r in got]
    # The outlier dimension: each prompt's largest coordinate's dimension, the most frequent of them.
    each_dim = [int(r.max_dim[int(np.argmax(r.max_abs))]) for r in got]
    dim, count = Counter(each_dim).most_common(1)[0]
    assert (j["outlier"]["dim"], j["outlier"]["prompts"]) == (dim, count) and j["outlier"]["each"] == each_dim
    assert j["outlier"]["rows_with"] == sum(int(np.sum(r.max_dim == dim)) for r in got)
    rows = Counter(int(d) for r in got for d in r.max_dim).most_common(1)[0]
    assert (j["outlier"]["rows_dim"], j["outlier"]["rows_count"]) == rows
    # The top dimensions: largest mean |h| at any row after averaging the prompts' streams (read by hooks here).
    mean_abs = []
    for p in SUITE_PROMPTS:
        h = hooked_pass(b.loaded, b.loaded.tokenizer(p)["input_ids"])[0]
        mean_abs.append(np.abs(h[:, 1:]).mean(1))
    mean_abs = np.stack(mean_abs)
    order = list(np.argsort(-mean_abs.mean(0).max(0), kind="stable")[:16])
    assert s.top_dims == order
    np.testing.assert_allclose(s.dim_mean_abs, mean_abs[:, :, order], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s.prev_cos, [np.nanmean(r.prev_cos[:, 1:], 1) for r in got], atol=1e-12)
    # Progress: one message a prompt, then done.
    assert [m for _, m in seen][:1] == ["prompt 1 of 4: its pass, then 3 skipped blocks and the swaps"]
    assert seen[-1][0] == 1.0 and [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_suite_readings_say_the_means(tiny_backends):
    from lens.anatomy.readings import suite_outlier_reading, suite_similarity_reading, suite_skip_reading
    from lens.suites.suite import parse_lines

    b = tiny_backends("llama")
    s = b.anatomy_suite(parse_lines("\n".join(SUITE_PROMPTS), "four"))
    got, each = per_prompt_stack(b, SUITE_PROMPTS, AnatomyOptions())
    mean = each["skip_kl"].mean(0)
    top = int(np.argmax(mean))
    firsts = int(np.sum(np.argmax(each["skip_kl"], 1) == top))
    said = suite_skip_reading(s)
    assert said.startswith(f"Across the 4 prompts, block {top + 1} matters most") and f"KL {mean[top]:.3g} nats" in said
    assert f"matters most for {firsts} of 4 prompts" in said
    assert suite_similarity_reading(s).startswith("Across the 4 prompts (mean CKA), ")
    assert similarity_reading(s.rows, each["cka"].mean(0))[1:] in suite_similarity_reading(s)
    dims = [int(r.max_dim[int(np.argmax(r.max_abs))]) for r in got]
    dim = max(dims, key=lambda d: (dims.count(d), -dims.index(d)))  # the most frequent, the first seen among equals
    assert suite_outlier_reading(s).startswith(f"Across the 4 prompts, dimension {dim} is the outlier: it holds the "
                                               f"prompt's largest coordinate in {dims.count(dim)} of 4 prompts")


def test_bundled_model_suite_equals_each_prompt_alone(smol):
    from lens.suites.suite import Suite, example

    capitals = example("capitals")
    short = Suite(name="capitals", items=capitals.items[:2])
    s = smol.anatomy_suite(short)
    _, each = per_prompt_stack(smol, [i.prompt for i in short.items], AnatomyOptions())
    from lens.anatomy.spread import summary

    m = summary(s)
    for name in ("norm", "block_change", "skip_kl", "max_abs", "kurtosis"):
        np.testing.assert_allclose(m["mean"][name], each[name].mean(0), rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(m["cka_mean"], each["cka"].mean(0), atol=1e-12)
    assert s.n_tokens == [len(smol.token_ids(i.prompt)) for i in short.items]


@pytest.mark.parametrize("lines, says", [
    ("hello there world\nab", "suite line 2: the prompt is 2 tokens"),
])
def test_suite_bad_prompt_names_its_line(tiny_backends, lines, says):
    from lens.suites.suite import Suite, parse_lines

    b = tiny_backends("llama")
    with pytest.raises(LensError, match=says):
        b.anatomy_suite(parse_lines(lines, "suite"))
    big = parse_lines("\n".join(["hello there"] * 201), "big")
    with pytest.raises(LensError, match="at most 200"):
        b.anatomy_suite(big)
    with pytest.raises(LensError, match="holds no prompts"):
        b.anatomy_suite(Suite(name="empty", items=()))
