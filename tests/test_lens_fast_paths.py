"""The logit lens's speed-ups against the plain computations they replace.

The tiny models' 258-token vocabulary is too small for the grouped top-k, so it is
tested on its own and, with a small group size, through the whole lens.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import lens.analysis.logit_lens as ll
from lens.analysis.logit_lens import logit_lens
from lens.options import LensOptions


@pytest.mark.parametrize("V", [4096, 4096 + 37, 49152])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_grouped_topk_equals_torch_topk(V, k):
    g = torch.Generator().manual_seed(V + k)
    z = torch.randn(3, 7, V, generator=g) * 4
    z[0, 0, V - 1] = 100.0  # the largest logit in the tail that fills no group
    z[1, 2, :3] = 50.0  # ties at the top
    vals, idx = ll._topk(z, k)
    ref_v, _ = z.topk(k, dim=-1)
    torch.testing.assert_close(vals, ref_v, atol=0, rtol=0)
    # The indices point at those values (ties may pick other indices of the same value).
    torch.testing.assert_close(z.gather(-1, idx), ref_v, atol=0, rtol=0)
    assert all(len(set(row.tolist())) == k for row in idx.reshape(-1, k))
    assert idx[0, 0, 0] == V - 1


def test_lens_with_grouped_topk_matches_reference(tiny_trace, reference, topk_matches, monkeypatch):
    """Groups of 4 logits make the tiny vocabulary take the grouped path (plus a 2-logit tail)."""
    monkeypatch.setattr(ll, "GROUP", 4)
    trace, tok = tiny_trace("llama")
    V = trace.adapter.unembed.weight.shape[0]
    assert 5 * ll.GROUP * 4 <= V and V % ll.GROUP != 0
    res = logit_lens(trace, tok, LensOptions(top_k=5))
    ref = reference(trace.adapter, trace.residual, trace.token_ids, 5)
    topk_matches(res.top_ids, res.top_probs, ref, atol=2e-5)
    np.testing.assert_allclose(res.entropy, ref["entropy"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.kl_to_final, ref["kl"], atol=1e-4, rtol=0)
    assert np.all((ref["rank_lo"] <= res.target_rank) & (res.target_rank <= ref["rank_hi"]))
    np.testing.assert_allclose(res.target_prob, ref["target_prob"], atol=2e-5, rtol=0)


@pytest.mark.parametrize("block_rows", [1, 3, 64])
def test_block_size_does_not_change_results(block_rows, tiny_trace, monkeypatch):
    trace, tok = tiny_trace("gpt2")
    base = logit_lens(trace, tok, LensOptions(top_k=4, target="e"))
    monkeypatch.setattr(ll, "BLOCK_ROWS", block_rows)
    res = logit_lens(trace, tok, LensOptions(top_k=4, target="e"))
    np.testing.assert_array_equal(res.top_ids, base.top_ids)
    np.testing.assert_array_equal(res.target_rank, base.target_rank)
    for name in ("top_probs", "entropy", "kl_to_final", "target_prob", "next_token_loss"):
        np.testing.assert_allclose(getattr(res, name), getattr(base, name), atol=1e-6, err_msg=name)


def test_kept_buffer_is_not_shared_between_concurrent_calls(tiny_trace):
    """Two threads at once (two browser sessions): each gets the numbers it would get alone."""
    traces = [tiny_trace("llama"), tiny_trace("llama", "a completely different prompt!")]
    alone = [logit_lens(tr, tok, LensOptions(top_k=3)) for tr, tok in traces]
    got: dict[int, list] = {0: [], 1: []}

    def work(i):
        tr, tok = traces[i]
        for _ in range(20):
            got[i].append(logit_lens(tr, tok, LensOptions(top_k=3)))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        for r in got[i]:
            np.testing.assert_array_equal(r.top_ids, alone[i].top_ids)
            np.testing.assert_allclose(r.entropy, alone[i].entropy, atol=1e-6)
            np.testing.assert_allclose(r.kl_to_final, alone[i].kl_to_final, atol=1e-6)
