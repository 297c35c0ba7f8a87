"""tasks/clean/normalize.py: the text repairs, one string at a time."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tasks.clean.normalize import NormalizeWhitespace, clean_text, default_pipeline, fix_mojibake, written_in_cjk
from tasks.clean.normalize_config import NormalizeConfig
from tasks.clean.steps import Document

NOW = datetime(2024, 1, 1, tzinfo=UTC)


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


CHINESE = "他说：“你好，世界！”（见第１章）「引用」『书名』‘单引号’……——完。"
JAPANESE = "「準備ができました！」と彼は言った。（２０２４年）"


@pytest.mark.parametrize("text", [CHINESE, JAPANESE])
def test_cjk_punctuation_width_and_quotes_are_kept_by_default(text: str) -> None:
    assert clean_text(text) == text


def test_cjk_punctuation_is_folded_and_quotes_uncurled_when_asked() -> None:
    folded = "他说:“你好,世界!”(见第1章)「引用」『书名』‘单引号’……——完。"
    assert clean_text(CHINESE, NormalizeConfig(fold_width="always")) == folded
    assert clean_text(CHINESE, NormalizeConfig(fold_width="always", uncurl_quotes="always")) == (
        "他说:\"你好,世界!\"(见第1章)「引用」『书名』'单引号'……——完。")
    assert clean_text(CHINESE, NormalizeConfig(uncurl_quotes="always")) == CHINESE.translate(
        str.maketrans("“”‘’", "\"\"''"))


def test_other_text_is_folded_and_uncurled_as_ftfy_does() -> None:
    text = "It’s “ＦＵＬＬ（width）” text！ Half-width ﾀﾞﾒ, and the word 你好（nǐ hǎo）."
    expected = "It's \"FULL(width)\" text! Half-width ダメ, and the word 你好(nǐ hǎo)."
    assert clean_text(text) == expected
    assert clean_text(text, NormalizeConfig(fold_width="always", uncurl_quotes="always")) == expected
    assert clean_text(text, NormalizeConfig(fold_width="never", uncurl_quotes="never")) == text  # ﾀﾞﾒ too


def test_the_script_is_judged_after_mojibake_is_undone() -> None:
    mojibake = CHINESE.encode().decode("sloppy-windows-1252")  # no CJK character left to see
    assert clean_text(mojibake) == CHINESE


@pytest.mark.parametrize(("text", "cjk"), [
    ("这是 Python 3 的文档", True),  # 5 CJK characters to 2 other words
    ("ファイルを開く", True),
    ("파일을 엽니다", True),
    ("the word 你好 means hello", False),  # 2 to 4
    ("ＦＵＬＬ　ＷＩＤＴＨ！", False),  # full-width Latin is not CJK
    ("", False),
])
def test_written_in_cjk_counts_characters_against_other_words(text: str, cjk: bool) -> None:
    assert written_in_cjk(text) is cjk


def test_pipeline_takes_the_normalize_config() -> None:
    doc = Document(url="http://h/", source="local", title="标题（一）", text=CHINESE, fetched_at=NOW)
    kept = default_pipeline(1).process(doc)
    assert kept is not None and (kept.title, kept.text) == ("标题（一）", CHINESE)
    folded = default_pipeline(1, NormalizeConfig(fold_width="always")).process(doc)
    assert folded is not None and folded.title == "标题(一)" and "，" not in folded.text


def test_config_rejects_unknown_choices() -> None:
    with pytest.raises(ValidationError) as error:
        NormalizeConfig(fold_width="sometimes", uncurl_quotes=True)
    message = str(error.value)
    assert "fold_width" in message and "uncurl_quotes" in message and "'auto', 'always' or 'never'" in message
