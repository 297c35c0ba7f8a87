"""tasks/clean/c4.py: C4's line, page and bad-words rules."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.clean.c4 import C4BadWordsFilter, C4Config, C4LineFilter, C4PageFilter
from tasks.clean.quality import QUALITY_DROP_REASONS, QualityConfig, quality_steps
from tasks.clean.steps import CleanPipeline
from tests.tasks.clean.documents import GOOD, PROSE, document


def test_c4_keeps_only_sentence_like_lines() -> None:
    text = "\n".join([
        PROSE[0] + "[1]",
        "Click here for more",
        "Too short.",
        "Please enable JavaScript in your browser to continue.",
        "By using this site you agree to our privacy policy and terms.",
        "x" * 1001 + " is a very long word indeed.",
        "Wait for it, it will come...",
        *PROSE[1:3],
    ])
    line_filter = C4LineFilter(C4Config())
    doc = line_filter.apply(document(text, title="A title without punctuation"))
    assert doc.text == "\n".join(PROSE[:3])
    assert doc.title == "A title without punctuation"
    assert +line_filter.lines_removed == {
        "c4_line_no_terminal_punctuation": 2, "c4_line_too_few_words": 1, "c4_line_javascript": 1,
        "c4_line_policy": 1, "c4_line_too_long_word": 1}
    assert C4PageFilter(C4Config()).filter(doc) == (True, "")


def test_c4_page_rules() -> None:
    cfg = C4Config()
    steps = CleanPipeline([C4LineFilter(cfg), C4PageFilter(cfg)])
    lorem = GOOD + "\nLorem ipsum dolor sit amet, this page needs javascript."
    curly = GOOD + "\nUse the format string {name} to insert the value here."
    code = GOOD + "\nint main(void) {\nreturn 0;\n}"  # code lines fail the line rules before '{' is looked at
    assert steps.process(document(lorem)) is None
    assert steps.process(document(curly)) is None
    assert steps.process(document(code)).text == GOOD
    assert steps.process(document("\n".join(PROSE[:2]))) is None
    assert steps.counts == {"c4_page": 0, "c4_lorem_ipsum": 1, "c4_curly_bracket": 1, "c4_too_few_sentences": 1}
    relaxed = C4Config(drop_curly_bracket=False)
    assert C4PageFilter(relaxed).filter(C4LineFilter(relaxed).apply(document(curly))) == (True, "")


def test_c4_without_terminal_punctuation_rule_keeps_headings() -> None:
    cfg = C4Config(drop_lines_without_terminal_punctuation=False)
    doc = C4LineFilter(cfg).apply(document("Caching compiled regular expression patterns\n" + GOOD))
    assert doc.text.startswith("Caching compiled regular expression patterns\n")


def test_c4_badwords_match_whole_words_in_any_case(tmp_path: Path) -> None:
    words = tmp_path / "badwords.txt"
    words.write_text("darn\nheck no\n\n  Blast  \n赌博\n")
    cfg = C4Config(badwords_file=words)
    badwords = C4BadWordsFilter(words)
    # Chinese has no spaces between words: its entries match inside running text
    for text in ("Well, DARN it.", "I said heck no!", "a blast of air", "darn", "这个网站提供网上赌博服务。"):
        assert badwords.filter(document(text)) == (False, "c4_badwords"), text
    for text in ("darned socks", "heckle", "hecknothing", "blasted", "no heck", "这个网站提供网上服务。"):
        assert badwords.filter(document(text)) == (True, ""), text
    assert [type(s).__name__ for s in quality_steps(QualityConfig(c4=cfg))][-2:] == ["C4BadWordsFilter",
                                                                                     "FineWebFilter"]
    assert "C4BadWordsFilter" not in [type(s).__name__ for s in quality_steps(QualityConfig())]
    assert "c4_badwords" in QUALITY_DROP_REASONS


def test_c4_badwords_file_is_validated(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n \n")
    for path, fragment in ((tmp_path / "missing.txt", "cannot be read"), (tmp_path / "empty.txt", "holds no word")):
        with pytest.raises(ValidationError, match=fragment) as info:
            C4Config(badwords_file=path)
        assert "badwords_file" in str(info.value) and str(path) in str(info.value)
