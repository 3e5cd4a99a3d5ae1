"""Turning a prompt into token ids, and token strings into something visible."""
from __future__ import annotations

import unicodedata

from ..errors import LensError

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def check_prompt(text: object) -> str:
    """Return ``text`` if it is a usable prompt, else raise LensError saying why."""
    if not isinstance(text, str):
        raise LensError("the prompt must be text")
    if text == "":
        raise LensError("the prompt is empty: type some text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LensError("the prompt contains invalid Unicode (a lone surrogate); paste it again as plain text") from None
    return text


def encode(tokenizer, text: str, max_tokens: int) -> list[int]:
    """Token ids exactly as the tokenizer makes them by default (special tokens included)."""
    check_prompt(text)
    ids = list(tokenizer(text)["input_ids"])
    if not ids:
        raise LensError("the prompt has no tokens")
    if len(ids) > max_tokens:
        raise LensError(
            f"the prompt is {len(ids)} tokens long; this model takes at most {max_tokens}"
        )
    return ids


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """``tokenizer.decode([id])`` for each id: the plain string of each token."""
    return [tokenizer.decode([i]) for i in ids]


def visible(token: str) -> str:
    """Show whitespace and control characters so that every token can be seen."""
    if token == "":
        return "∅"
    out = []
    for ch in token:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cn"):
            # Unicode spaces, invisible and control characters: show the code point.
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
        else:
            out.append(ch)
    return "".join(out)


def word_key(token: str) -> str:
    """The matching rule for a "word": the decoded token with surrounding whitespace and a
    leading WordPiece "##" removed, compared case-insensitively (" Bank", "bank", "##bank" match "bank")."""
    s = token.strip()
    if s.startswith("##"):
        s = s[2:]
    return s.casefold()


def word_matches(tokens: list[str], word: str | None) -> list[int]:
    """Indices of the tokens that match ``word`` by ``word_key`` (none for an empty word)."""
    key = word_key(word) if word and word.strip() else None
    return [i for i, t in enumerate(tokens) if key and word_key(t) == key]
