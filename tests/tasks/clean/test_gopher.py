"""tasks/clean/gopher.py: Gopher's quality and repetition rules with their published defaults."""

from dataclasses import replace

import numpy as np
import pytest

from tasks.clean.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
    duplicate_ngram_char_fraction,
    top_ngram_char_fraction,
)
from tests.tasks.clean.documents import GOOD, PROSE, document


def _gopher_quality(text: str, **overrides) -> bool | tuple[bool, str]:
    return GopherQualityFilter(GopherQualityConfig(**overrides)).filter(document(text))


def _gopher_repetition(text: str, **overrides) -> bool | tuple[bool, str]:
    return GopherRepetitionFilter(GopherRepetitionConfig(**overrides)).filter(document(text))


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
    assert quality.filter(document(german)) == (False, "gopher_stop_words")  # language unknown: judged as English
    assert quality.filter(replace(document(german), language="de", language_score=0.99)) == (True, "")
    assert quality.filter(replace(document(german), language="en", language_score=0.99)) == (False, "gopher_stop_words")


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


def test_gopher_counts_each_character_of_chinese_as_a_word() -> None:
    first_40_characters = "北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心。这座城市有三千多"  # 37 are words
    assert _gopher_quality(first_40_characters) == (False, "gopher_too_few_words")
