"""Turning a prompt into token ids, and token strings into something visible."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from ..errors import LensError

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\u00a0": "⍽"}
# What the symbols mean, for the interface's legends.
SYMBOLS = ("␣ a space", "↵ a new line", "⇥ a tab", "⍽ a non-breaking space",
           "<0xE2> one byte of a character that is split over several tokens", "∅ an empty token")
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def check_prompt(text: object) -> str:
    """Return ``text`` if it is a usable prompt, else raise LensError saying why."""
    if not isinstance(text, str):
        raise LensError("the prompt must be text")
    if text == "":
        raise LensError("the prompt is empty: type some text")
    if not text.strip():
        raise LensError("the prompt is only white space: type some text")
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
            f"the prompt is {len(ids):,} tokens long; at most {max_tokens:,} are allowed here: shorten it"
        )
    return ids


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """Byte-level BPE (GPT-2 and its heirs) writes byte b as one printable character; the inverse."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def decode_token(tokenizer, token_id: int) -> str:
    """The plain string of one token; a token that holds only part of a character's UTF-8 bytes
    (which decodes to "�") is written as its bytes instead, e.g. ``<0xE2><0x80>``."""
    text = tokenizer.decode([int(token_id)])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if not isinstance(piece, str):
        return text
    if _BYTE_PIECE.fullmatch(piece):  # SentencePiece byte fallback names its bytes already
        return piece.upper().replace("0X", "0x")
    table = _byte_of_char()
    if not piece or any(c not in table for c in piece):
        return text
    raw = bytes(table[c] for c in piece)
    decoded = raw.decode("utf-8", errors="backslashreplace")
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: f"<0x{m.group(1).upper()}>", decoded)


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """The plain string of each token (``decode_token``)."""
    return [decode_token(tokenizer, i) for i in ids]


@lru_cache(maxsize=1 << 16)
def visible(token: str) -> str:
    """Show whitespace and control characters so that every token can be seen. Kept per token: a lens figure asks
    for its ~3,000 top tokens' (mostly the same few hundred) on every new prompt."""
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
