"""`python -m lens rollout` and `contributions`: JSON shape, agreement with the backend, clean errors."""
import json

import numpy as np

from command import lens_command


def test_rollout_json():
    r = lens_command("rollout", "--model", "tiny-llama", "--prompt", "hello there", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    T = len(out["tokens"])
    assert out["position"] == T - 1
    roll = np.array(out["rollout"])
    assert roll.shape == (3, T)
    np.testing.assert_allclose(roll.sum(-1), 1.0, atol=1e-5)
    r = lens_command("rollout", "--model", "tiny-llama", "--prompt", "hello there", "--position", "2", "--json")
    assert json.loads(r.stdout)["position"] == 2


def test_contributions_json():
    r = lens_command("contributions", "--model", "tiny-gpt2", "--prompt", "hello there", "--layer", "2",
                     "--position", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    heads = np.array(out["heads"])
    assert heads.shape == (4, len(out["tokens"]))
    np.testing.assert_allclose(heads.sum(0), out["sources"], atol=1e-6)
    assert abs(out["residual"] + sum(out["sources"]) - 1) < 1e-5
    assert all(v == 0 for v in out["sources"][5:])  # causal: nothing after the target


def test_clean_errors():
    for args, msg in (
        (["contributions", "--model", "tiny-llama", "--prompt", "hi", "--layer", "9"], "out of range"),
        (["contributions", "--model", "tiny-llama", "--prompt", "hi", "--layer", "1", "--position", "7"], "outside"),
        (["contributions", "--model", "tiny-gpt_neox", "--prompt", "hi", "--layer", "1"], "routes do not apply"),
        (["rollout", "--model", "tiny-llama", "--prompt", "x" * 40, "--flow"], None),
    ):
        r = lens_command(*args)
        err = r.stderr
        assert "Traceback" not in err
        if msg is None:
            assert r.returncode == 0, err
        else:
            assert r.returncode == 2 and msg in err, err
