"""Prompt checks, encoding limits, and making every token visible."""
from __future__ import annotations

import unicodedata

import pytest

from lens.errors import LensError
from lens.model.tiny import tiny_tokenizer
from lens.model.tokens import check_prompt, encode, token_strings, visible
from shown import as_shown


@pytest.mark.parametrize("token, shown", [
    (" ", "␣"), ("  ", "␣␣"), ("\n", "↵"), ("\t", "⇥"), ("\r", "␍"), ("\r\n", "␍↵"),
    ("", "∅"), (" the", "␣the"), ("a b\tc\n", "a␣b⇥c↵"),
    ("\x00", "\\x00"), ("\x1b", "\\x1b"), ("\x7f", "\\x7f"), ("\x85", "\\x85"), ("\x0b", "\\x0b"),
    ("\u200b", "\\u200b"), ("\u200f", "\\u200f"), ("\ufeff", "\\ufeff"), ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
])
def test_visible_shows_whitespace_and_controls(token, shown):
    assert visible(token) == shown


@pytest.mark.parametrize("token", ["hello", "Paris", "é", "e\u0301", "👋🏽", "שלום", "日本", "�", "∅x"])
def test_visible_leaves_printable_text_alone(token):
    assert visible(token) == token


def test_visible_output_has_no_blank_or_control_characters_for_c0_and_c1():
    for cp in list(range(0x00, 0x21)) + list(range(0x7F, 0xA0)):
        shown = visible(chr(cp))
        assert shown, hex(cp)
        for ch in shown:
            assert not ch.isspace(), (hex(cp), shown)
            assert unicodedata.category(ch) not in ("Cc", "Cf"), (hex(cp), shown)


def test_visible_shows_unicode_spaces():
    """Docstring: 'Show whitespace ... so that every token can be seen'. A token made of a
    no-break or other Unicode space (category Zs) must not render as blank."""
    blank = [hex(cp) for cp in (0x00A0, 0x1680, 0x2002, 0x2009, 0x202F, 0x3000)
             if any(ch.isspace() for ch in visible(chr(cp)))]
    assert blank == []


def test_check_prompt():
    assert check_prompt("hello") == "hello"
    assert check_prompt(" x") == " x"
    assert check_prompt("👋\n") == "👋\n"
    with pytest.raises(LensError, match="empty"):
        check_prompt("")
    for blank in (" ", "\n\t ", "\u00a0\u3000"):  # white space only: nothing to analyse
        with pytest.raises(LensError, match="white space"):
            check_prompt(blank)
    for bad in ("\ud800", "ok \udfff then", "\udcff"):
        with pytest.raises(LensError, match="surrogate"):
            check_prompt(bad)
    for bad in (None, b"bytes", 3):
        with pytest.raises(LensError):
            check_prompt(bad)


@pytest.mark.parametrize("text", ["naïve — “quoted” 日本語 👋🏽 a\u00a0b", "\u200b\ufeffx", "é\u0301 ﷺ 𝔘𝔫𝔦"])
@pytest.mark.parametrize("model", ["smollm2-135m", "tiny-llama", "tiny-gpt2"])
def test_byte_pieces_are_shown_as_their_bytes(model, text):
    """A token holding part of a character shows its bytes (<0xE6>), never "�"; read back as bytes,
    the shown pieces give exactly the prompt's bytes."""
    import re

    from lens.model.loading import load_model

    tok = load_model(model).tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    shown = token_strings(tok, ids)
    assert shown == [as_shown(tok, i) for i in ids]
    assert not any("\ufffd" in s for s in shown), shown
    raw = b"".join(bytes([int(part[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", part) else part.encode("utf-8")
                   for s in shown for part in re.split(r"(<0x[0-9A-F]{2}>)", s) if part)
    assert raw.decode("utf-8") == tok.decode(ids)
    assert visible("a\u00a0b") == "a⍽b"


def test_encode_limits_and_messages():
    tok = tiny_tokenizer()
    assert encode(tok, "abc", 3) == [97, 98, 99]
    assert encode(tok, "é", 2) == list("é".encode("utf-8"))
    with pytest.raises(LensError) as info:
        encode(tok, "x" * 200, 128)
    assert "200" in str(info.value) and "128" in str(info.value)
    with pytest.raises(LensError) as info:
        encode(tok, "abcd", 3)
    assert "4" in str(info.value) and "3" in str(info.value)
    with pytest.raises(LensError):
        encode(tok, "", 128)
    with pytest.raises(LensError):
        encode(tok, "\ud800", 128)


def test_token_strings_are_single_token_decodes():
    tok = tiny_tokenizer()
    text = "a é\n👋"
    ids = encode(tok, text, 128)
    strings = token_strings(tok, ids)
    assert strings == [as_shown(tok, i) for i in ids]
    assert len(strings) == len(text.encode("utf-8"))
    assert strings[:2] == ["a", " "] and strings[4] == "\n"
    assert tok.decode(ids) == text
