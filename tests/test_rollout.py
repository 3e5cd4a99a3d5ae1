"""Attention rollout and flow against hand-computed examples, the published recursion and the model."""
from lens.options import FlowOptions, RolloutOptions
import numpy as np
import pytest
import torch

from lens.engine_backend import local_backend
from lens.errors import LensError
from lens.analysis.rollout import attention_flow, rollout, rollout_rows, with_residual
from lens.engine.head_means import HeadMeans
from lens.engine.hooks import HookEngine
from lens.engine.trace import CaptureSpec, capture


def recursion(mean_attn: np.ndarray) -> np.ndarray:
    """The published recursion with full matrices: Â = (Ā + I)/rowsum, R_1 = Â_1, R_l = Â_l R_{l-1}."""
    L, T, _ = mean_attn.shape
    out = []
    R = None
    for l in range(L):
        a = mean_attn[l] + np.eye(T)
        a = a / a.sum(-1, keepdims=True)
        R = a if R is None else a @ R
        out.append(R)
    return np.stack(out)


def random_attention(L, T, causal, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, T, T, generator=g, dtype=torch.float64) * 2
    if causal:
        x = x + torch.triu(torch.full((T, T), -1e9, dtype=torch.float64), 1)
    return torch.softmax(x, -1)


def test_hand_computed_two_layers():
    # Ā = [[1, 0], [1, 0]] in both layers: Â = [[1, 0], [0.5, 0.5]].
    A = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]] * 2, dtype=torch.float64)
    np.testing.assert_allclose(with_residual(A)[0].numpy(), [[1, 0], [0.5, 0.5]])
    r = rollout(A, ["a", "b"], position=1)
    np.testing.assert_allclose(r.rollout[0], [0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(r.rollout[1], [0.75, 0.25], atol=1e-7)  # 0.5·[1,0] + 0.5·[0.5,0.5]
    f = attention_flow(A, ["a", "b"], position=1)
    # Layer 1: one edge layer, flow = capacities 0.5 and 0.5. Layer 2: to input 0 through (1,0) [0.5]
    # and (1,1) [0.5] = 1.0; to input 1 only through (1,1)→(0,1) = 0.5; normalised: 2/3, 1/3.
    np.testing.assert_allclose(f.raw_flow[0], [0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(f.raw_flow[1], [1.0, 0.5], atol=1e-7)
    np.testing.assert_allclose(f.flow[1], [2 / 3, 1 / 3], atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_rollout_rows_match_recursion(causal):
    A = random_attention(5, 7, causal)
    ref = recursion(A.numpy())
    for p in (0, 3, 6):
        rows = rollout_rows(A, p).numpy()
        np.testing.assert_allclose(rows, ref[:, p, :], atol=1e-12)
        np.testing.assert_allclose(rows.sum(-1), 1.0, atol=1e-12)
    if causal:  # the same maps kept as lower triangles give the same rows
        packed = lower_triangles(A)
        for p in (0, 3, 6):
            np.testing.assert_allclose(rollout_rows(packed, p).numpy(), ref[:, p, :], atol=1e-12)
        r, rp = rollout(A, list("abcdefg"), position=4), rollout(packed, list("abcdefg"), position=4)
        np.testing.assert_array_equal(rp.rollout, r.rollout)
        np.testing.assert_array_equal(rp.attention, r.attention)


def lower_triangles(A: torch.Tensor) -> HeadMeans:
    """Causal maps [L, T, T] packed by hand: each layer's rows 0..T-1, row i cut after key i, one after another."""
    L, T, _ = A.shape
    return HeadMeans(torch.stack([torch.cat([A[l, i, : i + 1] for i in range(T)]) for l in range(L)]), T, lower=True)


def test_head_means_unpack_what_was_packed():
    A = random_attention(3, 9, True, seed=4)
    hm = lower_triangles(A)
    assert hm.shape == (3, 9, 9) and hm.data.shape == (3, 45)
    torch.testing.assert_close(hm.full(), A)
    buf = torch.zeros(9, 9, dtype=A.dtype)
    for l in (2, 0, 1):  # one buffer reused, layer after layer: only lower triangles are ever written into it
        assert hm.layer(l, out=buf).data_ptr() == buf.data_ptr()
        torch.testing.assert_close(buf, A[l])
    torch.testing.assert_close(hm.rows([8, 0, 5]), A[:, [8, 0, 5]])
    whole = HeadMeans.of_stack(A)
    assert not whole.lower and whole.layer(1).data_ptr() == A[1].data_ptr()  # a view, no copy
    with pytest.raises(ValueError):
        HeadMeans(torch.zeros(3, 44), 9, lower=True)


@pytest.mark.parametrize("causal", [True, False])
def test_flow_rows_sum_to_one_and_one_layer_is_the_attention(causal):
    A = random_attention(3, 6, causal, seed=1)
    f = attention_flow(A, list("abcdef"), position=4)
    S = 5 if causal else 6
    np.testing.assert_allclose(np.nansum(f.flow, -1), 1.0, atol=1e-6)
    # One layer: max-flow from (1, i) to (0, j) is the single edge's capacity Â[i, j].
    np.testing.assert_allclose(f.raw_flow[0, :S], with_residual(A)[0, 4, :S].numpy(), atol=1e-7)
    # Flow to an input never exceeds what leaves the output node (1) and is at least the rollout's path mass bound 0.
    assert np.all(f.raw_flow[:, :S] <= 1 + 1e-9) and np.all(f.raw_flow[:, :S] >= 0)
    if causal:
        assert np.all(f.flow[:, S:] == 0)


def test_flow_subset_of_layers_and_size_limit():
    A = random_attention(4, 5, True, seed=2)
    full = attention_flow(A, list("abcde"))
    last = attention_flow(A, list("abcde"), layers=[4])
    # Only the solved rows come back, flow and raw flow alike, labelled with their layers.
    assert last.layers == ["4"] and last.flow.shape == last.raw_flow.shape == (1, 5)
    np.testing.assert_allclose(last.flow[0], full.flow[3], atol=1e-6)
    np.testing.assert_allclose(last.raw_flow[0], full.raw_flow[3], atol=1e-6)
    two = attention_flow(A, list("abcde"), layers=[3, 1])
    assert two.layers == ["1", "3"]
    np.testing.assert_allclose(two.flow, full.flow[[0, 2]], atol=1e-6)
    big = random_attention(30, 40, True)
    with pytest.raises(LensError, match="limited to"):
        attention_flow(big, ["x"] * 40)
    with pytest.raises(LensError, match="outside"):
        rollout(A, list("abcde"), position=5)


def test_attention_mean_capture(tiny):
    model, tok, adapter = tiny("llama")
    ids = tok("mean of the heads")["input_ids"]
    full = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=False, attentions=True))
    mean = capture(HookEngine(model, adapter), ids, CaptureSpec(residual=False, attentions=True, attention_mean=True))
    T = len(ids)
    hm = mean.head_means
    assert hm.lower and hm.data.shape == (adapter.n_layers, T * (T + 1) // 2)  # causal: lower triangles only
    assert mean.attentions == {}
    for l in range(adapter.n_layers):
        assert hm.layer(l).shape == (T, T)
        torch.testing.assert_close(hm.layer(l), full.attentions[l].mean(0))
    torch.testing.assert_close(hm.full(), torch.stack([full.attentions[l].mean(0) for l in range(adapter.n_layers)]))
    torch.testing.assert_close(hm.rows([0, T - 1, 2]),
                               torch.stack([full.attentions[l].mean(0)[[0, T - 1, 2]] for l in range(adapter.n_layers)]))


@pytest.fixture(scope="module")
def backend(bundled):
    return local_backend(bundled, cache=None)


def test_bundled_rollout_matches_model_attentions(backend, bundled):
    text = "The capital of France is"
    r = backend.rollout(text)
    ids = bundled.tokenizer(text)["input_ids"]
    with torch.no_grad():
        out = bundled.model(input_ids=torch.tensor([ids]), output_attentions=True)
    mean = np.stack([a[0].double().mean(0).numpy() for a in out.attentions])
    ref = recursion(mean)
    assert r.position == len(ids) - 1
    np.testing.assert_allclose(r.rollout, ref[:, -1, :], atol=1e-5)
    np.testing.assert_allclose(r.rollout.sum(-1), 1.0, atol=1e-5)
    f = backend.attention_flow(text, FlowOptions(position=3))
    np.testing.assert_allclose(np.nansum(f.flow, -1), 1.0, atol=1e-5)


def test_encoder_rollout():
    from lens.model.loading import load_model

    enc = local_backend(load_model("minilm-l6"), cache=None)
    r = enc.rollout("attention goes both ways here", RolloutOptions(position=1))
    np.testing.assert_allclose(r.rollout.sum(-1), 1.0, atol=1e-5)
    assert r.rollout[:, 2:].sum() > 0  # bidirectional: later tokens feed position 1
