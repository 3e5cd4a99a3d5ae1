"""Fitted lenses on the bundled model: the truth tests. The linear shortcut is read against the model's own
hidden states decoded by hand, beats the logit lens on held-out prompts, and the language of each layer and
the lens comparison agree with direct computations."""
from __future__ import annotations

from lens.options import LanguageOptions
import numpy as np
import torch

from lens.analysis.language import SCRIPTS, text_script
from lens.options import LensOptions

# Not in the shipped corpus (texts the model wrote from other openings).
HELD_OUT = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineer Gustave Eiffel.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "My sister likes to read books about history, especially about ancient Rome and its emperors.",
    "When the rain stopped, the children went outside to play in the puddles near the old oak tree.",
]


def _hidden(lm, prompt):
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        out = lm.model(ids, output_hidden_states=True)
    return out  # hidden_states[:-1] are raw; the last is already through the final norm


def test_linear_lens_equals_a_read_out_by_hand(bundled_linear_lens):
    b = bundled_linear_lens
    lm, lens = b.loaded, b.fitted_lens("linear")
    prompt = HELD_OUT[0]
    res = b.logit_lens(prompt, LensOptions(top_k=3, lens="linear"))
    out = _hidden(lm, prompt)
    hs = out.hidden_states
    L = lm.n_layers
    for r in (0, 1, L // 2, L - 1):
        h = hs[r][0].double() @ lens.weight[r].double() + lens.bias[r].double()
        p = torch.softmax(lm.model.lm_head(lm.model.model.norm(h.float())).double(), -1)
        np.testing.assert_allclose(res.top_probs[r, :, 0], p.max(-1).values.numpy(), atol=3e-4)
    p_final = torch.softmax(out.logits[0].double(), -1)
    np.testing.assert_allclose(res.top_probs[L, :, 0], p_final.max(-1).values.numpy(), atol=2e-4)
    assert res.exit_layer[-1] is not None and res.top_ids[L, -1, 0] == int(out.logits[0, -1].argmax())


def test_linear_lens_is_closer_to_the_final_answer_than_the_logit_lens(bundled_linear_lens):
    b = bundled_linear_lens
    L = b.loaded.n_layers
    logit = np.mean([b.logit_lens(p, LensOptions(top_k=1)).kl_to_final.mean(1) for p in HELD_OUT], 0)
    linear = np.mean([b.logit_lens(p, LensOptions(top_k=1, lens="linear")).kl_to_final.mean(1) for p in HELD_OUT], 0)
    inner = slice(1, L)  # the intermediate layers: not the embeddings, not the output itself
    better = (linear[inner] < logit[inner]).mean()
    assert better >= 0.9, (better, logit.round(2), linear.round(2))
    assert linear[inner].mean() < 0.5 * logit[inner].mean()


def test_lens_comparison_and_language_against_direct_sums(bundled_linear_lens):
    b = bundled_linear_lens
    lm = b.loaded
    prompt = HELD_OUT[2]
    cmp = b.lens_comparison(prompt)
    assert cmp.lenses == ["logit", "linear"]
    logit = b.logit_lens(prompt, LensOptions(top_k=1))
    np.testing.assert_allclose(cmp.top1_agreement[0], (logit.top_ids[:, :, 0] == logit.top_ids[-1, :, 0]).mean(1))

    m = b.latent_language(prompt, LanguageOptions(words=(" Rome", "Rome"), lens="logit"))
    out = _hidden(lm, prompt)
    rows = list(out.hidden_states[:-1]) + [None]
    texts = lm.tokenizer.batch_decode([[i] for i in range(len(lm.tokenizer))])
    script_of = np.array([SCRIPTS.index(text_script(t)) for t in texts])
    for r in (0, 10, lm.n_layers):
        z = out.logits[0, -1] if rows[r] is None else lm.model.lm_head(lm.model.model.norm(rows[r][0, -1]))
        p = torch.softmax(z.double(), -1).numpy()
        want = np.array([p[:len(script_of)][script_of == s].sum() for s in range(len(SCRIPTS))])
        np.testing.assert_allclose(m.mass[r], want, atol=1e-6)
        rome = lm.tokenizer(" Rome", add_special_tokens=False)["input_ids"][0]
        np.testing.assert_allclose(m.word_probs[r, 0], p[rome], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(m.mass.sum(1), 1.0, atol=1e-9)
