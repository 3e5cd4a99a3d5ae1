"""The sidebar's engine choice: the lens page through nnsight draws the local backend's numbers; NDIF is
offered only with an API key, and an unreachable NDIF is a message in the page."""
from __future__ import annotations

import numpy as np

from conftest import lens_page
from plotly_json import array, charts

PROMPT = "The capital of France is"
page = lens_page


def test_lens_through_nnsight_draws_the_same_numbers(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    local = page()
    assert [o for o in local.selectbox(key="engine").options] == ["this machine", "this machine, through nnsight"]
    via = page(engine="nnsight")
    assert not via.exception and not via.error, [e.value for e in via.error]
    a, b = charts(local)[0]["data"][0], charts(via)[0]["data"][0]
    # the two engines reduce the lens in float32 along different paths: probabilities agree to ~1e-5
    np.testing.assert_allclose(array(a["z"]), array(b["z"]), atol=3e-5)
    assert a["text"] == b["text"]


def test_ndif_is_offered_with_a_key_and_fails_in_the_page_when_unreachable(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "not-a-real-key")
    monkeypatch.setenv("NDIF_HOST", "http://127.0.0.1:9")
    at = page(engine="ndif", model="meta-llama/Llama-3.1-8B")
    assert "NDIF (remote GPUs)" in at.selectbox(key="engine").options
    assert not at.exception
    assert any("cannot reach NDIF" in e.value for e in at.error)
    assert all("not-a-real-key" not in e.value for e in at.error)
