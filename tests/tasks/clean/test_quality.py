from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.clean.c4 import C4BadWordsFilter, C4Config, C4LineFilter, C4PageFilter
from tasks.clean.fineweb import FineWebConfig, FineWebFilter
from tasks.clean.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
    duplicate_ngram_char_fraction,
    top_ngram_char_fraction,
)
from tasks.clean.normalize import MinWords
from tasks.clean.quality import QUALITY_DROP_REASONS, QualityConfig, quality_steps
from tasks.clean.steps import CleanPipeline, Document
from tasks.clean.text_stats import words_of

NOW = datetime(2024, 1, 1, tzinfo=UTC)
# English prose, 93 words, six different lines: passes every filter with its published defaults
PROSE = [
    "The library keeps a small cache of compiled patterns so that repeated calls stay fast.",
    "Each entry records the source string, the flags that were used and the compiled object itself.",
    "When the cache grows beyond its limit, the oldest entries are removed before new ones are added.",
    "Most programs never notice this behaviour, because typical scripts use only a handful of expressions.",
    "Applications that build patterns dynamically may want to compile them once and keep the result.",
    "That approach avoids surprises with memory and makes the intent of the code clear to readers.",
]
GOOD = "\n".join(PROSE)


def _doc(text: str, title: str | None = None) -> Document:
    return Document(url="http://h/", source="crawl", title=title, text=text, fetched_at=NOW)


def _gopher_quality(text: str, **overrides) -> bool | tuple[bool, str]:
    return GopherQualityFilter(GopherQualityConfig(**overrides)).filter(_doc(text))


def _gopher_repetition(text: str, **overrides) -> bool | tuple[bool, str]:
    return GopherRepetitionFilter(GopherRepetitionConfig(**overrides)).filter(_doc(text))


def _fineweb(text: str) -> bool | tuple[bool, str]:
    return FineWebFilter(FineWebConfig()).filter(_doc(text))


def test_words_strip_punctuation() -> None:
    assert words_of("Hello, world! -- (see: re.compile) #tag ...") == ["Hello", "world", "see", "re.compile", "tag"]


def test_prose_passes_every_filter_unchanged() -> None:
    pipeline = CleanPipeline(quality_steps(QualityConfig()))
    assert [d.text for d in pipeline.run([_doc(GOOD, title="Caching")])] == [GOOD]
    assert not any(count for count in pipeline.counts.values())


# Chinese and Japanese prose, no spaces between words: 178 and 151 characters, three lines each
CHINESE = ("北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心。这座城市有三千多年的建城史，拥有众多的历史遗迹和博物馆。\n"
           "每年都有大量的游客来到这里参观故宫、长城和颐和园。上海是中国最大的经济中心城市，位于长江入海口，是重要的国际港口。\n"
           "广州是华南地区的中心城市，自古以来就是重要的对外贸易港口，饮食文化非常丰富。杭州以西湖闻名，风景优美，被誉为人间天堂。")
JAPANESE = ("東京は日本の首都であり、政治と経済の中心地です。多くの人々が毎日電車で通勤しています。\n"
            "京都には古い寺院や神社がたくさんあり、毎年多くの観光客が訪れます。大阪は食べ物がおいしいことで有名です。\n"
            "北海道は冬になると雪が多く、スキーを楽しむ人が集まります。沖縄の海はとても美しく、夏には泳ぐことができます。")


@pytest.mark.parametrize("text", [CHINESE, JAPANESE])
def test_prose_written_without_spaces_passes_every_filter_unchanged(text: str) -> None:
    # every character is a word; English word-shape rules (mean length, stop words, short lines) skip it
    pipeline = CleanPipeline([MinWords(50), *quality_steps(QualityConfig())])
    assert [d.text for d in pipeline.run([_doc(text)])] == [text]
    assert not any(count for count in pipeline.counts.values())
    assert words_of("Python是一种语言。") == ["Python", "是", "一", "种", "语", "言"]
    assert _gopher_quality(CHINESE[:40]) == (False, "gopher_too_few_words")  # 37 characters


@pytest.mark.parametrize(("text", "overrides", "reason"), [
    ("\n".join(PROSE[:3]), {}, "gopher_too_few_words"),
    (GOOD, {"max_words": 60}, "gopher_too_many_words"),
    ("the internationalization of responsibilities and characterization with telecommunications. " * 7, {},
     "gopher_mean_word_length"),
    (GOOD + "\n" + " ".join(["#python"] * 12), {}, "gopher_hash_ratio"),
    (GOOD + "\n" + "wait... " * 12 + "done.", {}, "gopher_ellipsis_ratio"),
    ("\n".join("- " + line for line in PROSE), {}, "gopher_bullet_lines"),
    ("\n".join(line[:-1] + "…" if i % 2 else line for i, line in enumerate(PROSE)), {}, "gopher_ellipsis_lines"),
    (GOOD + "\n" + " ".join(str(n) for n in range(30)), {}, "gopher_alphabetic_words"),
    ("Python programs often run quickly on the modern machines. " * 6, {}, "gopher_stop_words"),
])
def test_gopher_quality_rules(text: str, overrides: dict, reason: str) -> None:
    assert _gopher_quality(GOOD) == (True, "")
    assert _gopher_quality(text, **overrides) == (False, reason)


def test_gopher_stop_words_must_be_different_words() -> None:
    one_word_six_times = "Python programs often run quickly on the modern machines. " * 6
    assert _gopher_quality(one_word_six_times) == (False, "gopher_stop_words")
    assert _gopher_quality(one_word_six_times.replace(" on ", " with ")) == (True, "")


def test_gopher_stop_words_only_judge_their_language() -> None:
    german = "Python Programme laufen heute auf modernen Maschinen sehr schnell. " * 6
    quality = GopherQualityFilter(GopherQualityConfig())
    assert quality.filter(_doc(german)) == (False, "gopher_stop_words")  # language unknown: judged as English
    assert quality.filter(replace(_doc(german), language="de", language_score=0.99)) == (True, "")
    assert quality.filter(replace(_doc(german), language="en", language_score=0.99)) == (False, "gopher_stop_words")


def test_gopher_repetition_lines_and_paragraphs() -> None:
    assert _gopher_repetition(GOOD) == (True, "")
    assert _gopher_repetition("\n".join(PROSE + PROSE[:3])) == (False, "gopher_duplicate_lines")
    long_line = " ".join(PROSE[3:5]) + " " + PROSE[5]
    assert _gopher_repetition("\n".join(PROSE[:3] + [long_line, "Then.", long_line])) == (
        False, "gopher_duplicate_line_chars")
    short = "See also the tutorial."
    assert _gopher_repetition("\n\n".join([short, short, short, GOOD])) == (False, "gopher_duplicate_paragraphs")
    lines_off = {"max_duplicate_line_fraction": 1.0, "max_duplicate_line_char_fraction": 1.0,
                 "max_duplicate_paragraph_fraction": 1.0}
    assert _gopher_repetition("\n\n".join([GOOD, PROSE[0], GOOD]), **lines_off) == (
        False, "gopher_duplicate_paragraph_chars")


def test_gopher_repetition_ngrams() -> None:
    hot_dogs = " ".join(f"seller{i} hot dog" for i in range(40)) + "."
    assert _gopher_repetition(hot_dogs) == (False, "gopher_top_ngram")
    # a sentence pair repeated inside a different line: no line repeats, but 5-grams do
    quoted = GOOD + "\nAs said before: " + PROSE[2] + " " + PROSE[3]
    assert _gopher_repetition(quoted) == (False, "gopher_duplicate_ngrams")
    assert _gopher_repetition(quoted, duplicate_ngram_max_char_fraction={5: 0.5}) == (True, "")


def test_ngram_fractions_count_each_word_once() -> None:
    ids = np.array([1, 2, 3, 1, 2, 3], dtype=np.uint64)  # "a b c a b c", every word one character
    lengths = np.ones(6, dtype=np.int64)
    assert duplicate_ngram_char_fraction(ids, lengths, 2) == 0.5  # the second "a b" and "b c" cover a, b, c
    assert top_ngram_char_fraction(ids, lengths, 2) == 4 / 6  # both "a b" (or both "b c")
    assert top_ngram_char_fraction(np.ones(5, dtype=np.uint64), np.ones(5, dtype=np.int64), 2) == 1.0  # overlapping
    assert top_ngram_char_fraction(ids[:3], lengths[:3], 2) == 0.0  # nothing repeats
    assert duplicate_ngram_char_fraction(ids, lengths, 7) == 0.0  # fewer words than n


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
    doc = line_filter.apply(_doc(text, title="A title without punctuation"))
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
    assert steps.process(_doc(lorem)) is None
    assert steps.process(_doc(curly)) is None
    assert steps.process(_doc(code)).text == GOOD
    assert steps.process(_doc("\n".join(PROSE[:2]))) is None
    assert steps.counts == {"c4_page": 0, "c4_lorem_ipsum": 1, "c4_curly_bracket": 1, "c4_too_few_sentences": 1}
    relaxed = C4Config(drop_curly_bracket=False)
    assert C4PageFilter(relaxed).filter(C4LineFilter(relaxed).apply(_doc(curly))) == (True, "")


def test_c4_without_terminal_punctuation_rule_keeps_headings() -> None:
    cfg = C4Config(drop_lines_without_terminal_punctuation=False)
    doc = C4LineFilter(cfg).apply(_doc("Caching compiled regular expression patterns\n" + GOOD))
    assert doc.text.startswith("Caching compiled regular expression patterns\n")


def test_fineweb_rules() -> None:
    assert _fineweb(GOOD) == (True, "")
    assert _fineweb("\n".join(line.rstrip(".") for line in PROSE)) == (False, "fineweb_line_punct_ratio")
    short = ["Use a cache.", "Keep it small.", "Expire old items.", "Measure it.", "Log misses.", "Tune the size.",
             "Document it."]
    assert _fineweb("\n".join(short[:5] + PROSE[:2] + short[5:])) == (False, "fineweb_short_line_ratio")
    assert _fineweb("\n".join(PROSE + PROSE[:1])) == (False, "fineweb_char_dup_ratio")
    listing = ["Internationalization considerations.", "Telecommunications infrastructure.",
               "Responsibilities characterization.", "Incomprehensibilities everywhere.",
               "Counterrevolutionaries reconsidered.", "Uncharacteristically straightforward."]
    assert _fineweb("\n".join(listing)) == (False, "fineweb_list_ratio")


def test_quality_steps_follow_the_switches() -> None:
    off = {name: {"enabled": False} for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    assert quality_steps(QualityConfig(**off)) == []
    names = [step.name for step in quality_steps(QualityConfig())]
    assert names == ["gopher_repetition", "gopher_quality", "c4_lines", "c4_page", "fineweb_quality"]
    assert len(set(QUALITY_DROP_REASONS)) == len(QUALITY_DROP_REASONS)


def test_config_errors_name_field_and_value() -> None:
    with pytest.raises(ValidationError) as error:
        QualityConfig(gopher_quality={"min_words": 200, "max_words": 100}, fineweb={"max_short_line_ratio": 1.5},
                      c4={"drop_curly": False})
    message = str(error.value)
    assert "min_words=200 is above max_words=100" in message
    assert "max_short_line_ratio" in message and "drop_curly" in message


def test_c4_badwords_match_whole_words_in_any_case(tmp_path: Path) -> None:
    words = tmp_path / "badwords.txt"
    words.write_text("darn\nheck no\n\n  Blast  \n赌博\n")
    cfg = C4Config(badwords_file=words)
    badwords = C4BadWordsFilter(words)
    # Chinese has no spaces between words: its entries match inside running text
    for text in ("Well, DARN it.", "I said heck no!", "a blast of air", "darn", "这个网站提供网上赌博服务。"):
        assert badwords.filter(_doc(text)) == (False, "c4_badwords"), text
    for text in ("darned socks", "heckle", "hecknothing", "blasted", "no heck", "这个网站提供网上服务。"):
        assert badwords.filter(_doc(text)) == (True, ""), text
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
