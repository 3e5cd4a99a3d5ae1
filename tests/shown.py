"""How a token is shown, computed independently of lens.model.tokens: the tokenizer's own decoding,
and for a token that holds part of a character's UTF-8 bytes, those bytes as <0xNN> (the byte table
from transformers' converter, the byte-fallback piece names of SentencePiece)."""
import re

from transformers.convert_slow_tokenizer import bytes_to_unicode


def as_shown(tok, token_id) -> str:
    text = tok.decode([int(token_id)])
    if "\ufffd" not in text:
        return text
    piece = tok.convert_ids_to_tokens(int(token_id))
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):
        return "<0x" + piece[3:5].upper() + ">"
    byte = {c: b for b, c in bytes_to_unicode().items()}
    raw = bytes(byte[c] for c in piece)
    out, i = "", 0
    while i < len(raw):  # the longest valid UTF-8 run from i, else one byte
        for j in range(min(len(raw), i + 4), i, -1):
            try:
                out += raw[i:j].decode("utf-8")
                i = j
                break
            except UnicodeDecodeError:
                continue
        else:
            out += f"<0x{raw[i]:02X}>"
            i += 1
    return out
