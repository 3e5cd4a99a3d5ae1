"""The language of each layer: which script a row's reading puts its probability on, and tracked words.

Wendler et al. (2024, "Do Llamas work in English?") read a multilingual model's lens at
the last position of a translation prompt (French → German, say) and found the middle
layers favouring the English word before the last layers switch to the German answer.
Here each vocabulary token gets the script of its letters (by their Unicode names: Latin,
Cyrillic, Han, ...; tokens with no letters, with letters of two scripts, or holding only
part of a character's bytes are "pieces"), and a row's mass on a script is the sum of its
probabilities over that script's tokens: the whole distribution, not its top-k. Words
typed by the user (the answer, its English translation) are read by their first token.
"""
from __future__ import annotations

import unicodedata

import numpy as np
import torch

from ..errors import LensError
from ..model.tokens import decode_token
from ..engine.trace import Trace
from ..results import LanguageMass

SCRIPTS = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Devanagari", "Han", "Kana", "Hangul", "Thai",
           "pieces", "other")
_NAME_TO_SCRIPT = {"LATIN": "Latin", "CYRILLIC": "Cyrillic", "GREEK": "Greek", "ARABIC": "Arabic", "HEBREW": "Hebrew",
                   "DEVANAGARI": "Devanagari", "CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana",
                   "HANGUL": "Hangul", "THAI": "Thai"}
MAX_WORDS = 6


def char_script(ch: str) -> str:
    first = unicodedata.name(ch, "").split(" ", 1)[0]
    return _NAME_TO_SCRIPT.get(first, "other")


def text_script(text: str) -> str:
    """The one script of ``text``'s letters; "pieces" for part of a character's bytes (how a tokenizer
    trained on English spells most other scripts); else "other" (no letters, or two scripts)."""
    if "\ufffd" in text:
        return "pieces"
    found = {char_script(c) for c in text if c.isalpha()}
    return found.pop() if len(found) == 1 else "other"


def vocab_scripts(tokenizer, vocab_size: int) -> np.ndarray:
    """[V] index into SCRIPTS of every token id (ids the tokenizer does not know: "other")."""
    other = SCRIPTS.index("other")
    out = np.full(vocab_size, other, np.int64)
    n = min(vocab_size, len(tokenizer))
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    for i, t in enumerate(texts):
        out[i] = SCRIPTS.index(text_script(t))
    return out


def word_token(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise LensError(f"the word {word!r} has no tokens")
    return int(ids[0])


@torch.no_grad()
def language_mass(trace: Trace, tokenizer, scripts: np.ndarray, position: int | None = None,
                  words: list[str] | tuple[str, ...] = (), fitted=None, lens: str = "logit") -> LanguageMass:
    """Per row, the reading's probability on each script and on each tracked word, at ``position``
    (None: the last; negative counts from the end). ``fitted``: a fitted lens's maps (None: logit lens)."""
    adapter = trace.adapter
    if adapter is None:
        raise LensError(f"{trace.model_name}: this trace keeps no model to read predictions with")
    adapter.require_lm_head("the lens does not apply", trace.model_name)
    T = trace.n_tokens
    p = T - 1 if position is None else int(position)
    if p < 0:
        p += T
    if not 0 <= p < T:
        raise LensError(f"position {position} is outside the prompt's {T} tokens (0..{T - 1})")
    words = [w for w in words if w]
    if len(words) > MAX_WORDS:
        raise LensError(f"track at most {MAX_WORDS} words, not {len(words)}")
    ids = [word_token(tokenizer, w) for w in words]
    h = trace.residual[:, p:p + 1, :]
    if fitted is not None:
        h = fitted.apply(h)
    probs = torch.softmax(adapter.readout(h[:, 0, :]).double(), -1)  # [R, V]
    V = probs.shape[-1]
    if len(scripts) != V:
        raise LensError(f"the script table has {len(scripts)} tokens, the model's vocabulary {V}")
    mass = torch.zeros(probs.shape[0], len(SCRIPTS), dtype=torch.float64)
    mass.index_add_(1, torch.as_tensor(scripts), probs)
    return LanguageMass(
        model=trace.model_name, lens=lens, tokens=list(trace.tokens), position=p, layers=trace.layer_labels,
        scripts=list(SCRIPTS), mass=mass.numpy(), words=words,
        word_tokens=[decode_token(tokenizer, i) for i in ids],
        word_probs=probs[:, ids].numpy() if ids else np.zeros((probs.shape[0], 0)))
