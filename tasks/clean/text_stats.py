"""Text statistics shared by the quality filters: words, lines, duplicates, and the threshold types."""

from __future__ import annotations

import re
import string
from typing import Annotated

from pydantic import Field

from tasks.text import UNSPACED_SCRIPTS

PUNCTUATION = string.punctuation + "…“”‘’«»„–—·•" + "。，、；：！？「」『』（）《》〈〉【】～・"  # CJK last
UNSPACED_SCRIPT = re.compile(f"[{UNSPACED_SCRIPTS}]")
# one unspaced-script character, or a run of others
_PIECES = re.compile(f"[{UNSPACED_SCRIPTS}]|[^{UNSPACED_SCRIPTS}]+")
# the words of split_words found in the whole text at once: an unspaced-script character, or a run of
# characters that are neither that nor whitespace
_WORDS = re.compile(f"[{UNSPACED_SCRIPTS}]|[^{UNSPACED_SCRIPTS}\\s]+")
# how split_words and count_words count, in the words of the reports that show the counts
WORD_COUNT_RULE = "whitespace-separated, each character in scripts written without spaces (Chinese, Japanese, Thai)"
PARAGRAPH_BREAK = re.compile(r"\n{2,}")
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NgramSize = Annotated[int, Field(ge=1, le=50)]


def split_words(text: str) -> list[str]:
    """Whitespace tokens, except that each character of a script written without spaces (Chinese,
    Japanese, Thai...) is a token of its own: those scripts mark no word boundaries, and a character
    is the unit the word-count rules can count (a Chinese word is ~1.5 characters)."""
    tokens = text.split()
    if _spaced(text):
        return tokens
    return [piece for token in tokens for piece in _PIECES.findall(token)]


def count_words(text: str) -> int:
    """len(split_words(text)) without the list of pieces: the word count of every statistic and filter."""
    return len(text.split()) if _spaced(text) else len(_WORDS.findall(text))


def _spaced(text: str) -> bool:
    """No character of a script written without spaces: str.isascii reads a flag, the search scans
    (~140 M characters/s, about what str.split costs), so ASCII text pays nothing and other text one scan."""
    return text.isascii() or not UNSPACED_SCRIPT.search(text)


def words_of(text: str) -> list[str]:
    """split_words' tokens with surrounding punctuation stripped; tokens of punctuation only are not words."""
    return [word for word in (token.strip(PUNCTUATION) for token in split_words(text)) if word]


def mostly_unspaced(words: list[str]) -> bool:
    """Whether most words are characters of a script written without spaces: rules calibrated on
    word shapes in English (mean word length, stop words, line length) say nothing about such text."""
    return 2 * sum(len(word) == 1 and UNSPACED_SCRIPT.match(word) is not None for word in words) > len(words)


def lines_of(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [line for line in (raw.strip() for raw in text.split("\n")) if line]


def duplicates(items: list[str]) -> tuple[int, int]:
    """(items equal to an earlier item, characters in them): the first occurrence is not a duplicate."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars
