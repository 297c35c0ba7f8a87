"""tasks/clean/normalize.py: the text repairs, one string at a time."""

from tasks.clean.normalize import NormalizeWhitespace, clean_text


def test_clean_text_fixes_mojibake_and_normalises() -> None:
    assert clean_text("cafÃ© naÃ¯ve") == "café naïve"
    assert clean_text("cafe\u0301") == "café"  # NFC: e + combining accent -> é
    assert clean_text("Tom &amp; Jerry") == "Tom &amp; Jerry"  # extracted text is not HTML-unescaped again


def test_whitespace_one_paragraph_per_line() -> None:
    text = "  first \t line  \r\n\n\n\n second\u00a0\u00a0line \n\n  \n third"
    assert NormalizeWhitespace().fix(text) == "first line\nsecond line\nthird"
    assert clean_text(text) == "first line\nsecond line\nthird"
