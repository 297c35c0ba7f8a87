"""tasks/clean/normalize.py: the text repairs, one string at a time."""

import pytest

from tasks.clean.normalize import NormalizeWhitespace, clean_text, fix_mojibake


def test_clean_text_fixes_mojibake_and_normalises() -> None:
    assert clean_text("cafÃ© naÃ¯ve") == "café naïve"
    assert clean_text("cafe\u0301") == "café"  # NFC: e + combining accent -> é
    assert clean_text("Tom &amp; Jerry") == "Tom &amp; Jerry"  # extracted text is not HTML-unescaped again


def test_whitespace_one_paragraph_per_line() -> None:
    text = "  first \t line  \r\n\n\n\n second\u00a0\u00a0line \n\n  \n third"
    assert NormalizeWhitespace().fix(text) == "first line\nsecond line\nthird"
    assert clean_text(text) == "first line\nsecond line\nthird"


@pytest.mark.parametrize("codec", ["latin-1", "sloppy-windows-1252"])
def test_fix_mojibake_undoes_utf8_read_once_or_twice(codec: str) -> None:
    text = "“It’s done” — café"
    once = text.encode().decode(codec)
    assert fix_mojibake(once) == fix_mojibake(once.encode().decode(codec)) == text


def test_fix_mojibake_leaves_every_other_fix_to_clean_text() -> None:
    # no quote uncurling, NFC, HTML unescaping, width or ligature fixes: those run in cleaning, once
    text = "“Quoted” it’s cafe\u0301 &amp; ﬁne ＡＢ naïve… SÃO PAULO Grüße Москва 東京"
    assert fix_mojibake(text) == text
